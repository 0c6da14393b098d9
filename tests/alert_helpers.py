"""Helpers for the alert tests: a real HTTP receiver for chat messages, a running job worker, and
waiting for what arrives."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from npsd.kit.db import Database
from npsd.kit.jobs import Worker

T = TypeVar("T")


@dataclass
class ChatReceiver:
    """A real HTTP server on a free loopback port that records the JSON POSTed to its own path
    (a Slack incoming webhook stand-in). ``answers`` are the statuses to reply with, one per
    request (then 200). Requests to other paths get 404 and are not recorded."""

    token: str = field(default_factory=lambda: secrets.token_hex(8))
    answers: list[int] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/chat/{self.token}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path != f"/chat/{receiver.token}":
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def messages(self) -> list[dict[str, Any]]:
        """The JSON bodies received, oldest first."""
        with self.lock:
            return [json.loads(body) for _, body in self.requests]

    def headers(self) -> list[dict[str, str]]:
        with self.lock:
            return [h for h, _ in self.requests]


@contextmanager
def chat_receiver() -> Iterator[ChatReceiver]:
    receiver = ChatReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@contextmanager
def running_worker(db: Database) -> Iterator[Worker]:
    """The job worker ``npsd serve`` runs, polling every 0.1 s, for the duration."""
    worker = Worker(db, poll_seconds=0.1)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def wait_for(probe: Callable[[], T], timeout: float = 60.0, interval: float = 0.05) -> T:
    """``probe()`` once it is truthy; fails after ``timeout`` seconds (an alert is due within a minute)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing arrived within {timeout:g} s (last: {value!r})")
        time.sleep(interval)
