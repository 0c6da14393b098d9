"""Engine, sessions and the request-scoped transaction.

SQLite is the embedded default: WAL, ``synchronous=NORMAL``, foreign keys on and a long
``busy_timeout``. Write transactions start with ``BEGIN IMMEDIATE`` so two writers never
deadlock on a read-to-write upgrade ("database is locked" must never reach a client). Inside
one process, HTTP writers also queue on an asyncio lock *in the event loop*, never in a worker
thread, so waiting writers cannot starve the thread pool that the lock holder needs.
PostgreSQL goes through psycopg 3 and needs neither.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from npsd.kit.config import Settings, get_settings

SQLITE_BUSY_TIMEOUT_MS = 60_000
SQLITE_POOL_SIZE = 40


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` URLs and use psycopg 3 for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """Build the engine for ``url`` with the pragmas and transaction mode npsd relies on."""
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        # No server-side prepared statements: a plan cached for one organization's (or one batch
        # size's) parameters can be badly wrong for the next; every statement is planned fresh.
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size * 2,
            pool_pre_ping=True,
            connect_args={"prepare_threshold": None},
        )
    # Keep as many SQLite connections as the thread pool has threads (40): an overflow connection
    # is closed when returned, and opening one (file, WAL, pragmas) costs more than a request.
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=max(pool_size, SQLITE_POOL_SIZE),
        max_overflow=pool_size * 2,
    )

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun explicitly below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode != "NONE":
            conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


class Database:
    """One engine with a session factory for reads and one for writes, and the settings it serves
    under (background job handlers receive the Database and read SMTP, base URL... from there)."""

    def __init__(self, url: str, pool_size: int = 10, settings: Settings | None = None) -> None:
        self.settings = settings
        self.engine = make_engine(url, pool_size)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        write_bind = (
            self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else self.engine
        )
        # Request reads on SQLite run each statement in its own snapshot, as PostgreSQL's READ
        # COMMITTED does: no BEGIN/COMMIT round trips. Exports, which need one
        # snapshot over several statements, use the engine directly (BEGIN DEFERRED).
        read_bind = self.engine.execution_options(sqlite_begin="NONE") if self.is_sqlite else self.engine
        self.read_sessions = sessionmaker(bind=read_bind, expire_on_commit=False, autoflush=False)
        self.write_sessions = sessionmaker(bind=write_bind, expire_on_commit=False, autoflush=False)
        self._locks: dict[int, asyncio.Lock] = {}

    @property
    def config(self) -> Settings:
        """The settings given at construction, else those of the environment."""
        return self.settings if self.settings is not None else get_settings()

    def session(self, write: bool) -> Session:
        return (self.write_sessions if write else self.read_sessions)()

    def write_lock(self) -> asyncio.Lock | None:
        """The event-loop lock that serializes this process's SQLite writers (None on PostgreSQL)."""
        if not self.is_sqlite:
            return None
        loop = asyncio.get_running_loop()
        lock = self._locks.get(id(loop))
        if lock is None:
            lock = self._locks[id(loop)] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def serialized(self, write: bool) -> AsyncIterator[None]:
        """Hold this process's SQLite write turn (waiting in the event loop) for a write; no-op
        for reads and on PostgreSQL. Every HTTP write path enters here before its transaction."""
        lock = self.write_lock() if write else None
        if lock is None:
            yield
            return
        async with lock:
            yield

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Session]:
        """A unit of work for code outside a request (CLI, worker): commit or roll back."""
        session = self.session(write)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def lock_org_writes(session: Session, org_id: str) -> None:
    """Serialize one organization's record/contact writes on PostgreSQL.

    Find-or-create by e-mail or ``sourceId`` is a read followed by a write; two concurrent bulk
    upserts would otherwise both create the same contact or record. A transaction-scoped advisory
    lock keyed by the organization makes them queue. SQLite writers are serialized already.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": "org:" + org_id}
        )


# Values per IN-list: below SQLite's oldest bound-parameter limit (999) with room to spare.
CHUNK = 900


def chunks(values: Collection[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    """``values`` in lists of at most ``size``, for IN-lists of any length."""
    items = list(values)
    for start in range(0, len(items), size):
        yield items[start : start + size]
