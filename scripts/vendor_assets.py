#!/usr/bin/env python3
"""Vendor the front-end files npsd serves itself (htmx, Swagger UI, ReDoc) from the npm registry.

The pins live in ``scripts/vendor-assets.json``: for each package its exact version, the
``dist.integrity`` (sha512) of its registry tarball, and which files of the tarball become which
files of ``src/npsd/web/static/vendor/``. The script

1. downloads every tarball with ``npm pack`` (npm's own registry client, the only network used),
2. checks each tarball's sha512 against the pinned integrity, and refuses to write anything if one
   differs (all tarballs are checked before the first file is written),
3. writes the listed files (their licences included), removes any other file from ``vendor/``,
4. records each written file's sha256 in the manifest, so that ``tests/test_docs_offline.py`` can
   check offline that the committed files are exactly what this script vendored.

Two edits are made to what the tarballs contain, both deterministic and listed here:
- a trailing ``//# sourceMappingURL=...`` comment is dropped: the maps are not vendored;
- ReDoc's side menu shows a logo loaded from ``https://cdn.redoc.ly`` (no option turns it off in
  2.x); it is removed (``PATCHES``), so the page never asks another host for anything.

Usage::

    python scripts/vendor_assets.py              # vendor the pinned versions, update the sha256s
    python scripts/vendor_assets.py --check      # verify that vendor/ is what the pins give; write nothing
    python scripts/vendor_assets.py --pin redoc@2.5.5   # pin another version (integrity from the
                                                        # registry, review the diff), then vendor

Needs ``npm`` on the PATH. Newest 2.0.x of htmx: ``npm view htmx.org@2.0 version``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "scripts" / "vendor-assets.json"
VENDOR = ROOT / "src" / "npsd" / "web" / "static" / "vendor"

SOURCE_MAP_COMMENT = re.compile(rb"\s*(//# sourceMappingURL=[^\n]*|/\*# sourceMappingURL=[^\n]*?\*/)\s*\Z")
# Written next to the files: byte-exact (no end-of-line conversion, which the sha256s would catch)
# and no textual diffs of the minified bundles (the licences still diff as text).
GITATTRIBUTES = b"# written by scripts/vendor_assets.py\n* -text\n*.js -diff\n*.css -diff\n"


@dataclass(frozen=True)
class Patch:
    """An exact replacement in one vendored file; it must match exactly once."""

    package: str
    version: str
    source: str
    old: bytes
    new: bytes
    reason: str


PATCHES = [
    Patch(
        package="redoc",
        version="2.5.4",
        source="bundles/redoc.standalone.js",
        # RedoclyLogo in the side menu's "API docs by Redocly" link: an <img> from the CDN.
        old=b'e?n.createElement("img",{alt:"redocly logo",onError:()=>t(!1),'
        b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"}):null',
        new=b"null",
        reason="side-menu logo loaded from cdn.redoc.ly removed (the link text stays)",
    ),
]


class VendorError(Exception):
    pass


def sri_sha512(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def npm(*args: str, cwd: Path | None = None) -> str:
    if shutil.which("npm") is None:
        raise VendorError("npm is not on the PATH")
    done = subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise VendorError(f"npm {' '.join(args)} failed:\n{done.stderr.strip()}")
    return done.stdout


def fetch_tarball(name: str, version: str, into: Path) -> bytes:
    """The registry tarball of name@version, downloaded by npm (which also checks the integrity the
    registry states; we check ours, pinned, below)."""
    out = npm("pack", f"{name}@{version}", "--json", "--ignore-scripts", "--pack-destination", str(into))
    [packed] = json.loads(out)
    return (into / str(packed["filename"])).read_bytes()


def tar_members(tarball: bytes) -> dict[str, bytes]:
    """Every regular file of an npm tarball by its path inside the package (the first path
    component, ``package/`` for most packages, stripped). Nothing is extracted to disk."""
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            _, _, inner = member.name.partition("/")
            handle = tar.extractfile(member)
            assert handle is not None
            members[inner] = handle.read()
    return members


def transform(package: dict[str, Any], source: str, data: bytes) -> tuple[bytes, list[str]]:
    """The file as vendored, and what was changed."""
    changes = []
    if source.endswith((".js", ".css")):
        stripped = SOURCE_MAP_COMMENT.sub(b"\n", data)
        if stripped != data:
            changes.append("sourceMappingURL comment dropped (maps are not vendored)")
            data = stripped
    for patch in PATCHES:
        if patch.package != package["name"] or patch.source != source:
            continue
        if patch.version != package["version"]:
            raise VendorError(
                f"{patch.package}: a patch is written for {patch.version}, the pin is {package['version']}:"
                " check whether it is still needed and update PATCHES"
            )
        if data.count(patch.old) != 1:
            raise VendorError(f"{patch.package}/{source}: patch text found {data.count(patch.old)} times")
        data = data.replace(patch.old, patch.new)
        changes.append(patch.reason)
    return data, changes


def build(manifest: dict[str, Any]) -> dict[str, bytes]:
    """Download and verify every tarball, then return the vendored files by name. Raises before
    returning anything if a tarball's integrity differs from its pin."""
    tarballs: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="npsd-vendor-") as tmp:
        for package in manifest["packages"]:
            spec = f"{package['name']}@{package['version']}"
            print(f"fetching {spec}", file=sys.stderr)
            tarball = fetch_tarball(package["name"], package["version"], Path(tmp))
            actual = sri_sha512(tarball)
            if actual != package["integrity"]:
                raise VendorError(
                    f"{spec}: tarball integrity {actual} differs from the pinned {package['integrity']}; "
                    "nothing was written"
                )
            tarballs[package["name"]] = tarball
        files: dict[str, bytes] = {}
        for package in manifest["packages"]:
            members = tar_members(tarballs[package["name"]])
            for entry in package["files"]:
                source, target = entry["from"], entry["to"]
                if source not in members:
                    raise VendorError(f"{package['name']}@{package['version']} has no file {source}")
                if "/" in target or target.startswith(".") or target in files:
                    raise VendorError(f"bad or duplicate target name {target!r}")
                files[target], changes = transform(package, source, members[source])
                entry["sha256"] = hashlib.sha256(files[target]).hexdigest()
                if changes:
                    entry["changed"] = changes
                else:
                    entry.pop("changed", None)
    return files


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write(files: dict[str, bytes]) -> None:
    VENDOR.mkdir(parents=True, exist_ok=True)
    (VENDOR / ".gitattributes").write_bytes(GITATTRIBUTES)
    for path in VENDOR.iterdir():
        if path.name not in files and path.name != ".gitattributes":
            print(f"removing {shown(path)}", file=sys.stderr)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    for name, data in sorted(files.items()):
        (VENDOR / name).write_bytes(data)
        print(f"wrote {shown(VENDOR / name)} ({len(data):,} bytes)", file=sys.stderr)


