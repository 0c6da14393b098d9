"""Backup and restore of the embedded SQLite database, and the lock that keeps a restore from
replacing a database under a running process.

**How a backup copies.** SQLite's online backup API (``sqlite3.Connection.backup``), in one step:
it copies the database page by page inside one read transaction of the source, so the copy is the
database as of one committed instant, while the server keeps writing (WAL: readers never block
writers, and the copy never sees half a transaction). ``VACUUM INTO`` would also give one
snapshot, but it rebuilds every table and index row by row (several times the CPU on a machine
that is serving), and it may renumber the rowids of a table without an INTEGER PRIMARY KEY:
``nps_record`` is such a table, and the comment search index (``nps_record_fts``, FTS5 with
external content, migration 0005) is keyed by those rowids. Copying pages keeps every rowid, so
the search index of the copy matches its records byte for byte. The copy is then switched to a
rollback journal (one self-contained file, no ``-wal`` beside it; a server switches it back to WAL
when it opens it) and verified: ``PRAGMA integrity_check`` and FTS5's own ``integrity-check``.

**Files appear whole or not at all.** A backup is written under a temporary name beside its
target, fsynced, and only then linked (or, with ``--force``, renamed) into place; a restore copies
the backup beside the database, verifies that copy, fsyncs it and renames it over the database.

**"In use".** Every process that serves a SQLite database (``npsd serve`` through the app's
lifespan, ``npsd worker``) holds a shared ``flock`` on ``<database>.lock`` for its lifetime;
``npsd restore`` takes it exclusively without waiting, and refuses when it cannot. A lock dies
with its process (SIGKILL included), so, unlike a PID file, nothing stale ever blocks a restore.
As a second guard for processes that do not take the lock (an older npsd, a ``sqlite3`` shell),
the restore switches the old database out of WAL mode first, which SQLite refuses while any
other connection has it open.

**The signing key.** Without ``NPSD_SECRET_KEY``, tokens and invitation links are signed with
the key in ``.npsd-secret-key`` beside the database (``kit/config.py``). A restored database
whose key is lost keeps its data, but every token, dashboard session and link in an invitation
already mailed stops verifying. So a backup copies that key beside itself as
``<FILE>.secret-key`` (mode 0600), and a restore puts it back. With ``NPSD_SECRET_KEY`` set, the
key lives in the operator's configuration, which they back up with it.

PostgreSQL brings its own tools (``pg_dump`` / ``pg_restore``): :func:`pg_dump_command` and
:func:`pg_restore_command` give the exact command lines for the configured database.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shlex
import shutil
import sqlite3
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from npsd.kit.config import SECRET_KEY_FILE, Settings

SQLITE_MAGIC = b"SQLite format 3\x00"
KEY_SUFFIX = ".secret-key"
SIDE_FILES = ("-wal", "-journal", "-shm")  # SQLite's companions of a database file
BUSY_TIMEOUT_S = 60.0


class BackupError(Exception):
    """A backup or restore that cannot be done; the message is one line for the operator."""


class DatabaseInUse(BackupError):
    """The database's lock is held in a way that forbids what was asked."""


# ------------------------------------------------------------------------------------------ the lock


def lock_path(database: Path) -> Path:
    """The lock file of a SQLite database: ``npsd.db`` -> ``npsd.db.lock``."""
    return database.with_name(database.name + ".lock")


