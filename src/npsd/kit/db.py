"""Engine, sessions and the request-scoped transaction.

SQLite is the embedded default: WAL, ``synchronous=NORMAL``, foreign keys on and a long
``busy_timeout``. Write transactions start with ``BEGIN IMMEDIATE`` so two writers never
deadlock on a read-to-write upgrade ("database is locked" must never reach a client). Inside
one process, HTTP writers also queue on an asyncio lock *in the event loop*, never in a worker
thread, so waiting writers cannot starve the thread pool that the lock holder needs.
PostgreSQL goes through psycopg 3 and needs neither.

With ``NPSD_DATABASE_READ_URL``, a PostgreSQL streaming replica serves the heavy reads that may
lag the primary by a moment (exports, metrics, list pages): :meth:`Database.read_session` and
:meth:`Database.reads`. Everything else stays on the primary, and an unreachable replica sends
those reads back to the primary too, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Collection, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import orjson
import psycopg
from psycopg import postgres
from psycopg.abc import AdaptContext
from psycopg.adapt import Dumper
from sqlalchemy import (
    Boolean,
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
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

from npsd.kit.config import Settings, get_settings

log = logging.getLogger("npsd.db")

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


def make_engine(url: str, pool_size: int = 10, connect_timeout: int | None = None) -> Engine:
    """Build the engine for ``url`` with the pragmas and transaction mode npsd relies on.

    ``connect_timeout`` (seconds, PostgreSQL) bounds how long a request may wait on a host that
    does not answer; the read replica uses it, since a request falls back to the primary then.
    """
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        # No server-side prepared statements: a plan cached for one organization's (or one batch
        # size's) parameters can be badly wrong for the next; every statement is planned fresh.
        connect_args: dict[str, Any] = {"prepare_threshold": None}
        if connect_timeout is not None:
            connect_args["connect_timeout"] = connect_timeout
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size * MAX_OVERFLOW_FACTOR,
            pool_pre_ping=True,
            connect_args=connect_args,
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
# Read replica: how long reads stay on the primary after the replica failed to answer, and how
# long connecting to it may take (libpq counts whole seconds; 2 is its smallest useful value).
REPLICA_RETRY_SECONDS = 5.0
REPLICA_CONNECT_TIMEOUT = 2


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
    under (background job handlers receive the Database and read SMTP, base URL... from there).

    ``read_url`` (default: the settings' ``database_read_url``) adds :attr:`replica`, a Database
    of its own on a PostgreSQL hot standby, used only through :meth:`read_session` and
    :meth:`reads`. If the replica does not answer, those reads go to the primary for
    ``replica_retry_seconds`` (a warning says so), then the replica is tried again.
    """

    def __init__(
        self,
        url: str,
        pool_size: int = 10,
        settings: Settings | None = None,
        read_url: str | None = None,
        replica_retry_seconds: float = REPLICA_RETRY_SECONDS,
        *,
        standby: bool = False,
    ) -> None:
        self.settings = settings
        self.engine = make_engine(url, pool_size, REPLICA_CONNECT_TIMEOUT if standby else None)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if read_url is None and settings is not None and not standby:
            read_url = settings.database_read_url
        self.replica: Database | None = None
        if read_url and not self.is_sqlite:
            self.replica = Database(read_url, pool_size, settings, standby=True)
        self.replica_retry_seconds = replica_retry_seconds
        self._replica_lock = threading.Lock()
        self._replica_down_until: float | None = None  # monotonic time of the next try, while down
        write_bind = (
            self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else self.engine
        )
        # Request reads on SQLite run each statement in its own snapshot, as PostgreSQL's READ
        # COMMITTED does: no BEGIN/COMMIT round trips. Exports, which need one
        # snapshot over several statements, use the engine directly (BEGIN DEFERRED).
        read_bind = self.engine.execution_options(sqlite_begin="NONE") if self.is_sqlite else self.engine
        # ``info["database"]``: what a session's writer may need of its database's settings (the
        # record listeners of kit/events.py ask whether comments are analysed)
        info = {"database": self}
        self.read_sessions = sessionmaker(bind=read_bind, expire_on_commit=False, autoflush=False, info=info)
        self.write_sessions = sessionmaker(
            bind=write_bind, expire_on_commit=False, autoflush=False, info=info
        )
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

    def read_session(self) -> Session:
        """A read session for a heavy read that may lag the primary: on the replica when there is
        one and it answers, else an ordinary read session on the primary.

        The connection is taken here, not at the first statement, so that an unreachable replica
        becomes a fallback rather than an error in the middle of a route.
        """
        replica = self._replica_to_try()
        if replica is not None:
            session = replica.session(False)
            try:
                session.connection()
            except DBAPIError as exc:
                session.close()
                self._replica_failed(exc)
            else:
                self._replica_answered()
                return session
        return self.session(False)

    def reads(self) -> Database:
        """The Database for a heavy read that opens its own connections (exports): the replica
        when there is one and it answers (checked now, with a pooled connection), else this one."""
        replica = self._replica_to_try()
        if replica is None:
            return self
        try:
            with replica.engine.connect():
                pass
        except DBAPIError as exc:
            self._replica_failed(exc)
            return self
        self._replica_answered()
        return replica

    @property
    def replica_down(self) -> bool:
        """Whether reads meant for the replica go to the primary now (it did not answer)."""
        return self._replica_down_until is not None

    def _replica_to_try(self) -> Database | None:
        down_until = self._replica_down_until
        if self.replica is None or (down_until is not None and time.monotonic() < down_until):
            return None
        return self.replica

    def _replica_failed(self, exc: DBAPIError) -> None:
        with self._replica_lock:
            was_up = self._replica_down_until is None
            self._replica_down_until = time.monotonic() + self.replica_retry_seconds
        if was_up:  # one warning per outage; libpq's reason names host and port, never a password
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
            log.warning(
                "read replica unreachable (%s); heavy reads go to the primary, retrying every %g s",
                reason,
                self.replica_retry_seconds,
            )

    def _replica_answered(self) -> None:
        if self._replica_down_until is None:
            return
        with self._replica_lock:
            was_down, self._replica_down_until = self._replica_down_until is not None, None
        if was_down:
            log.warning("read replica answers again; heavy reads go to it")

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
    def transaction(self, write: bool = True, replica: bool = False) -> Iterator[Session]:
        """A unit of work for code outside a request (CLI, worker): commit or roll back.

        ``replica=True`` (reads only) runs it on the read replica when there is one that answers.
        """
        session = self.read_session() if replica and not write else self.session(write)
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
        if self.replica is not None:
            self.replica.dispose()


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