def check(files: dict[str, bytes], manifest_before: str, manifest_after: str) -> list[str]:
    problems = []
    present = {p.name for p in VENDOR.iterdir()} - {".gitattributes"} if VENDOR.is_dir() else set()
    if not (VENDOR / ".gitattributes").is_file() or (VENDOR / ".gitattributes").read_bytes() != GITATTRIBUTES:
        problems.append("vendor/.gitattributes is missing or differs")
    for name in sorted(present - files.keys()):
        problems.append(f"vendor/{name} is not produced by the manifest")
    for name, data in sorted(files.items()):
        path = VENDOR / name
        if not path.is_file():
            problems.append(f"vendor/{name} is missing")
        elif path.read_bytes() != data:
            problems.append(f"vendor/{name} differs from what the pinned package gives")
    if manifest_before != manifest_after:
        problems.append(f"{shown(MANIFEST)} records other sha256s than the files vendored")
    return problems


def pin(manifest: dict[str, Any], spec: str) -> None:
    name, at, version = spec.rpartition("@")
    if not at or not name or not version:
        raise VendorError(f"--pin wants NAME@VERSION, got {spec!r}")
    package = next((p for p in manifest["packages"] if p["name"] == name), None)
    if package is None:
        raise VendorError(f"{name} is not in the manifest (add its entry by hand)")
    info = json.loads(npm("view", f"{name}@{version}", "version", "dist.integrity", "--json"))
    if not isinstance(info, dict) or info.get("version") != version:
        raise VendorError(f"{name}@{version}: the registry names no such exact version ({info!r})")
    package["version"], package["integrity"] = version, info["dist.integrity"]
    print(f"pinned {name}@{version} {package['integrity']}", file=sys.stderr)


def dump(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="compare vendor/ with the pins; write nothing")
    parser.add_argument("--pin", action="append", default=[], metavar="NAME@VERSION")
    args = parser.parse_args(argv)
    before = MANIFEST.read_text()
    manifest = json.loads(before)
    try:
        if args.check and args.pin:
            raise VendorError("--check and --pin do not go together")
        for spec in args.pin:
            pin(manifest, spec)
        files = build(manifest)
        if args.check:
            problems = check(files, before, dump(manifest))
            for problem in problems:
                print(problem, file=sys.stderr)
            print("vendor/ matches the pins" if not problems else "vendor/ does NOT match", file=sys.stderr)
            return 1 if problems else 0
        write(files)
        MANIFEST.write_text(dump(manifest))
    except VendorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
