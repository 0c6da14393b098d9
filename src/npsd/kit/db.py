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
import contextlib
import weakref
from collections.abc import AsyncIterator, Collection, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Engine,
    String,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker
from sqlalchemy.types import ARRAY

from npsd.kit.config import Settings, get_settings

SQLITE_BUSY_TIMEOUT_MS = 60_000
SQLITE_POOL_SIZE = 40
# PostgreSQL: connections beyond the pool size, as a multiple of it
MAX_OVERFLOW_FACTOR = 2


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
            max_overflow=pool_size * MAX_OVERFLOW_FACTOR,
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


SLOT_SCOPE_KEY = "npsd.db_slot"
# anyio's default worker threads (the thread pool every sync route and every hop runs on)
WORKER_THREADS = 40
RESERVED_CONNECTIONS = 2


class _LoopState:
    """One event loop's turns: the SQLite writer lock, the organizations' write locks and the
    session slots (PostgreSQL)."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self.sqlite_writer = asyncio.Lock()
        self.slots = slots
        # a lock lives while someone holds or awaits it, then leaves the map by itself
        self.org_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def org_lock(self, org_id: str) -> asyncio.Lock:
        lock = self.org_locks.get(org_id)
        if lock is None:
            lock = self.org_locks[org_id] = asyncio.Lock()
        return lock


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
        self._loops: dict[int, _LoopState] = {}
        # PostgreSQL: sessions at once per process, below both the pool's connections and the
        # worker threads (see serialized()); a few connections stay free for short outside work.
        connections = pool_size * (1 + MAX_OVERFLOW_FACTOR)  # what make_engine lets the pool open
        self.session_slots = max(1, min(connections, WORKER_THREADS // 2) - RESERVED_CONNECTIONS)

    @property
    def config(self) -> Settings:
        """The settings given at construction, else those of the environment."""
        return self.settings if self.settings is not None else get_settings()

    def session(self, write: bool) -> Session:
        return (self.write_sessions if write else self.read_sessions)()

    def _loop_state(self) -> _LoopState:
        """This event loop's locks and slots (a test may run several loops over one Database)."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(id(loop))
        if state is None:
            state = self._loops[id(loop)] = _LoopState(asyncio.Semaphore(self.session_slots))
        return state

    @asynccontextmanager
    async def serialized(
        self, write: bool, org_id: str | None = None, scope: MutableMapping[str, Any] | None = None
    ) -> AsyncIterator[None]:
        """Wait in the event loop, never in a worker thread, for this process's turn to use the
        database; every HTTP path that opens a session or a transaction enters here first.

        A thread that waits (on a lock, or for a pooled connection) while a connection holder
        needs a thread to commit starves the thread pool: under a burst, every thread ends up
        waiting and nothing commits. So the waiting happens here instead:

        * SQLite: a write takes the process's one write turn (then ``BEGIN IMMEDIATE`` never waits
          on another writer of this process).
        * PostgreSQL: a write of ``org_id`` takes that organization's turn (its writers queue on
          an advisory lock anyway, see :func:`lock_org_writes`), and every session takes one of
          ``session_slots`` slots, fewer than the pool's connections and the worker threads, so a
          session never waits for a connection and its commit always finds a thread.

        ``scope`` (the request's ASGI scope) makes a slot the request's: a second session or
        transaction of the same request (a token's first check, say) does not take another,
        which could wait for ever on slots that requests like it hold.
        """
        state = self._loop_state()
        if self.is_sqlite:
            if write:
                async with state.sqlite_writer:
                    yield
            else:
                yield
            return
        org_lock = state.org_lock(org_id) if write and org_id else None
        async with org_lock or contextlib.nullcontext():
            if scope is not None and scope.get(SLOT_SCOPE_KEY):
                yield
                return
            async with state.slots:
                if scope is not None:
                    scope[SLOT_SCOPE_KEY] = True
                try:
                    yield
                finally:
                    if scope is not None:
                        scope.pop(SLOT_SCOPE_KEY, None)

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


FEW_VALUES = 32


def one_of(
    session: Session, column: ColumnElement[Any] | QueryableAttribute[Any], values: Collection[str]
) -> ColumnElement[bool]:
    """``column IN values`` with every value in ONE bound parameter, however many there are.

    An expanded IN-list binds one parameter per value: past SQLite's limit it needs several
    statements, and SQLAlchemy renders each of them anew (for 5,000 keys that cost more than the
    queries). Here SQLite reads a JSON array through ``json_each`` and PostgreSQL an array
    through ``= ANY``, so one statement, rendered once, takes a batch of any size. Only a few
    values on SQLite (a single create) still get a plain IN-list: measured, it costs ~40 us
    less there, and up to ~50 values no more than the JSON form.
    """
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))
    if len(values) <= FEW_VALUES:
        return column.in_(list(values))
    array = bindparam(None, orjson.dumps(list(values)).decode(), type_=String)
    return column.in_(
        select(literal_column("value", String)).select_from(func.json_each(array)).scalar_subquery()
    )
