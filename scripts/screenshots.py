"""Screenshots of the dashboard's main pages for the README, made from `npsd demo` data.

    .venv/bin/python scripts/screenshots.py [OUT_DIR]   # default: docs/screenshots

Builds the demo organization in a fresh SQLite database, starts `npsd serve` on a free port,
waits until its worker has read every comment (themes and sentiment, `GET /v1/insights/status`),
signs in as the demo admin in Debian's Chromium (Playwright) and saves one PNG per page. Run it
after changing a page, and commit the images with the change, so the README shows current code.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
NPSD = [sys.executable, "-m", "npsd.cli"]
VIEWPORT = {"width": 1280, "height": 860}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's chromium is needed: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "NPSD_DATABASE_URL": f"sqlite:///{tmp}/demo.db",
            "NPSD_BASE_URL": base,
            "NPSD_LOG_LEVEL": "warning",
        }
        printed = subprocess.run([*NPSD, "demo"], env=env, check=True, capture_output=True, text=True).stdout
        match = re.search(r"admin\s+(\S+@\S+)\s+(\S+)", printed)
        if match is None:
            raise SystemExit(f"npsd demo printed no admin credentials:\n{printed}")
        email, password = match.groups()
        server = subprocess.Popen([*NPSD, "serve", "--port", str(port)], env=env, cwd=tmp)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(base + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("npsd serve did not start")
                time.sleep(0.2)
            token = subprocess.run(
                [*NPSD, "token", "create", "--org", "demo", "--role", "viewer", "--ttl", "1h"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            wait_for_insights(base, token)
            shoot(chromium, base, email, password, out)
        finally:
            server.terminate()
            server.wait(10)


def wait_for_insights(base: str, token: str, limit: float = 600) -> None:
    """The demo's comments are read by the server's worker in the background (a minute or two):
    the pages show their themes only once it is done."""
    deadline = time.monotonic() + limit
    while True:
        status = httpx.get(base + "/v1/insights/status", headers={"Authorization": f"Bearer {token}"}).json()
        if status["pending"] == 0 and status["analysed"] > 0:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the demo's comments were not read in {limit:.0f} s: {status}")
        time.sleep(2)


def shoot(executable: str, base: str, email: str, password: str, out: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(base + "/app/login")
        page.screenshot(path=str(out / "sign-in.png"))
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in").click()
        pages = [
            ("overview.png", "/app?period=12m"),
            ("surveys.png", "/app/surveys"),
            ("responses.png", "/app/responses?category=detractor"),
            ("companies.png", "/app/companies?period=12m"),
            ("themes.png", "/app/themes?period=12m"),
            ("settings.png", "/app/settings"),
        ]
        for name, path in pages:
            page.goto(base + path)
            page.screenshot(path=str(out / name), full_page=name != "responses.png")
        # a survey's own page and a company's: the first of each list
        for name, listing, prefix in (
            ("survey.png", "/app/surveys", "/app/surveys/"),
            ("company.png", "/app/companies?period=12m", "/app/companies/"),
        ):
            page.goto(base + listing)
            links = page.locator(f"main a[href^='{prefix}']").evaluate_all(
                "els => els.map(e => e.getAttribute('href'))"
            )
            target = next(
                (
                    h.split("?")[0]
                    for h in links
                    if re.fullmatch(re.escape(prefix) + r"[0-9a-f]{24}(\?.*)?", h or "")
                ),
                None,
            )
            if target:
                page.goto(base + target + ("?period=12m" if "companies" in prefix else ""))
                page.screenshot(path=str(out / name), full_page=True)
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
