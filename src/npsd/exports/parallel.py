"""Large CSV exports on SQLite, written by several processes at once.

A SQLite export spends nearly all its time in the database computing each record's CSV line
(see ``csv_lines_sql``), on one core. Threads cannot share that work: SQLite's allocator takes one
process-wide lock, so two reading threads run no faster than one. Worker processes can. The
sorted rows are cut into blocks of consecutive sort keys; worker ``k`` writes blocks ``k``,
``k + n``, ``k + 2n``... and the response sends them in order, so the file is byte for byte the
one a single reader writes.

Every reader must see the same rows. A WAL reader's snapshot is fixed by its first read, so the
export takes the write lock (``BEGIN IMMEDIATE``: no commit can happen meanwhile), has the
workers and its own connection read once, and releases the lock: a pause for writers of a few
milliseconds, however large the export. Memory stays flat: a worker sends its block in pieces of
about a megabyte and waits on the pipe until the response has taken them, and the reader cuts
the next block (a keyset query that skips a block's worth of index entries) only when a worker
needs one.

This module uses only the standard library: the workers run it (``python -m npsd.exports.parallel``),
and start in a few tens of milliseconds.

The names at the end of each line (contact, company, survey) are not joined in SQL: each would
cost SQLite two b-tree searches per row. :class:`NameTails` looks each id up once, by batch, in
the reader's own snapshot, and remembers the end of the line per combination of ids.

:data:`CSV_EXPORTS` counts, per server process, which CSV exports the workers wrote and which one
reader wrote, and why: the workers are an optimisation that fails quietly by design (the file is
the same either way), so only these counts tell an operator whether they are doing their job.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

PIN = "SELECT 1 FROM sqlite_master LIMIT 1"  # any read fixes a WAL reader's snapshot
READY_SECONDS = 30.0  # how long a worker may take to start before the export gives up on them
FETCH_ROWS = 500  # rows a worker fetches at a time
SEND_BYTES = 1 << 20  # a worker sends about this much at a time: few, large messages, bounded memory
TAILS = 50_000  # line ends a reader remembers before it starts afresh: ~20 MB at most


# What an export shows of the follow-up of each answer, after the names (npsd.followup): the tags
# (sorted, ignoring case, joined with "; "), the status, the assignee's address and the notes
# (newest first, one a line: "[time author] text").
FOLLOW_UP_FIELDS = ("tags", "followUpStatus", "assigneeEmail", "notes")
TAG_SEPARATOR = "; "
NOTE_SEPARATOR = "\n"
FORMULA_START = frozenset("=+-@\t\r")
NO_FOLLOW_UP = "," * len(FOLLOW_UP_FIELDS)  # the empty cells of an answer nobody followed up

Block = tuple[str, Sequence[Any]]  # (which SQL text, its parameters)
# How one name column is looked up: (SQL text, its parameters, the position among them of the JSON
# array of ids, and that of the organization). It answers (id, finished CSV cell) for the ids of
# the organization it knows.
Lookup = tuple[str, Sequence[Any], int, int]


def stamp(value: Any) -> str:
    """A stored time as the API prints it (``2024-01-02T10:30:00.123Z``): SQLite's text read raw,
    or a ``datetime``."""
    if isinstance(value, str):
        if len(value) >= 23:
            return f"{value[:10]}T{value[11:23]}Z"
        value = datetime.fromisoformat(value)
    moment: datetime = value
    return moment.isoformat(timespec="milliseconds") + "Z"


class FollowUp:
    """The follow-up of one answer, gathered from the rows of a follow-up query."""

    __slots__ = ("assignee", "notes", "status", "tags")

    def __init__(self) -> None:
        self.tags: list[str] = []
        self.status: str | None = None
        self.assignee: str | None = None
        self.notes: list[tuple[str, str, str]] = []  # (time, author, text)

    def texts(self) -> tuple[str | None, str | None, str | None, str | None]:
        """The four values of CSV and XLSX (``FOLLOW_UP_FIELDS``), None where empty."""
        notes = NOTE_SEPARATOR.join(f"[{at} {author}] {text}" for at, author, text in self.notes)
        return (TAG_SEPARATOR.join(self.tags) or None, self.status, self.assignee, notes or None)

    def json(self) -> tuple[list[str], str | None, str | None, list[dict[str, str]]]:
        """The four values of JSON and NDJSON: tags and notes as lists."""
        notes = [{"text": text, "authorEmail": author, "createdAt": at} for at, author, text in self.notes]
        return (self.tags, self.status, self.assignee, notes)


def follow_ups(rows: Iterable[Sequence[Any]]) -> dict[str, FollowUp]:
    """Rows ``(record id, kind, text, author, time)`` of a follow-up query (kind ``t``: a tag;
    ``n``: a note; ``f``: the status, with the assignee's address as author) by answer, tags
    sorted ignoring case and notes newest first."""
    found: dict[str, FollowUp] = {}
    for rid, kind, text, author, at in rows:
        f = found.get(rid)
        if f is None:
            f = found[rid] = FollowUp()
        if kind == "t":
            f.tags.append(text)
        elif kind == "n":
            f.notes.append((stamp(at), author or "", text))
        else:
            f.status, f.assignee = text, author
    for f in found.values():
        f.tags.sort(key=lambda t: (t.casefold(), t))
        f.notes.sort(reverse=True)
    return found


def csv_cell(value: str | None) -> str:
    """``value`` as a finished CSV cell, as the ``csv`` module writes it: formula guard (``'``
    before =, +, -, @, TAB, CR), quotes when it holds a quote, comma or line break."""
    if value is None:
        return ""
    if value[:1] in FORMULA_START:
        value = "'" + value
    if '"' in value or "," in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


# How the follow-up of a batch of answers is read: (SQL text, its parameters, the positions among
# them of the JSON array of record ids, the ids that have a follow-up or None for "ask for all").
# It answers the rows :func:`follow_ups` reads.
FollowUpLookup = tuple[str, Sequence[Any], Sequence[int], frozenset[str] | None]


class NameTails:
    """The ends of CSV lines: the cells of the names beside the ids, then ``\\r\\n``.

    A line query selects each record's line up to its names, then the id behind each name (as
    ``lookups`` lists them), then the record's organization, in which the names are looked up
    (a ``campaignId`` may be another organization's survey id: it names nothing). Joining the
    names in SQL costs SQLite two b-tree searches per name and row (the id's index, then the
    row): at 1M records the three names made the lines cost about 60% more. Here the ids of a
    batch that are not known yet are looked up together, one query per name, on ``query`` (the
    reader's own connection, so in its snapshot), and the end of the line is remembered per
    combination of ids, up to :data:`TAILS` of them (then all is forgotten and found again:
    memory stays bounded however many contacts an export meets). No id, or an id that names
    nothing, is an empty cell.
    """

    def __init__(
        self,
        query: Callable[[str, Sequence[Any]], Iterable[Sequence[Any]]],
        lookups: Sequence[Lookup],
        follow_up: FollowUpLookup | None = None,
    ):
        self.query = query
        self.lookups = lookups
        self.follow_up = follow_up
        self.cells: list[dict[tuple[Any, Any], str]] = [{} for _ in lookups]
        self.tails: dict[Any, str] = {}  # by the ids and organization of a row (a tuple)

    def lines(self, batch: Sequence[Sequence[Any]]) -> str:
        """The finished lines of ``batch``: tuples of (line up to the names, *their ids,
        organization, record id), as the driver returns them. A line ends with the names, then
        the follow-up cells (empty unless ``follow_up`` finds some for the answer)."""
        tails = self.tails
        try:  # once the ids are known, one look-up a row
            lines = [row[0] + tails[row[1:-1]] for row in batch]
        except KeyError:
            keys = {row[1:-1] for row in batch}
            missing = keys.difference(tails)
            if len(tails) + len(missing) > TAILS:  # start afresh, with this batch's
                self.tails = {}
                self.cells = [{} for _ in self.lookups]
                missing = keys
            self._learn(missing)
            tails = self.tails
            lines = [row[0] + tails[row[1:-1]] for row in batch]
        if self.follow_up is not None:
            self._follow_up(batch, lines)
        return "".join(lines)

    def _follow_up(self, batch: Sequence[Sequence[Any]], lines: list[str]) -> None:
        """Put the follow-up cells of the batch's answers that have some into their lines: one
        query for the batch, only when it holds such an answer; the others keep their empty cells."""
        sql, params, ids_at, only = self.follow_up  # type: ignore[misc]
        wanted = [row[-1] for row in batch] if only is None else [row[-1] for row in batch if row[-1] in only]
        if not wanted:
            return
        values = list(params)
        ids = json.dumps(wanted)
        for at in ids_at:
            values[at] = ids
        found = follow_ups(self.query(sql, values))
        if not found:
            return
        cut = len(NO_FOLLOW_UP) + 2  # the empty cells and CRLF
        for index, row in enumerate(batch):
            f = found.get(row[-1])
            if f is not None:
                cells = "".join("," + csv_cell(v) for v in f.texts())
                lines[index] = lines[index][:-cut] + cells + "\r\n"

    def _learn(self, missing: set[Any]) -> None:
        for index, (sql, params, ids_at, org_at) in enumerate(self.lookups):
            cells = self.cells[index]  # by (organization, id)
            wanted: dict[Any, set[Any]] = {}
            for key in missing:
                if key[index] is not None and (key[-1], key[index]) not in cells:
                    wanted.setdefault(key[-1], set()).add(key[index])
            for org, ids in wanted.items():  # one organization per export
                values = list(params)
                values[ids_at], values[org_at] = json.dumps(sorted(ids)), org
                found = {row[0]: row[1] for row in self.query(sql, values)}
                for id_ in ids:
                    cells[org, id_] = found.get(id_) or ""
        for key in missing:
            org = key[-1]
            ends = ["," + ("" if id_ is None else self.cells[i][org, id_]) for i, id_ in enumerate(key[:-1])]
            self.tails[key] = "".join(ends) + NO_FOLLOW_UP + "\r\n"


class WriterCounts:
    """How this process wrote its CSV exports, counted since it started.

    Each CSV export counts once, in one of three places: ``workers_used`` (worker processes took
    it on), ``single_reader[reason]`` (one reader was the plan: workers turned off, a database
    that is not a SQLite file, too few rows, an order blocks cannot be cut by) or
    ``fallbacks[reason]`` (the plan was workers, but they could not take it: ``busy``, ``start``,
    ``lock``, ``custom_columns``, ``error``). The file is the same bytes in every case, so a
    climbing fallback count is the one sign that the workers are not doing their job. Reasons
    are short fixed words, fit for metric labels.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # exports run on several threads of the server
        self.workers_used = 0
        self.single_reader: Counter[str] = Counter()
        self.fallbacks: Counter[str] = Counter()

    def worker_export(self) -> None:
        """An export handed to the workers (counted when they start writing it)."""
        with self._lock:
            self.workers_used += 1

    def single_reader_export(self, reason: str) -> None:
        """An export that one reader writes as planned."""
        with self._lock:
            self.single_reader[reason] += 1

    def fallback(self, reason: str) -> None:
        """An export planned for the workers that one reader writes instead (also counted in
        ``npsd_export_fallbacks_total``, by reason, for ``GET /metrics``)."""
        # imported here: the worker processes run this module and must start without it
        from npsd.kit.telemetry import EXPORT_FALLBACKS

        with self._lock:
            self.fallbacks[reason] += 1
        EXPORT_FALLBACKS.labels(reason).inc()

    def snapshot(self) -> dict[str, Any]:
        """The counts at this moment, as plain values: ``workers_used``, ``single_reader`` and
        ``fallbacks`` (the last two by reason)."""
        with self._lock:
            return {
                "workers_used": self.workers_used,
                "single_reader": dict(self.single_reader),
                "fallbacks": dict(self.fallbacks),
            }


CSV_EXPORTS = WriterCounts()  # this process's CSV exports, by who wrote them


def _worker(path: str, busy_ms: int, pipe: Pipe, index: int, count: int) -> None:
    """A worker process: connect, fix the snapshot when asked, then write its blocks in order."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"  # percent-encoded: any file name is safe
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        pipe.send("ready")
        if pipe.recv() != "pin":
            return
        conn.execute("BEGIN")
        conn.execute(PIN).fetchall()
        pipe.send("pinned")
        # the SQL texts and the name lookups, then one block at a time, then None
        sql: dict[str, str] = pipe.recv()
        lookups, follow_up = pipe.recv(), pipe.recv()
        tails = NameTails(lambda text, params: conn.execute(text, params).fetchall(), lookups, follow_up)
        while (block := pipe.recv()) is not None:
            kind, params = block
            cursor = conn.execute(sql[kind], params)
            parts: list[bytes] = []
            size = 0
            while batch := cursor.fetchmany(FETCH_ROWS):
                part = tails.lines(batch).encode()
                parts.append(part)
                size += len(part)
                if size >= SEND_BYTES:  # however long the rows, a worker holds about this much
                    pipe.send_bytes(b"".join(parts))
                    parts, size = [], 0
            if parts:
                pipe.send_bytes(b"".join(parts))
            pipe.send_bytes(b"")  # the end of the block
    except (BrokenPipeError, ConnectionResetError, EOFError, KeyboardInterrupt):
        pass  # the response went away: nothing left to do
    finally:
        conn.close()


class Workers:
    """``count`` worker processes for one export; :meth:`pin` gives them and the export's own reader one snapshot."""

    def __init__(self, path: str, count: int, busy_ms: int) -> None:
        self.path = path
        self.busy_ms = busy_ms
        self.pipes: list[Pipe] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            for index in range(count):
                # a fresh interpreter running this module (python -m), talking over a socket pair:
                # unlike multiprocessing's spawn it never re-imports the server's __main__
                ours, theirs = socket.socketpair()
                with theirs:
                    process = subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            __name__,
                            str(theirs.fileno()),
                            path,
                            str(busy_ms),
                            str(index),
                            str(count),
                        ],
                        pass_fds=(theirs.fileno(),),
                        stdin=subprocess.DEVNULL,
                    )
                self.processes.append(process)
                self.pipes.append(Pipe(ours.detach()))
        except BaseException:
            self.close()
            raise

    def _expect(self, word: str) -> None:
        for pipe in self.pipes:
            if not pipe.poll(READY_SECONDS) or pipe.recv() != word:
                raise RuntimeError(f"an export worker did not answer {word!r}")

    def pin(self, pin_reader: Any) -> None:
        """Fix the workers' snapshot and ``pin_reader()``'s to one moment: all read once while
        this process holds the write lock."""
        self._expect("ready")  # started and connected: the lock is held only for the pinning
        lock = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_ms / 1000)
        try:
            lock.execute("BEGIN IMMEDIATE")
            try:
                for pipe in self.pipes:
                    pipe.send("pin")
                pin_reader()
                self._expect("pinned")
            finally:
                lock.execute("ROLLBACK")
        finally:
            lock.close()

    def run(
        self,
        sql: dict[str, str],
        lookups: Sequence[Lookup],
        blocks: Iterator[Block],
        follow_up: FollowUpLookup | None = None,
    ) -> Iterator[bytes]:
        """Hand out the blocks round robin, a few ahead of what was sent, and yield their CSV in
        order (``sql``: the line queries by kind; ``lookups``: the names', ``follow_up``: the
        answers' follow-up, see :class:`NameTails`). ``blocks`` is read lazily: cutting the
        next block costs the reader some work."""
        for pipe in self.pipes:
            pipe.send(sql)
            pipe.send(list(lookups))
            pipe.send(follow_up)
        waiting: deque[int] = deque()  # the worker of each block handed out and not yet sent on
        number = 0
        ahead = 2 * len(self.pipes)

        def hand_out() -> None:
            nonlocal number
            block = next(blocks, None)
            if block is not None:
                worker = number % len(self.pipes)
                self.pipes[worker].send(block)
                waiting.append(worker)
                number += 1

        for _ in range(ahead):
            hand_out()
        while waiting:
            pipe = self.pipes[waiting.popleft()]
            hand_out()
            while data := pipe.recv_bytes():
                yield data
        for pipe in self.pipes:
            pipe.send(None)

    def close(self) -> None:
        """Stop the workers at once: a finished one has exited already, one still writing holds
        nothing but a read snapshot. Never waits long: this may run on the event loop's thread,
        when a client that went away has its response collected."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.close()
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(0.05)  # one that was told to finish exits at once
            if process.poll() is None:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(1)


if __name__ == "__main__":  # a worker: python -m npsd.exports.parallel FD PATH BUSY_MS INDEX COUNT
    fd, db_path, busy, worker_index, workers = sys.argv[1:6]
    _worker(db_path, int(busy), Pipe(int(fd)), int(worker_index), int(workers))