class not_from_an_index(FunctionElement[bool]):
    """A condition SQLite must test on the rows it reads rather than use to find them: rendered
    ``+(condition)`` there, as it stands elsewhere. npsd gathers no statistics, so SQLite takes
    every equality for equally selective and may walk a whole organization's answers by an
    ``org_id`` index when another condition (a contact, a search's matches) names a few rows.
    PostgreSQL plans with statistics and needs no hint."""

    type = Boolean()
    inherit_cache = True
    name = "not_from_an_index"
    _is_implicitly_boolean = True


@compiles(not_from_an_index)
def _as_it_stands(element: not_from_an_index, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(not_from_an_index, "sqlite")
def _tested_on_the_rows(element: not_from_an_index, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+({compiler.process(element.clauses, **kw)})"


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

    PostgreSQL's array is a :class:`TextArray`, written by one join rather than by psycopg's
    element-by-element dumper (~25 ms for 5,000 keys), and still a parameter of type
    ``varchar[]``: the planner sees a constant array (an index scan, a hashed test in a filter,
    the number of values known). Two other forms were measured and dropped: a JSON array
    unnested in SQL, and the literal as text cast to ``varchar[]`` in SQL; with either the
    planner knew neither the values nor their number, and tested 5,000 addresses one by one
    against every contact of the organization (seconds).
    """
    if session.get_bind().dialect.name == "postgresql":
        # untyped for SQLAlchemy, whose ARRAY type would copy it into a plain list; typed by its dumper
        return column == any_(bindparam(None, TextArray(values), type_=NullType()))
    if len(values) <= FEW_VALUES:
        return column.in_(list(values))
    array = bindparam(None, orjson.dumps(list(values)).decode(), type_=String)
    return column.in_(
        select(literal_column("value", String)).select_from(func.json_each(array)).scalar_subquery()
    )


def array_literal(values: Collection[str]) -> str:
    """PostgreSQL's text form of an array of ``values``: every element in double quotes, its
    backslashes and double quotes escaped, so none can end an element or read as NULL. (Values
    hold no NUL: no PostgreSQL text can.)"""
    return "{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]) + "}"


class TextArray(list[str]):
    """Strings bound as one PostgreSQL ``varchar[]`` parameter, written by :class:`TextArrayDumper`."""


class TextArrayDumper(Dumper):
    """psycopg's dumper of :class:`TextArray`: the array's literal (:func:`array_literal`), typed
    ``varchar[]`` so the server parses it once, as a constant of the statement; encoded as the
    connection's client encoding says, like psycopg's own text (a server or client that is not
    UTF-8 would otherwise read other characters, and an accented key would match nothing)."""

    oid = postgres.types["varchar"].array_oid

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        self._encoding = self.connection.info.encoding if self.connection is not None else "utf-8"

    def dump(self, obj: list[str]) -> bytes:
        return array_literal(obj).encode(self._encoding)


psycopg.adapters.register_dumper(TextArray, TextArrayDumper)  # every connection made from now on
