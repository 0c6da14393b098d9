"""The API documentation works without any other host.

- The vendored files under ``web/static/vendor`` are exactly what ``scripts/vendor_assets.py``
  wrote (each file's sha256 is in ``scripts/vendor-assets.json``), and the script refuses a tarball
  whose integrity differs from its pin without writing anything.
- ``/docs``, ``/redoc`` and ``/docs/oauth2-redirect`` are HTML without inline scripts, under a
  Content-Security-Policy, and every file they name is one of ours that answers 200 with its type.
- In a real browser (Debian's Chromium through Playwright, against a live uvicorn server), both
  pages render the API, and no request goes to another host, no policy is violated, nothing is
  logged as an error.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import re
import sys
import tarfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from dashboard import Site
from npsd.web import docs
from npsd.web.assets import STATIC_DIR

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "vendor_assets.py"
MANIFEST = ROOT / "scripts" / "vendor-assets.json"
VENDOR = STATIC_DIR / "vendor"
PAGES = ["/docs", "/redoc", "/docs/oauth2-redirect"]


def manifest() -> dict[str, Any]:
    return dict(json.loads(MANIFEST.read_text()))


def vendored() -> dict[str, str]:
    """File name under vendor/ -> sha256, as the manifest records them."""
    return {entry["to"]: entry["sha256"] for package in manifest()["packages"] for entry in package["files"]}


# --- the vendored files ---------------------------------------------------------------------------


def test_vendored_files_are_exactly_what_the_script_wrote() -> None:
    expected = vendored()
    present = {path.name for path in VENDOR.iterdir() if not path.name.startswith(".")}
    assert present == set(expected), (
        "vendor/ holds other files than the manifest: run scripts/vendor_assets.py"
    )
    for name, sha256 in expected.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == sha256, name


def test_pins_are_exact_versions_with_their_integrity_and_licence() -> None:
    packages = {package["name"]: package for package in manifest()["packages"]}
    assert set(packages) == {"htmx.org", "swagger-ui-dist", "redoc"}
    assert packages["htmx.org"]["version"].startswith("2.0.")
    for name, package in packages.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", package["version"]), name
        algorithm, _, digest = package["integrity"].partition("-")
        assert algorithm == "sha512" and len(base64.b64decode(digest, validate=True)) == 64, name
        sources = {entry["from"] for entry in package["files"]}
        assert "LICENSE" in sources, f"{name}: its licence is vendored with it"
        assert not any(source.endswith(".map") for source in sources), name


def test_no_vendored_file_loads_from_another_host() -> None:
    """What the script changes: ReDoc's side-menu logo from its CDN, the source-map comments.
    ReDoc 2 names no web font to fetch (FastAPI's page linked Google Fonts itself)."""
    for name in vendored():
        text = (VENDOR / name).read_bytes()
        assert b"fonts.googleapis.com" not in text and b"fonts.gstatic.com" not in text, name
        assert b"cdn.redoc.ly" not in text, name
        if name.endswith((".js", ".css")):
            assert b"sourceMappingURL" not in text[-300:], name


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vendor_assets", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module


def fake_tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_the_script_writes_nothing_when_a_tarball_differs_from_its_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = load_script()
    good = fake_tarball(
        {"dist/htmx.min.js": b"htmx();\n//# sourceMappingURL=htmx.min.js.map", "LICENSE": b"0BSD"}
    )
    bad = fake_tarball({"dist/htmx.min.js": b"evil();", "LICENSE": b"0BSD"})
    pins = {
        "packages": [
            {
                "name": "htmx.org",
                "version": "2.0.11",
                "integrity": script.sri_sha512(good),
                "files": [
                    {"from": "dist/htmx.min.js", "to": "htmx.min.js"},
                    {"from": "LICENSE", "to": "htmx.org-LICENSE.txt"},
                ],
            },
            {
                "name": "other",
                "version": "1.0.0",
                "integrity": script.sri_sha512(good),
                "files": [{"from": "LICENSE", "to": "other-LICENSE.txt"}],
            },
        ]
    }
    manifest_path = tmp_path / "vendor-assets.json"
    manifest_path.write_text(json.dumps(pins))
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / "htmx.min.js").write_bytes(b"before")
    monkeypatch.setattr(script, "MANIFEST", manifest_path)
    monkeypatch.setattr(script, "VENDOR", vendor)

    # The second package's tarball differs: not even the first one's files are written.
    monkeypatch.setattr(
        script, "fetch_tarball", lambda name, version, into: good if name == "htmx.org" else bad
    )
    assert script.main([]) == 1
    assert [p.name for p in vendor.iterdir()] == ["htmx.min.js"]
    assert (vendor / "htmx.min.js").read_bytes() == b"before"
    assert json.loads(manifest_path.read_text()) == pins

    monkeypatch.setattr(script, "fetch_tarball", lambda name, version, into: good)
    assert script.main([]) == 0
    assert (vendor / "htmx.min.js").read_bytes() == b"htmx();\n"
    written = json.loads(manifest_path.read_text())["packages"][0]["files"][0]
    assert written["sha256"] == hashlib.sha256(b"htmx();\n").hexdigest()
    assert script.main(["--check"]) == 0
    (vendor / "htmx.min.js").write_bytes(b"edited")
    assert script.main(["--check"]) == 1


# --- the pages over HTTP --------------------------------------------------------------------------


