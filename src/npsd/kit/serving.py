"""``npsd serve``'s HTTP server: uvicorn, bounded against slow and numerous clients.

uvicorn has no timeout for a request's head: a client that opens a connection and sends half a
request line (or nothing) holds it for ever, and enough of them hold every file descriptor.
:class:`HeadTimeoutProtocol` arms a timer when a connection opens and when a new request
begins on a kept-alive one; unless the request line and headers are complete when it fires
(``NPSD_HEADER_TIMEOUT_SECONDS``), the server answers 408 and closes the connection. Bodies
are not timed here: a slow upload is bounded by ``NPSD_MAX_BODY_BYTES`` and, in production, by
the reverse proxy in front.

``NPSD_KEEP_ALIVE_SECONDS`` (65) closes a kept-alive connection that stays idle; it is longer
than the idle timeouts of the clients and proxies in front, which must close first.

``NPSD_MAX_CONNECTIONS`` is uvicorn's ``limit_concurrency``: beyond that many open connections
or running requests, a new request is answered 503 at once instead of queueing without bound, in
the one error shape (:func:`over_the_limit`, in place of uvicorn's plain-text reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.requests import Request
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from npsd.kit.config import Settings
from npsd.kit.errors import error_response
from npsd.kit.logs import log_config
from npsd.kit.telemetry import HEADER_TIMEOUTS

DEFAULT_HEADER_TIMEOUT = 10.0
log = logging.getLogger("npsd.serving")

REQUEST_TIMEOUT_REPLY = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\n"
    b"connection: close\r\n\r\n"
    b"Request Timeout\n"
)


async def over_the_limit(scope: Any, receive: Any, send: Any) -> None:
    """The reply beyond ``NPSD_MAX_CONNECTIONS``: 503 in the one error shape, with a request id
    (in the body and ``X-Request-Id``), ``Retry-After`` and the connection closed, since open
    connections are what is short. The app itself is not called: this costs no database work."""
    request_id = secrets.token_hex(8)
    scope.setdefault("state", {})["request_id"] = request_id
    response = error_response(
        Request(scope),
        503,
        "the server is at its limit of open connections (NPSD_MAX_CONNECTIONS): retry in a moment",
        headers={"Retry-After": "1", "X-Request-Id": request_id, "Connection": "close"},
    )
    await response(scope, receive, send)


class NpsdConfig(uvicorn.Config):
    """uvicorn's configuration plus the header timeout; pickled into each worker process of
    ``--workers N`` as it is, so the protocol finds the timeout there too."""

    def __init__(self, *args: Any, header_timeout: float = DEFAULT_HEADER_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request head is late."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout = float(getattr(config, "header_timeout", DEFAULT_HEADER_TIMEOUT))
        self.head_timer: asyncio.TimerHandle | None = None

    def _arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        HEADER_TIMEOUTS.inc()
        # one line per closed connection, like uvicorn's "Invalid HTTP request received.": an
        # operator (or a failed test) can tell these closures from a client's own
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning(
            "closed the connection of %s: no complete request head within %g s", peer, self.header_timeout
        )
        self.transport.write(REQUEST_TIMEOUT_REPLY)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # the next request of a kept-alive connection (an idle one is uvicorn's keep-alive
        # timeout's to close)
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # uvicorn picks its plain-text 503 app above limit_concurrency; ours speaks the error shape
        super()._start_asgi_task(cycle, over_the_limit if app is service_unavailable else app)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)


def _connect_host(host: str) -> str:
    """The address a local client uses to reach ``host`` (a wildcard means this machine)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def local_url(host: str, port: int) -> str:
    """``http://HOST:PORT`` as a client on this machine would type it."""
    return f"http://{_connect_host(host)}:{port}"


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that says so once its socket is bound and the app has started."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self.announce()


def build_config(settings: Settings, host: str, port: int, workers: int) -> NpsdConfig:
    """The uvicorn configuration of ``npsd serve`` (the app is built by ``npsd.app:create_app``
    in each worker process)."""
    return NpsdConfig(
        "npsd.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=HeadTimeoutProtocol,
        header_timeout=settings.header_timeout_seconds,
        # The client (a proxy, an SDK's pool) must give up an idle connection before the server
        # does: a request it sends on one the server is closing at that moment is lost without a
        # reply (nginx's and AWS load balancers' idle timeouts are 60 s; uvicorn's default of 5 s
        # equals httpx's, which lost requests under a burst in tests/test_reliability.py).
        timeout_keep_alive=settings.keep_alive_seconds,
        limit_concurrency=settings.max_connections,
        log_config=log_config(settings),
        log_level=settings.log_level,
        access_log=False,  # npsd writes its own access line, with the route template (kit/telemetry.py)
        server_header=False,
        # a worker process must answer its parent's health check within this; importing the app
        # on a busy machine can take longer than uvicorn's 5 s, and the parent would kill it
        timeout_worker_healthcheck=60,
    )


def run(config: NpsdConfig, announce: Callable[[], None]) -> bool:
    """Serve until stopped; ``announce`` is called once the port is bound (with one process,
    also once the app has started). False when the server could not start (the port is taken,
    the app's start-up failed: uvicorn has logged why)."""
    if config.workers <= 1:
        server = _AnnouncingServer(config, announce)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        except SystemExit:
            return False
        return server.started
    from uvicorn.supervisors import Multiprocess

    sock = config.bind_socket()
    # listening from here on: a connection made once the line is out waits in the backlog until
    # a worker takes it (uvicorn would only listen in the workers, once they have started)
    sock.listen(config.backlog)
    announce()
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[sock]).run()
    return True
