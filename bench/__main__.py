"""Run every benchmark and print one table; a full run also writes it with the machine's description to
bench/RESULTS.md.

    python -m bench            # all benchmarks
    python -m bench list bulk  # only those whose script name contains one of the words

Each benchmark script prints one line per figure: ``name ours=... baseline=... ratio=... goal=... met=...``.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "bulk_upsert.py",
    "list.py",
    "metrics.py",
    "export.py",
    "throughput.py",
    "search.py",
    "dashboard.py",
    "imports.py",
    "insights.py",
]
LINE = re.compile(r"^(?P<name>[a-z][\w.-]*) (?P<rest>.*\bmet=(?P<met>\S+).*)$")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}){mem}, "
        f"Python {platform.python_version()}"
    )


def fields(rest: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in rest.split() if "=" in token)


def main(argv: list[str]) -> int:
    chosen = [s for s in SCRIPTS if not argv or any(a in s for a in argv)]
    rows: list[dict[str, str]] = []
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    for script in chosen:
        path = HERE / script
        if not path.exists():
            rows.append(
                {"name": script, "ours": "-", "baseline": "-", "ratio": "-", "goal": "-", "met": "missing"}
            )
            continue
        print(f"== {script}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr[-3000:])
            rows.append(
                {
                    "name": script,
                    "ours": "-",
                    "baseline": "-",
                    "ratio": "-",
                    "goal": "-",
                    "met": f"error (exit {proc.returncode})",
                }
            )
            continue
        for line in proc.stdout.splitlines():
            m = LINE.match(line.strip())
            if m:
                f = fields(m.group("rest"))
                rows.append(
                    {
                        "name": m.group("name"),
                        "ours": f.get("ours", "-"),
                        "baseline": f.get("baseline", "-"),
                        "ratio": f.get("ratio", f.get("growth", f.get("vs_scan", "-"))),
                        "goal": f.get("goal", "-"),
                        "met": m.group("met"),
                    }
                )
        print(f"   ({time.monotonic() - t0:.0f} s)")
    header = "| benchmark | ours | baseline | ratio | goal | met |\n|---|---|---|---|---|---|\n"
    table = header + "".join(
        f"| {r['name']} | {r['ours']} | {r['baseline']} | {r['ratio']} | {r['goal']} | {r['met']} |\n"
        for r in rows
    )
    print()
    print(table)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if chosen == SCRIPTS:  # a partial run does not replace the full table
        (HERE / "RESULTS.md").write_text(
            f"# Benchmark results\n\nRun {stamp} on {machine()}.\n"
            "Each figure is compared with a baseline measured in the same run (see each script's docstring).\n\n"
            + table
        )
    return 0 if all(r["met"] in ("yes", "-") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