class DatabaseLock:
    """A held ``flock`` on a database's lock file; released by :meth:`release` or process death."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _lock(database: Path, exclusive: bool) -> DatabaseLock:
    path = lock_path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        if exclusive:
            raise DatabaseInUse(
                f"the database {database} is in use by a running `npsd serve` or `npsd worker` "
                f"(they hold {path.name}), or a backup or restore of it is running: stop them first"
            ) from None
        raise DatabaseInUse(
            f"a restore of the database {database} is in progress (it holds {path.name}); "
            "start again when it has finished"
        ) from None
    return DatabaseLock(path, fd)


def hold_shared(database: Path) -> DatabaseLock:
    """Declare that this process uses ``database`` (many may at once); :class:`DatabaseInUse`
    while a restore of it runs."""
    return _lock(database, exclusive=False)


def hold_database(settings: Settings) -> DatabaseLock | None:
    """The shared lock of the configured SQLite database, for a serving process's lifetime
    (None on PostgreSQL, which a restore does not replace under running servers)."""
    path = settings.sqlite_path()
    return hold_shared(path) if path is not None else None


# ------------------------------------------------------------------------------------------ checks


@dataclass(frozen=True)
class Contents:
    """What a verified database file holds."""

    answers: int
    revision: str | None


def _verify(conn: sqlite3.Connection, label: str) -> Contents:
    """Integrity of the whole file and of the comment search index; raises :class:`BackupError`."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(5)")]
        if problems != ["ok"]:
            raise BackupError(f"{label} failed SQLite's integrity check: {'; '.join(problems)[:300]}")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "nps_record" not in tables or "alembic_version" not in tables:
            raise BackupError(f"{label} is a SQLite database, but not one of npsd")
        if "nps_record_fts" in tables:
            try:
                # FTS5's own check; rank 1 also compares the index with the answers it is built
                # over (external content), which the plain form skips on some SQLite versions
                conn.execute("INSERT INTO nps_record_fts(nps_record_fts, rank) VALUES ('integrity-check', 1)")
            except sqlite3.DatabaseError as exc:
                raise BackupError(
                    f"{label}: the comment search index does not match the answers ({exc})"
                ) from None
        answers = int(conn.execute("SELECT count(*) FROM nps_record").fetchone()[0])
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{label} cannot be read as a SQLite database ({exc})") from None
    return Contents(answers, row[0] if row else None)


