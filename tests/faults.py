"""Helpers of the coordination-fault tests (``test_faults_*.py``): a database of their own, real
``npsd`` subprocesses, a real SMTP server that can hold the DATA phase, polling with deadlines.

The fault tests start workers that take every due job, so they run on a fresh database per
module instead of the session's shared one (whose leftover jobs belong to other tests).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from aiosmtpd.controller import Controller

from conftest import TestDatabase, _make_database
from mail_helpers import Sink
from servers import ROOT, free_port

T = TypeVar("T")


@contextmanager
def fresh_database(kind: str) -> Iterator[TestDatabase]:
    """A migrated database of ``kind`` that only the calling module uses."""
    with tempfile.TemporaryDirectory() as tmp:
        tdb = _make_database(kind, Path(tmp))
        try:
            yield tdb
        finally:
            tdb.db.dispose()
            for fn in tdb.cleanup:
                fn()


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def npsd(*args: str, database: TestDatabase, **env: str) -> subprocess.Popen[bytes]:
    """Start ``npsd ARGS`` on ``database`` in a process group of its own (see :func:`kill`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "npsd.cli", *args],
        env={
            **os.environ,
            "NPSD_DATABASE_URL": database.url,
            "NPSD_SECRET_KEY": database.settings.secret_key or "",
            "NPSD_LOG_LEVEL": "warning",
            **env,
        },
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group: no shutdown handler runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


class HoldingSink(Sink):
    """A :class:`Sink` that, while ``hold`` is set, keeps each message's DATA phase waiting.

    A message counts as received only once its 250 reply could be sent; a client that vanishes
    while held (killed mid-send) cancels the handler and the message is counted in ``aborted``,
    never in ``received``, as an SMTP server that never acknowledged it would.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hold = threading.Event()
        self.entered = threading.Event()
        self.held = 0  # DATA phases that were held
        self.aborted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        try:
            if self.hold.is_set():
                with self.lock:
                    self.held += 1
            while self.hold.is_set():
                self.entered.set()
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            with self.lock:
                self.aborted += 1
            raise
        return await super().handle_DATA(server, session, envelope)

    def count_to(self, address: str) -> int:
        with self.lock:
            return sum(1 for r in self.received if address in r.rcpt_tos)


@contextmanager
def holding_smtp() -> Iterator[tuple[HoldingSink, str]]:
    """A real SMTP server (aiosmtpd) and its ``smtp://`` URL."""
    port = free_port()
    sink = HoldingSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, f"smtp://127.0.0.1:{port}"
    finally:
        sink.hold.clear()
        controller.stop()
