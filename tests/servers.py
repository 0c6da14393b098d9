"""Real ``npsd serve`` processes for tests that need a socket, a crash or several clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``npsd serve`` on a free port against ``database_url``; start, kill -9, restart."""

    def __init__(self, database_url: str, secret_key: str, workers: int = 1, **env: str) -> None:
        self.database_url = database_url
        self.secret_key = secret_key
        self.workers = workers
        self.extra_env = env
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        env = {
            **os.environ,
            "NPSD_DATABASE_URL": self.database_url,
            "NPSD_SECRET_KEY": self.secret_key,
            "NPSD_LOG_LEVEL": "warning",
            "NPSD_RATE_LIMIT": "0",
            "NPSD_WORKER": "false",
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "npsd.cli",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"npsd serve exited with {self.proc.returncode}: {err[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("npsd serve did not answer /healthz in time")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown handler runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None