class PageLinks(HTMLParser):
    """Every URL a page names (src, href and the two data attributes and ReDoc's spec-url), the
    text inside its <script> elements, and its title."""

    URL_ATTRIBUTES = frozenset({"src", "href", "spec-url", "data-openapi-url", "data-oauth2-redirect-url"})

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, dict[str, str | None]]] = []
        self.scripts: list[tuple[str | None, str]] = []
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        for name, value in attrs:
            if name in self.URL_ATTRIBUTES:
                assert value, f"<{tag} {name}> is empty"
                self.urls.append((tag, value, attributes))
        if tag == "script":
            self.scripts.append((attributes.get("src"), ""))
        self._in = tag

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            src, text = self.scripts[-1]
            self.scripts[-1] = (src, text + data)
        elif self._in == "title":
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def parse(html: str) -> PageLinks:
    parser = PageLinks()
    parser.feed(html)
    return parser


def directives(csp: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in csp.split(";") if part.strip())}


@pytest.mark.parametrize("path", PAGES)
def test_pages_name_only_our_own_files(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = parse(response.text)
    assert page.title == "npsd API"

    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert not any("unsafe-eval" in value or "*" in value for values in policy.values() for value in values)
    assert page.scripts, "the page runs something"
    for src, text in page.scripts:
        assert src and not text.strip(), "no inline script: the policy would refuse it"

    for tag, url, attributes in page.urls:
        if tag == "link" and attributes.get("rel") == "icon":
            assert url == "data:,", "the one data URL: no icon, so no request for /favicon.ico"
            continue
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), f"{url} is not one of ours"
        if url == docs.OAUTH2_REDIRECT_PATH:
            continue  # a page of this test itself
        fetched = client.get(url)
        assert fetched.status_code == 200, url
        kind = fetched.headers["content-type"]
        if tag == "script":
            assert kind.startswith(("text/javascript", "application/javascript")), (url, kind)
        elif attributes.get("rel") == "stylesheet":
            assert kind.startswith("text/css"), (url, kind)
        else:
            assert url == "/openapi.json" and kind.startswith("application/json"), (url, kind)
        if url.startswith("/app/static/"):
            assert fetched.headers["x-content-type-options"] == "nosniff"


def test_pages_load_what_they_need(client: TestClient) -> None:
    swagger = parse(client.get("/docs").text)
    assert {url.rsplit("/", 1)[-1].split(".")[0] for _, url, _ in swagger.urls} >= {
        "swagger-ui",
        "swagger-ui-bundle",
        "docs-init",
        "openapi",
    }
    redoc = parse(client.get("/redoc").text)
    assert [url for tag, url, _ in redoc.urls if tag == "redoc"] == ["/openapi.json"]
    assert any("/vendor/redoc.standalone." in url for _, url, _ in redoc.urls)


# --- the pages in a browser -----------------------------------------------------------------------

# Runs before the page's own scripts: every violation of the page's policy, reported or not.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture(scope="module")
def live_url(site: Site) -> str:
    """npsd on a live uvicorn server on the test database (conftest's ``site``)."""
    return site.url


@pytest.fixture(scope="module")
def browser(chromium: Any) -> Any:
    """Debian's Chromium through Playwright (conftest's ``chromium``)."""
    return chromium


class Watched:
    """A fresh page with every request, console error, page error and policy violation recorded."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.add_init_script(RECORD_VIOLATIONS)
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"page: {error}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def check_offline(self, base_url: str) -> None:
        self.page.wait_for_load_state("networkidle")
        own = urlsplit(base_url)
        for url in self.requests:
            # a worker made from a blob: URL is same-origin: blob:http://127.0.0.1:port/<uuid>
            parts = urlsplit(url.removeprefix("blob:"))
            assert (parts.scheme, parts.netloc) == (own.scheme, own.netloc), f"request to another host: {url}"
        assert self.page.evaluate("window.__violations") == []
        assert self.errors == []


@pytest.fixture
def watched(browser: Any, request: pytest.FixtureRequest) -> Iterator[Watched]:
    page = Watched(browser)
    try:
        yield page
    except BaseException:
        artifacts = ROOT / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        page.page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
        raise
    finally:
        page.context.close()


def test_swagger_ui_renders_the_api_from_npsd_alone(live_url: str, watched: Watched) -> None:
    page = watched.page
    page.goto(live_url + "/docs")
    assert page.title() == "npsd API"
    operation = page.locator('.opblock-summary-path[data-path="/nps"]').first
    operation.wait_for()
    assert page.locator(".info .title").inner_text().startswith("npsd")
    # open an operation and try it: its parameters, schemas and the request form render too
    page.locator('.opblock-get:has(.opblock-summary-path[data-path="/nps"]) .opblock-summary-control').click()
    page.get_by_role("button", name="Try it out").click()
    page.locator(".opblock.is-open .parameters").first.wait_for()
    page.get_by_role("button", name="Authorize").first.click()
    page.locator(".dialog-ux .modal-ux").wait_for()
    watched.check_offline(live_url)
    assert any(url.endswith("/openapi.json") for url in watched.requests)
    assert not any("validator" in url for url in watched.requests)


def test_redoc_renders_the_api_from_npsd_alone(live_url: str, watched: Watched) -> None:
    page = watched.page
    page.goto(live_url + "/redoc")
    assert page.title() == "npsd API"
    page.get_by_role("heading", level=1, name=re.compile(r"^npsd")).wait_for()
    page.locator("text=API docs by Redocly").wait_for()  # the side menu, whose logo was patched out
    assert page.locator("img").count() == page.locator('img[src^="data:"]').count()
    # search runs in ReDoc's blob: worker
    page.get_by_placeholder("Search...").fill("export")
    page.locator('[role="search"] li, [data-role="search:results"] li').first.wait_for()
    watched.check_offline(live_url)
    assert any(url.startswith("blob:") for url in watched.requests), "the search worker started"