def _looks_like_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename or link in ``path`` survive a power cut."""
    with contextlib.suppress(OSError):  # some filesystems refuse to open a directory; best effort
        _fsync_file(path)


def _tmp_beside(target: Path, what: str) -> Path:
    return target.with_name(f".{target.name}.{what}-{os.getpid()}.tmp")


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _write_private(path: Path, data: bytes) -> None:
    """``data`` into ``path``, mode 0600, whole or not at all."""
    tmp = _tmp_beside(path, "key")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)  # whatever the umask said
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# ------------------------------------------------------------------------------------------ backup


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    answers: int
    revision: str | None
    seconds: float
    key_file: Path | None  # where the signing key was copied, if it was


def backup_sqlite(
    database: Path, target: Path, *, force: bool = False, copy_key: bool = True
) -> BackupResult:
    """Copy the live ``database`` into ``target`` (see the module text) and verify the copy.

    ``copy_key``: also copy the database's signing key file, if there is one, to
    ``<target>.secret-key`` (the CLI passes False when ``NPSD_SECRET_KEY`` is set).
    """
    started = time.perf_counter()
    if not database.is_file():
        raise BackupError(f"there is no database at {database} (NPSD_DATABASE_URL)")
    if target.exists() and target.is_dir():
        raise BackupError(f"{target} is a directory; give the name of the backup file to write")
    if not target.parent.is_dir():
        raise BackupError(f"the directory {target.parent} does not exist")
    if target.resolve() in {database.resolve(), *(Path(f"{database.resolve()}{s}") for s in SIDE_FILES)}:
        raise BackupError(f"{target} is the database itself; write the backup to another file")
    key_source = database.parent / SECRET_KEY_FILE
    key_target = target.with_name(target.name + KEY_SUFFIX) if copy_key and key_source.is_file() else None
    if not force:
        for existing in (target, key_target):
            if existing is not None and existing.exists():
                raise BackupError(f"{existing} already exists; pass --force to replace it")
    tmp = _tmp_beside(target, "backup")
    with hold_shared(database):  # no restore may replace the database while it is copied
        try:
            _copy_live(database, tmp)
            dst = sqlite3.connect(tmp, isolation_level=None)
            try:
                contents = _verify(dst, "the copy")
            finally:
                dst.close()
            os.chmod(tmp, 0o600)  # it holds people's addresses and opinions
            _fsync_file(tmp)
            if force:
                os.replace(tmp, target)
            else:
                try:
                    os.link(tmp, target)  # never replaces a file that appeared meanwhile
                except FileExistsError:
                    raise BackupError(f"{target} already exists; pass --force to replace it") from None
                tmp.unlink()
            _fsync_dir(target.parent)
        finally:
            _remove(tmp, *(Path(f"{tmp}{s}") for s in SIDE_FILES))
    if key_target is not None:
        _write_private(key_target, key_source.read_bytes())
    return BackupResult(
        target,
        target.stat().st_size,
        contents.answers,
        contents.revision,
        time.perf_counter() - started,
        key_target,
    )


def _copy_live(database: Path, tmp: Path) -> None:
    """One online-backup step of every page of ``database`` into a new file ``tmp``."""
    _remove(tmp)
    uri = f"file:{quote(str(database.resolve()))}?mode=rw"  # never create a missing database
    try:
        src = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open the database {database} ({exc})") from None
    try:
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            src.backup(dst, pages=-1)  # all pages in one step: one read snapshot of the source
            mode = dst.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            if str(mode).lower() != "delete":
                raise BackupError(f"the copy could not leave WAL mode (journal mode {mode})")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"copying {database} failed ({exc})") from None
    finally:
        src.close()


# ------------------------------------------------------------------------------------------ restore


@dataclass(frozen=True)
class RestoreResult:
    database: Path
    answers: int
    revision: str | None
    kept: Path | None  # the replaced database, if it was kept
    key_installed: bool  # the backup's signing key was put beside the database
    key_missing: bool  # no signing key came with the backup (and none is configured)
    seconds: float


def restore_sqlite(
    source: Path,
    database: Path,
    *,
    keep_old: bool = True,
    use_key_file: bool = True,
    known_revisions: Collection[str] | None = None,
) -> RestoreResult:
    """Replace ``database`` by the backup ``source`` unless a process uses it (see the module text).

    ``use_key_file``: install ``<source>.secret-key`` beside the database (the CLI passes False when
    ``NPSD_SECRET_KEY`` is set). ``known_revisions``: the migrations this build knows; a backup
    made by a newer npsd is refused (this build could not serve it).
    """
    started = time.perf_counter()
    if not source.is_file():
        raise BackupError(f"there is no backup file {source}")
    if not _looks_like_sqlite(source):
        raise BackupError(f"{source} is not a SQLite database (no SQLite header)")
    wal = Path(f"{source}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise BackupError(
            f"{source} has a write-ahead log beside it ({wal.name}): it is a live database, not a "
            "backup; make one with `npsd backup`"
        )
    database.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve() == database.resolve():
        raise BackupError(f"{source} is the database itself")
    key_source = source.with_name(source.name + KEY_SUFFIX)
    tmp = _tmp_beside(database, "restore")
    with _lock(database, exclusive=True):
        try:
            shutil.copyfile(source, tmp)
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                contents = _verify(conn, str(source))
                conn.execute("PRAGMA journal_mode=DELETE")
            finally:
                conn.close()
            if known_revisions is not None and contents.revision not in known_revisions:
                raise BackupError(
                    f"{source} is at migration {contents.revision or 'none'}, which this build of npsd "
                    "does not know (made by a newer version?): restore it with that version"
                )
            _take_owner_and_mode(tmp, database if database.exists() else None)
            _fsync_file(tmp)
            kept = _retire(database, keep_old) if database.exists() else None
            os.replace(tmp, database)
            _fsync_dir(database.parent)
        finally:
            _remove(tmp, *(Path(f"{tmp}{s}") for s in SIDE_FILES))
        key_installed = False
        key_missing = False
        if use_key_file:
            if key_source.is_file():
                _install_key(key_source, database.parent / SECRET_KEY_FILE, keep_old)
                key_installed = True
            else:
                key_missing = True
    return RestoreResult(
        database,
        contents.answers,
        contents.revision,
        kept,
        key_installed,
        key_missing,
        time.perf_counter() - started,
    )


def _take_owner_and_mode(path: Path, like: Path | None) -> None:
    """Give the restored file the old database's mode and owner (a restore run as root must not
    leave a file the service's user cannot write); a first database gets mode 0600 (it holds
    people's addresses)."""
    if like is None:
        os.chmod(path, 0o600)
        return
    st = like.stat()
    os.chmod(path, st.st_mode & 0o777)
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.chown(path, st.st_uid, st.st_gid)


