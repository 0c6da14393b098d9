"""Real ``npsd serve`` and ``npsd worker`` processes for tests that need a socket, a crash or
several clients."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NpsdProcess:
    """``npsd <command>`` against ``database_url`` in a process group of its own; start, kill -9,
    stop. Its stderr is read all along by a thread (a full pipe would stop the process mid-write)
    and the last lines are kept for failure messages (:meth:`output`)."""

    def __init__(self, database_url: str, secret_key: str, **env: str) -> None:
        self.database_url = database_url
        self.secret_key = secret_key
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=400)
        self._reader: threading.Thread | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "NPSD_DATABASE_URL": self.database_url,
            "NPSD_SECRET_KEY": self.secret_key,
            "NPSD_LOG_LEVEL": "warning",
            "NPSD_RATE_LIMIT": "0",
            "NPSD_WORKER": "false",
            # no comment analysis unless a test asks for it: the model would take the cores
            "NPSD_INSIGHTS": "false",
            **self.extra_env,
        }

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to be ready."""
        self._lines.clear()
        proc = self.proc = subprocess.Popen(
            [sys.executable, "-m", "npsd.cli", *self.command()],
            env=self.environment(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

        def read() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                self._lines.append(raw.decode(errors="replace"))

        self._reader = threading.Thread(target=read, daemon=True, name=f"stderr-{proc.pid}")
        self._reader.start()
        return proc

    def output(self) -> str:
        """The last lines the process wrote to stderr."""
        if self._reader is not None and (self.proc is None or self.proc.poll() is not None):
            self._reader.join(2)  # the process ended: let the reader take what is left
        return "".join(self._lines)

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30) -> None:
        proc = self.launch()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"npsd {self.command()[0]} exited with {proc.returncode}: {self.output()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"npsd {self.command()[0]} was not ready in time: {self.output()[-2000:]}")
            time.sleep(0.05)

    def owns(self, pid: int) -> bool:
        """Whether ``pid`` is this process or one of its children (same process group)."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            return os.getpgid(pid) == self.proc.pid
        except ProcessLookupError:
            return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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


class ServerProcess(NpsdProcess):
    """``npsd serve`` on a free port against ``database_url``; ready once ``/healthz`` answers."""

    def __init__(self, database_url: str, secret_key: str, workers: int = 1, **env: str) -> None:
        super().__init__(database_url, secret_key, **env)
        self.workers = workers
        self.port = free_port()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return ["serve", "--port", str(self.port), "--workers", str(self.workers)]

    def ready(self) -> bool:
        try:
            return httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


class WorkerProcess(NpsdProcess):
    """``npsd worker`` against ``database_url``; ready once it says it runs (after migrating)."""

    def command(self) -> list[str]:
        return ["worker"]

    def ready(self) -> bool:
        return "npsd worker running" in self.output()