def _retire(database: Path, keep: bool) -> Path | None:
    """Make way for the restored file: the old database is checkpointed into one file (which
    SQLite refuses while another connection has it open: then nothing is touched), kept under a
    stamped name if asked, and no stale ``-wal`` / ``-shm`` / ``-journal`` stays beside the name
    (SQLite would apply a stale write-ahead log to the new file and corrupt it)."""
    try:
        conn = sqlite3.connect(database, timeout=0.5, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            mode = str(conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]).lower()
        finally:
            conn.close()
        if mode != "delete":
            raise DatabaseInUse(f"the database {database} is open in another process: stop it first")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise DatabaseInUse(
                f"the database {database} is open in another process: stop it first"
            ) from None
        # unreadable (perhaps the very reason for this restore): keep it with its side files as they are
    except sqlite3.DatabaseError:
        pass
    kept: Path | None = None
    if keep:
        stamp = _stamp()
        kept = database.with_name(f"{database.name}.before-restore-{stamp}")
        n = 1
        while kept.exists():
            kept = database.with_name(f"{database.name}.before-restore-{stamp}-{n}")
            n += 1
        os.link(database, kept)  # the name keeps the old file until the new one replaces it
    for suffix in SIDE_FILES:
        side = Path(f"{database}{suffix}")
        if not side.exists():
            continue
        if kept is not None and suffix != "-shm":
            os.replace(side, Path(f"{kept}{suffix}"))  # stays the kept file's log
        else:
            side.unlink()  # -shm is an index of the log, rebuilt on open
    return kept


def _install_key(source: Path, target: Path, keep_old: bool) -> None:
    key = source.read_bytes()
    if len(key.strip()) < 32:
        raise BackupError(f"{source} holds no usable signing key")
    if target.exists():
        if target.read_bytes() == key:
            return
        if keep_old:
            shutil.copy2(target, target.with_name(f"{target.name}.before-restore-{_stamp()}"))
    _write_private(target, key)
    if os.geteuid() == 0:  # root restoring for the service's user: the key is theirs, like the database
        st = target.parent.stat()
        with contextlib.suppress(OSError):
            os.chown(target, st.st_uid, st.st_gid)


# ------------------------------------------------------------------------------------------ PostgreSQL


def libpq_url(url: str) -> tuple[str, bool]:
    """``url`` as libpq tools take it: scheme ``postgresql``, without the password (never printed;
    they read it from ``PGPASSWORD`` or ``~/.pgpass``); and whether it had one."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    netloc = f"{user}@{hostport}" if at else hostport
    return urlunsplit(("postgresql", netloc, parts.path, parts.query, parts.fragment)), bool(colon)


def pg_dump_command(url: str, file: Path | str) -> str:
    """The ``pg_dump`` command line that backs up the database at ``url`` into ``file``."""
    return f"pg_dump --format=custom --file={shlex.quote(str(file))} {shlex.quote(libpq_url(url)[0])}"


def pg_restore_command(url: str, file: Path | str) -> str:
    """The ``pg_restore`` command line that restores ``file`` (from :func:`pg_dump_command`) into
    the database at ``url``, replacing what is there, in one transaction."""
    return (
        "pg_restore --clean --if-exists --no-owner --single-transaction "
        f"--dbname={shlex.quote(libpq_url(url)[0])} {shlex.quote(str(file))}"
    )
