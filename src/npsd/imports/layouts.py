"""Reading other tools' exports: one parser per layout, each yielding normalized rows.

A file is decoded (UTF-8 with or without a byte-order mark, or UTF-16 with one; anything else is
refused rather than guessed, because a wrong guess would store mangled names for good), its
layout recognised by signature headers (``auto``) or named, and each data row turned into either
a :class:`Row` (the item the bulk path of ``PUT /nps`` takes, plus the row number and the column
each field came from) or a :class:`RowError` (row number, column, what is wrong). A problem with
the whole file (not a CSV, an unknown layout, a score column that cannot be told) is an
:class:`ImportProblem` naming the option that fixes it.

Row numbers are those a spreadsheet shows: header rows count, and a cell holding line breaks is
still one row. Every row's ``sourceId`` comes from the tool's response id (``qualtrics:R_abc``),
or from a stable hash of its cells when it has none, so importing a file twice adds nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from npsd.kit.validation import check_email, to_utc
from npsd.privacy.service import ERASED_MARK

LAYOUTS = ("csv", "delighted", "qualtrics", "surveymonkey", "typeform", "formbricks")
CHOICES = ("auto", *LAYOUTS)
TOOL_NAMES = {
    "csv": "npsd CSV",
    "delighted": "Delighted",
    "qualtrics": "Qualtrics",
    "surveymonkey": "SurveyMonkey",
    "typeform": "Typeform",
    "formbricks": "Formbricks",
}
# How each option is spelled where the user gave it: the CLI's flags, or the API's form fields.
CLI_OPTIONS = {"from": "--from", "scoreColumn": "--score-column", "commentColumn": "--comment-column"}
API_OPTIONS = {"from": "from", "scoreColumn": "scoreColumn", "commentColumn": "commentColumn"}

# A row whose address an erasure removed from the stored upload (``privacy/``)
ERASED_ISSUE = "belonged to a person erased after the upload: the address was removed from the file"
MAX_TEXT = 65_536  # a comment, as the records API takes it
MAX_SHOWN_COLUMNS = 12


class ImportProblem(Exception):
    """The file as a whole cannot be imported; ``field`` is the API's name of the input at fault
    (``file``, ``from``, ``scoreColumn``, ``commentColumn``). ``{from}``, ``{scoreColumn}`` and
    ``{commentColumn}`` in the issue are filled with the spelling of the caller (flag or field)."""

    def __init__(self, field: str, issue: str) -> None:
        super().__init__(issue)
        self.field = field
        self.issue = issue

    def text(self, options: dict[str, str]) -> str:
        """The issue with each option spelled as ``options`` says."""
        issue = self.issue
        for name, spelled in options.items():
            issue = issue.replace("{" + name + "}", spelled)
        return issue


@dataclass(frozen=True)
class RowError:
    """One row that cannot be taken: its number, the column at fault, and why."""

    row: int
    column: str
    issue: str

    def out(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "issue": self.issue}


@dataclass(frozen=True)
class Row:
    """One answer, as an item of the bulk path (``email``, ``score``, ``comment``, ``dateAnswered``,
    ``sourceId``, ``source``, ``custom``), its ``company`` name if any, and which column of the
    file each field came from (to report the bulk path's own refusals by column)."""

    row: int
    item: dict[str, Any]
    company: str | None
    columns: dict[str, str]


@dataclass
class Parsed:
    """A whole file read: its layout, the columns chosen, and one entry per data row."""

    layout: str
    score_column: str | None
    comment_column: str | None
    rows: list[Row | RowError] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.rows)


# ------------------------------------------------------------------------------------------ decoding


def decode(data: bytes) -> str:
    """The text of an uploaded file, or an :class:`ImportProblem` naming ``file``."""
    if not data.strip():
        raise ImportProblem("file", "is empty")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ImportProblem("file", "starts like UTF-16 text but is not") from exc
    else:
        if b"\x00" in data:
            raise ImportProblem("file", "is not a text file (it holds binary data)")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ImportProblem(
                "file",
                f"is not UTF-8 text (byte {exc.start + 1} is not valid UTF-8): save the export as "
                "CSV UTF-8 (every tool's export is UTF-8 unless re-saved by a spreadsheet)",
            ) from exc
    text = text.lstrip("\ufeff")
    controls = sum(1 for ch in text[:4096] if ord(ch) < 32 and ch not in "\t\r\n")
    if controls > 8:
        raise ImportProblem("file", "is not a text file (it holds binary data)")
    if not text.strip():
        raise ImportProblem("file", "is empty")
    return text


def read_csv(text: str) -> list[list[str]]:
    """Every row of a CSV text (commas, semicolons or tabs, as its first line says)."""
    first_line, start = "", 0
    while not first_line.strip() and start <= len(text):  # the first line that is not blank
        end = text.find("\n", start)
        first_line, start = text[start : end if end >= 0 else len(text)], (end if end >= 0 else len(text)) + 1
    delimiter = max((",", ";", "\t"), key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[list[str]] = []
    try:
        for row in reader:
            rows.append(row)
    except csv.Error as exc:
        raise ImportProblem("file", f"is not a readable CSV file: {exc} (row {len(rows) + 1})") from exc
    return rows


def _blank(row: Sequence[str]) -> bool:
    return not any(cell.strip() for cell in row)


def _norm(name: str) -> str:
    return " ".join(name.strip().lower().split())


# --------------------------------------------------------------------------------------- cell values

_SCORE_RE = re.compile(r"^(\d{1,2})(?:\.0+)?(?:\s*[-\u2013:]\s*\D.*)?$", re.DOTALL)


def score_of(value: str) -> int | None:
    """A 0-10 score as tools write it (``9``, ``9.0``, ``10 - Extremely likely``), else None."""
    m = _SCORE_RE.match(value.strip())
    if m is None:
        return None
    score = int(m.group(1))
    return score if score <= 10 else None


_DATE_FORMATS = (
    "%m/%d/%Y %I:%M:%S %p",  # SurveyMonkey
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%a %b %d %Y",  # Formbricks (Date.toDateString)
    "%a %b %d %Y %H:%M:%S",
    "%B %d, %Y %I:%M %p",
    "%B %d, %Y",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y",
)


def date_of(value: str, zone: ZoneInfo | None = None) -> datetime | None:
    """A time as tools write it, as naive UTC (a time without offset is in ``zone``, else UTC);
    None when it is no date npsd knows. Unix seconds are taken too (Delighted)."""
    value = value.strip()
    if not value:
        return None
    parsed: datetime | None = None
    if value.isdigit() and len(value) >= 9:
        try:
            parsed = datetime.fromtimestamp(int(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    else:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            for fmt in _DATE_FORMATS:
                try:
                    parsed = datetime.strptime(value, fmt)
                    break
                except ValueError:
                    continue
    if parsed is None:
        return None
    if parsed.tzinfo is None and zone is not None:
        parsed = parsed.replace(tzinfo=zone)
    try:
        return to_utc(parsed)
    except (ValueError, OverflowError):
        return None


def _iso(value: datetime) -> str:
    return (
        value.replace(microsecond=value.microsecond // 1000 * 1000).isoformat(timespec="milliseconds") + "Z"
    )


def looks_like_email(value: str) -> bool:
    try:
        check_email(value.strip())
    except ValueError:
        return False
    return True


def row_hash(layout: str, cells: Sequence[str]) -> str:
    """A ``sourceId`` for a row without a response id: the same cells give the same id."""
    digest = hashlib.sha256("\x1f".join(c.strip() for c in cells).encode()).hexdigest()[:32]
    return f"{layout}:row-{digest}"


# ------------------------------------------------------------------------------------ column choices


@dataclass
class Table:
    """A CSV export: its column labels (one per column, already made unique and readable), the
    other names a column may be called by (question ids, texts, import ids), and its data rows
    with their spreadsheet row numbers."""

    labels: list[str]
    aliases: list[set[str]]
    rows: list[tuple[int, list[str]]]

    def find(self, *names: str) -> int | None:
        """The first column called one of ``names`` (case and spacing ignored)."""
        wanted = [_norm(n) for n in names]
        for name in wanted:
            for at, aliases in enumerate(self.aliases):
                if name in aliases:
                    return at
        return None

    def values(self, at: int) -> list[str]:
        return [cells[at].strip() for _, cells in self.rows if at < len(cells) and cells[at].strip()]

    def pick(self, option: str, name: str) -> int:
        """The column the user named with ``option``, or an :class:`ImportProblem` naming it."""
        at = self.find(name)
        if at is None:
            raise ImportProblem(
                option, f"names no column of this file ({name!r}); its columns are {self.shown()}"
            )
        return at

    def shown(self, columns: Sequence[int] | None = None) -> str:
        picked = list(range(len(self.labels))) if columns is None else list(columns)
        names = [repr(self.labels[i]) for i in picked[:MAX_SHOWN_COLUMNS]]
        more = len(picked) - MAX_SHOWN_COLUMNS
        return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def make_table(rows: list[list[str]], header_rows: int, start: int = 0) -> Table:
    """The table of a CSV whose first ``header_rows`` rows (from ``start``) are headers: each
    column is labelled by its first header row (a blank label follows the one before it, as
    SurveyMonkey leaves the cells of a question's further answers blank), with the second header
    row's text added when it tells columns apart."""
    headers = rows[start : start + header_rows]
    width = max((len(r) for r in rows), default=0)
    labels: list[str] = []
    aliases: list[set[str]] = []
    last = ""
    for at in range(width):
        names = [h[at].strip() if at < len(h) else "" for h in headers]
        first = names[0] if names else ""
        label = first or last or f"column {at + 1}"
        if not first and last and header_rows > 1 and len(names) > 1 and names[1]:
            label = f"{last} - {names[1]}"
        last = first or last
        labels.append(label)
        aliases.append({_norm(n) for n in (*names, label) if n})
    seen: dict[str, int] = {}
    for at, label in enumerate(labels):
        if label in seen:
            labels[at] = f"{label} ({at + 1})"
            aliases[at].add(_norm(labels[at]))
        seen[label] = at
    data = [
        (number, row)
        for number, row in enumerate(rows[start + header_rows :], start=start + header_rows + 1)
        if not _blank(row)
    ]
    return Table(labels, aliases, data)


_NPS_WORDS = re.compile(r"recommend|likely|\bnps\b|net promoter|empfehlen|recommander|recomendar", re.I)
_COMMENT_WORDS = re.compile(
    r"why|reason|comment|feedback|tell us|improve|explain|anything else|warum|pourquoi|por qu", re.I
)


def _score_share(values: Sequence[str]) -> float:
    return sum(1 for v in values if score_of(v) is not None) / len(values) if values else 0.0


def guess_score(table: Table, candidates: Sequence[int]) -> int:
    """The column holding the 0-10 answer: among ``candidates``, the one whose header mentions
    recommending, likelihood or NPS and whose answers are (mostly) integers 0-10; failing that, the
    only column whose answers are all 0-10 and reach above 5. Anything else is an ImportProblem
    that says what was found and names the option that settles it."""
    named = [
        at
        for at in candidates
        if any(_NPS_WORDS.search(a) for a in table.aliases[at]) and _score_share(table.values(at)) >= 0.5
    ]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise ImportProblem(
            "scoreColumn",
            f"is ambiguous: {len(named)} columns hold 0-10 answers to a recommend question "
            f"({table.shown(named)}); name the score column with {{scoreColumn}}",
        )
    scales = [
        at
        for at in candidates
        if table.values(at)
        and _score_share(table.values(at)) == 1.0
        and any((score_of(v) or 0) > 5 for v in table.values(at))
    ]
    if len(scales) == 1:
        return scales[0]
    found = f" ({len(scales)} columns could be: {table.shown(scales)})" if scales else ""
    raise ImportProblem(
        "scoreColumn",
        f"cannot be told: no column is clearly the 0-10 recommend question{found}; "
        "name the score column with {scoreColumn}",
    )


def guess_comment(table: Table, candidates: Sequence[int], score_at: int) -> int | None:
    """The free-text follow-up of the score question: after it, a text column whose header asks
    why (or is an ``Open-Ended Response``), else the text column right after it; None if neither."""
    after = [at for at in candidates if at > score_at]

    def is_text(at: int) -> bool:
        values = table.values(at)
        return not values or (
            _score_share(values) < 0.5 and not all(looks_like_email(v) for v in values[:20])
        )

    for at in after:
        if (
            any(_COMMENT_WORDS.search(a) for a in table.aliases[at])
            or "open-ended response" in table.aliases[at]
        ) and is_text(at):
            return at
    if after and after[0] == score_at + 1 and is_text(after[0]) and table.values(after[0]):
        return after[0]
    return None


def guess_email(table: Table, candidates: Sequence[int], known: Sequence[str]) -> int | None:
    """The column of e-mail addresses: one of the layout's ``known`` names that holds any, else a
    column whose header mentions e-mail, else one whose values all are addresses."""
    for name in known:
        at = table.find(name)
        if at is not None and table.values(at):
            return at
    for at in candidates:
        values = table.values(at)
        if (
            values
            and any("mail" in a for a in table.aliases[at])
            and sum(looks_like_email(v) for v in values) >= len(values) / 2
        ):
            return at
    for at in candidates:
        values = table.values(at)
        if values and all(looks_like_email(v) for v in values):
            return at
    at = next((table.find(n) for n in known if table.find(n) is not None), None)
    return at


# ---------------------------------------------------------------------------------------- the layouts


@dataclass
class Spec:
    """How one CSV layout's rows become answers: the columns chosen and how to read them."""

    layout: str
    table: Table
    email: int | None
    score: int
    comment: int | None
    date: int | None
    response_id: int | None
    company: int | None
    custom: list[int]
    zone: ZoneInfo | None = None
    date_required: bool = True
    custom_key: Callable[[int], str] | None = None
    source: int | None = None


def _company_column(table: Table) -> int | None:
    return table.find("company", "company name", "account", "organization", "organisation")


def _choose(
    table: Table,
    candidates: list[int],
    score_column: str | None,
    comment_column: str | None,
    score_default: int | None = None,
) -> tuple[int, int | None]:
    if score_column:
        score = table.pick("scoreColumn", score_column)
    elif score_default is not None:
        score = score_default
    else:
        score = guess_score(table, candidates)
    comment: int | None = None
    if comment_column:
        comment = table.pick("commentColumn", comment_column)
        if comment == score:
            raise ImportProblem("commentColumn", "names the score column; name the comment's column")
    elif comment_column is None:  # "" says there is none (how an upload records that)
        comment = guess_comment(table, candidates, score)
    return score, comment


QUALTRICS_META = {
    "startdate",
    "enddate",
    "status",
    "ipaddress",
    "progress",
    "duration (in seconds)",
    "finished",
    "recordeddate",
    "responseid",
    "recipientlastname",
    "recipientfirstname",
    "recipientemail",
    "externalreference",
    "externaldatareference",
    "locationlatitude",
    "locationlongitude",
    "distributionchannel",
    "userlanguage",
}


def qualtrics(rows: list[list[str]], score_column: str | None, comment_column: str | None) -> Spec:
    """Qualtrics CSV: three header rows (question ids like ``Q1``, question texts, and
    ``{"ImportId": "QID1"}``). The NPS question is the column with a ``<col>_NPS_GROUP`` sibling;
    ``RecordedDate`` is in the time zone the third row names."""
    table = make_table(rows, 3)
    names = [r.strip() for r in rows[0]]
    import_ids: list[dict[str, Any]] = []
    for cell in rows[2] if len(rows) > 2 else []:
        try:
            meta = orjson.loads(cell)
        except orjson.JSONDecodeError:
            meta = {}
        import_ids.append(meta if isinstance(meta, dict) else {})
        if isinstance(meta, dict) and isinstance(meta.get("ImportId"), str):
            table.aliases[len(import_ids) - 1].add(_norm(meta["ImportId"]))
    groups = {n.removesuffix("_NPS_GROUP") for n in names if n.endswith("_NPS_GROUP")}
    group_cols = {at for at, n in enumerate(names) if n.endswith("_NPS_GROUP")}
    candidates = [at for at, n in enumerate(names) if _norm(n) not in QUALTRICS_META and at not in group_cols]
    nps = [at for at, n in enumerate(names) if n in groups]
    default = None
    if not score_column:
        if len(nps) > 1:
            raise ImportProblem(
                "scoreColumn",
                f"is ambiguous: {len(nps)} NPS questions ({table.shown(nps)}); name the score "
                "column with {scoreColumn}",
            )
        default = nps[0] if nps else None
    if comment_column is None and default is not None:
        texts = [
            at
            for at in candidates
            if at > default
            and str((import_ids[at] if at < len(import_ids) else {}).get("ImportId", "")).endswith("_TEXT")
        ]
        if texts:
            comment_column = table.labels[texts[0]]
    score, comment = _choose(table, candidates, score_column, comment_column, default)
    zone = None
    date = table.find("RecordedDate", "Recorded Date") or table.find("EndDate")
    if date is not None and date < len(import_ids):
        zone = _zone(import_ids[date].get("timeZone"))
    used = {score, comment, date}
    return Spec(
        "qualtrics",
        table,
        email=guess_email(table, candidates, ["RecipientEmail", "Recipient Email"]),
        score=score,
        comment=comment,
        date=date,
        response_id=table.find("ResponseId", "Response ID"),
        company=_company_column(table),
        custom=[at for at in candidates if at not in used],
        zone=zone,
    )


def _zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name or name.upper() in ("UTC", "Z", "GMT"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ImportProblem("file", f"names a time zone npsd does not know ({name!r})") from exc


SURVEYMONKEY_META = {
    "respondent id",
    "collector id",
    "start date",
    "end date",
    "ip address",
    "email address",
    "first name",
    "last name",
}


def surveymonkey(rows: list[list[str]], score_column: str | None, comment_column: str | None) -> Spec:
    """SurveyMonkey "All individual responses" CSV: two header rows (``Respondent ID``,
    ``Collector ID``, ``Start Date``, ``End Date``, ``IP Address``, ``Email Address``, ``First
    Name``, ``Last Name``, custom data, then one column per question, the second row holding
    sub-labels such as ``Response`` or ``Open-Ended Response``). Dates are US style."""
    table = make_table(rows, 2)
    candidates = [at for at, a in enumerate(table.aliases) if not (a & SURVEYMONKEY_META)]
    score, comment = _choose(table, candidates, score_column, comment_column)
    date = table.find("End Date") or table.find("Start Date")
    return Spec(
        "surveymonkey",
        table,
        email=guess_email(table, candidates, ["Email Address"]),
        score=score,
        comment=comment,
        date=date,
        response_id=table.find("Respondent ID"),
        company=_company_column(table),
        custom=[at for at in candidates if at not in (score, comment)],
    )


TYPEFORM_META = {
    "#",
    "start date (utc)",
    "submit date (utc)",
    "stage date (utc)",
    "network id",
    "response type",
    "tags",
    "ending",
}


def typeform(rows: list[list[str]], score_column: str | None, comment_column: str | None) -> Spec:
    """Typeform CSV: ``#`` (the response token), one column per question (its text), hidden
    fields, ``Start Date (UTC)``, ``Submit Date (UTC)``, ``Network ID``."""
    table = make_table(rows, 1)
    candidates = [at for at, a in enumerate(table.aliases) if not (a & TYPEFORM_META)]
    score, comment = _choose(table, candidates, score_column, comment_column)
    email = guess_email(table, candidates, ["email", "e-mail"])
    return Spec(
        "typeform",
        table,
        email=email,
        score=score,
        comment=comment,
        date=table.find("Submit Date (UTC)") or table.find("Stage Date (UTC)", "Start Date (UTC)"),
        response_id=table.find("#"),
        company=_company_column(table),
        custom=[at for at in candidates if at not in (score, comment, email)],
    )


FORMBRICKS_META = {
    "no.",
    "response id",
    "timestamp",
    "finished",
    "survey id",
    "formbricks id (internal)",
    "user id",
    "notes",
    "tags",
    "url",
    "source",
    "action",
    "country",
    "useragent - os",
    "useragent - device",
    "useragent - browser",
    "verified email",
    "language",
}


def formbricks(rows: list[list[str]], score_column: str | None, comment_column: str | None) -> Spec:
    """Formbricks CSV download: ``Response ID``, ``Timestamp``, ``Finished``, ``Survey ID``,
    ``Formbricks ID (internal)``, ``User ID``, meta data, questions as ``N. <headline>``, hidden
    fields and the person's attributes (``email``, ``person.email``, ``Verified Email``)."""
    table = make_table(rows, 1)
    candidates = [at for at, a in enumerate(table.aliases) if not (a & FORMBRICKS_META)]
    questions = [at for at in candidates if re.match(r"^\d+\.\s", table.labels[at])]
    score, comment = _choose(table, questions or candidates, score_column, comment_column)
    email = guess_email(table, candidates, ["Verified Email", "person.email", "email", "userEmail"])
    return Spec(
        "formbricks",
        table,
        email=email,
        score=score,
        comment=comment,
        date=table.find("Timestamp"),
        response_id=table.find("Response ID"),
        company=_company_column(table),
        custom=[at for at in candidates if at not in (score, comment, email)],
    )


DELIGHTED_META = {
    "response id",
    "id",
    "score",
    "comment",
    "email",
    "person email",
    "created at",
    "date",
    "date (utc)",
    "response timestamp",
    "updated at",
    "permalink",
    "person id",
    "person",
    "survey type",
    "notes",
}


def delighted_csv(rows: list[list[str]], score_column: str | None, comment_column: str | None) -> Spec:
    """Delighted's CSV export: ``Response ID``, ``Score``, ``Comment``, a date column, the
    person's ``Name`` and ``Email``, ``Permalink``, then the person's properties by name."""
    table = make_table(rows, 1)
    candidates = [at for at, a in enumerate(table.aliases) if not (a & DELIGHTED_META)]
    score, comment = _choose(table, candidates, score_column, comment_column, table.find("Score"))
    if comment_column is None:
        comment = table.find("Comment")
    return Spec(
        "delighted",
        table,
        email=table.find("Email", "Person Email"),
        score=score,
        comment=comment,
        date=table.find("Created At", "Date (UTC)", "Response timestamp", "Date"),
        response_id=table.find("Response ID", "ID"),
        company=_company_column(table),
        custom=[at for at in candidates if at not in (score, comment) and _norm(table.labels[at]) != "name"],
    )


NPSD_COLUMNS = ("email", "score", "comment", "date", "sourceId", "company", "source")


def npsd_csv(rows: list[list[str]], score_column: str | None, comment_column: str | None) -> Spec:
    """npsd's own CSV: ``email``, ``score`` (required), ``comment``, ``date`` (ISO 8601; UTC unless
    it carries an offset), ``sourceId``, ``company`` (a company's name or id), ``source``, and any
    ``custom.<key>`` columns. See docs/imports.md."""
    table = make_table(rows, 1)
    header = [c.strip() for c in rows[0]]
    unknown = [h for h in header if h and h not in NPSD_COLUMNS and not h.startswith("custom.")]
    if unknown:
        raise ImportProblem(
            "file",
            f"has columns npsd's CSV layout does not know ({', '.join(map(repr, unknown[:5]))}); it takes "
            f"{', '.join(NPSD_COLUMNS)} and custom.<key>",
        )
    for required in ("email", "score"):
        if required not in header:
            raise ImportProblem("file", f"needs a column named {required!r} in its header row")
    score, comment = _choose(
        table,
        list(range(len(header))),
        score_column,
        comment_column,
        header.index("score"),
    )
    if comment_column is None:
        comment = header.index("comment") if "comment" in header else None
    custom = [at for at, h in enumerate(header) if h.startswith("custom.") and len(h) > len("custom.")]
    return Spec(
        "csv",
        table,
        email=header.index("email"),
        score=score,
        comment=comment,
        date=header.index("date") if "date" in header else None,
        response_id=header.index("sourceId") if "sourceId" in header else None,
        company=header.index("company") if "company" in header else None,
        custom=custom,
        date_required=False,
        custom_key=lambda at: header[at][len("custom.") :],
        source=header.index("source") if "source" in header else None,
    )


CSV_PARSERS: dict[str, Callable[[list[list[str]], str | None, str | None], Spec]] = {
    "csv": npsd_csv,
    "delighted": delighted_csv,
    "qualtrics": qualtrics,
    "surveymonkey": surveymonkey,
    "typeform": typeform,
    "formbricks": formbricks,
}


def recognise(rows: list[list[str]]) -> str | None:
    """The layout whose signature headers the first row carries, or None."""
    if not rows:
        return None
    exact = {c.strip() for c in rows[0]}
    names = {_norm(c) for c in rows[0]}
    if "responseid" in names and len(rows) > 2 and any('"importid"' in c.lower() for c in rows[2]):
        return "qualtrics"
    if {"respondent id", "collector id"} <= names:
        return "surveymonkey"
    if "#" in names and ({"submit date (utc)", "network id"} & names):
        return "typeform"
    if "response id" in names and ("formbricks id (internal)" in names or {"timestamp", "finished"} <= names):
        return "formbricks"
    if {"email", "score"} <= exact:
        return "csv"
    if "score" in names and ({"permalink", "response id"} & names):
        return "delighted"
    return None


# What a file must carry to be read as a layout named explicitly (``auto`` asks for more).
NEEDS: dict[str, tuple[Callable[[list[list[str]]], bool], str]] = {
    "qualtrics": (
        lambda rows: (
            "responseid" in {_norm(c) for c in rows[0]}
            and len(rows) > 2
            and any('"importid"' in c.lower() for c in rows[2])
        ),
        'a ResponseId column and a third header row of {"ImportId": ...} cells',
    ),
    "surveymonkey": (
        lambda rows: "respondent id" in {_norm(c) for c in rows[0]},
        "a Respondent ID column",
    ),
    "typeform": (lambda rows: "#" in {_norm(c) for c in rows[0]}, "a # column (the response token)"),
    "formbricks": (lambda rows: "response id" in {_norm(c) for c in rows[0]}, "a Response ID column"),
    "delighted": (lambda rows: "score" in {_norm(c) for c in rows[0]}, "a Score column"),
}


def check_fits(layout: str, rows: list[list[str]]) -> None:
    """Refuse a layout named for a file that lacks its signature, saying what auto would read."""
    need = NEEDS.get(layout)
    if need is None or need[0](rows):
        return
    found = recognise(rows)
    hint = f"; it looks like a {TOOL_NAMES[found]} export ({{from}} {found} or auto)" if found else ""
    raise ImportProblem("from", f"does not fit this file: a {TOOL_NAMES[layout]} export has {need[1]}{hint}")


# ------------------------------------------------------------------------------------------ the rows


def _rows_of(spec: Spec) -> list[Row | RowError]:
    table = spec.table
    labels = table.labels
    out: list[Row | RowError] = []
    source = spec.layout if spec.layout != "csv" else "import"
    for number, cells in table.rows:

        def cell(at: int | None, cells: list[str] = cells) -> str:
            return cells[at].strip() if at is not None and at < len(cells) else ""

        def fail(at: int | None, issue: str, number: int = number) -> RowError:
            return RowError(number, labels[at] if at is not None else "", issue)

        columns: dict[str, str] = {}
        item: dict[str, Any] = {}
        # e-mail
        if spec.email is None:
            out.append(RowError(number, "email", "the file has no column of e-mail addresses"))
            continue
        email = cell(spec.email)
        if not email:
            out.append(fail(spec.email, "is empty: every answer is filed under a contact's e-mail address"))
            continue
        if email == ERASED_MARK:
            out.append(fail(spec.email, ERASED_ISSUE))
            continue
        if not looks_like_email(email):
            out.append(fail(spec.email, f"is not a valid e-mail address ({email[:100]!r})"))
            continue
        item["email"] = email
        columns["email"] = labels[spec.email]
        # score
        raw_score = cell(spec.score)
        score = score_of(raw_score)
        if score is None:
            issue = "is empty" if not raw_score else f"is not an integer from 0 to 10 ({raw_score[:50]!r})"
            out.append(fail(spec.score, issue))
            continue
        item["score"] = score
        columns["score"] = labels[spec.score]
        # comment
        if spec.comment is not None:
            raw = cells[spec.comment] if spec.comment < len(cells) else ""
            text = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
            item["comment"] = text or None
            columns["comment"] = labels[spec.comment]
            if len(text) > MAX_TEXT:
                out.append(fail(spec.comment, f"is longer than {MAX_TEXT} characters"))
                continue
        # date
        if spec.date is not None:
            raw_date = cell(spec.date)
            if raw_date:
                answered = date_of(raw_date, spec.zone)
                if answered is None:
                    out.append(fail(spec.date, f"is not a date npsd can read ({raw_date[:50]!r})"))
                    continue
                item["dateAnswered"] = _iso(answered)
                columns["dateAnswered"] = labels[spec.date]
            elif spec.date_required:
                out.append(fail(spec.date, "is empty"))
                continue
        elif spec.date_required:
            out.append(RowError(number, "date", "the file has no date column"))
            continue
        # source id
        response_id = cell(spec.response_id)
        if spec.layout == "csv" and response_id:
            item["sourceId"] = response_id
        elif response_id:
            item["sourceId"] = f"{spec.layout}:{response_id}"
        else:
            item["sourceId"] = row_hash(spec.layout, cells)
        if spec.response_id is not None:
            columns["sourceId"] = labels[spec.response_id]
        if len(item["sourceId"]) > 500:
            out.append(fail(spec.response_id, "is longer than 500 characters"))
            continue
        item["source"] = cell(spec.source) or source
        if spec.source is not None:
            columns["source"] = labels[spec.source]
        custom: dict[str, Any] = {}
        for at in spec.custom:
            if at == spec.company:
                continue
            value = cell(at)
            if value:
                custom[spec.custom_key(at) if spec.custom_key else labels[at]] = value
        if custom:
            item["custom"] = custom
        company = cell(spec.company) or None
        if spec.company is not None:
            columns["company"] = labels[spec.company]
        out.append(Row(number, item, company, columns))
    return out


def _json_rows(text: str) -> list[tuple[int, Any]]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            data = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise ImportProblem("file", f"is not valid JSON: {exc}") from exc
        if not isinstance(data, list):
            raise ImportProblem("file", "must be a JSON array of responses")
        return [(i + 1, obj) for i, obj in enumerate(data)]
    out: list[tuple[int, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((number, orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            raise ImportProblem("file", f"is not valid JSON lines: line {number}: {exc}") from exc
    return out


def _flat(value: Any) -> Any:
    return (
        value
        if isinstance(value, str | int | float | bool) or value is None
        else orjson.dumps(value).decode()
    )


def delighted_json(text: str) -> list[Row | RowError]:
    """Delighted API responses (``GET /v1/survey_responses.json`` with ``expand[]=person``), as a
    JSON array or one object a line: ``id``, ``score``, ``comment``, ``created_at`` (Unix seconds),
    ``person`` (``{email, name}``), ``person_properties``."""
    out: list[Row | RowError] = []
    for number, obj in _json_rows(text):
        if not isinstance(obj, dict):
            out.append(RowError(number, "", "is not a JSON object"))
            continue
        person = obj.get("person")
        email = person.get("email") if isinstance(person, dict) else obj.get("email")
        if not isinstance(email, str) or not email.strip():
            out.append(
                RowError(number, "person.email", "is missing (export with expand[]=person to get addresses)")
            )
            continue
        if email.strip() == ERASED_MARK:
            out.append(RowError(number, "person.email", ERASED_ISSUE))
            continue
        if not looks_like_email(email):
            out.append(RowError(number, "person.email", f"is not a valid e-mail address ({email[:100]!r})"))
            continue
        score = obj.get("score")
        if isinstance(score, str):
            score = score_of(score)
        if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= 10:
            out.append(RowError(number, "score", f"is not an integer from 0 to 10 ({obj.get('score')!r})"))
            continue
        comment = obj.get("comment")
        if comment is not None and not isinstance(comment, str):
            out.append(RowError(number, "comment", "must be text"))
            continue
        created = obj.get("created_at")
        if isinstance(created, float) and created.is_integer():
            created = int(created)
        answered = (
            date_of(str(created))
            if isinstance(created, int | str) and not isinstance(created, bool)
            else None
        )
        if answered is None:
            out.append(RowError(number, "created_at", f"is not a time npsd can read ({created!r})"))
            continue
        rid = obj.get("id")
        item: dict[str, Any] = {
            "email": email.strip(),
            "score": score,
            "comment": comment.strip() or None if comment else None,
            "dateAnswered": _iso(answered),
            "sourceId": f"delighted:{rid}"
            if isinstance(rid, str | int) and str(rid)
            else row_hash("delighted", [orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()]),
            "source": "delighted",
        }
        props = obj.get("person_properties")
        company = None
        if isinstance(props, dict) and props:
            for key in ("company", "Company", "company_name", "Company Name"):
                if isinstance(props.get(key), str) and props[key].strip():
                    company = props[key].strip()
                    break
            custom = {str(k): _flat(v) for k, v in props.items() if company is None or k != key}
            if custom:
                item["custom"] = custom
        columns = {
            "email": "person.email",
            "score": "score",
            "comment": "comment",
            "dateAnswered": "created_at",
            "sourceId": "id",
            "custom": "person_properties",
            "company": "person_properties.company",
        }
        out.append(Row(number, item, company, columns))
    return out


def parse(
    data: bytes, layout: str = "auto", score_column: str | None = None, comment_column: str | None = None
) -> Parsed:
    """Read a whole export: its layout (named, or recognised when ``auto``), the columns used, and
    one :class:`Row` or :class:`RowError` per data row, in file order. An in-file repeat of a
    response (the same ``sourceId``) is an error pointing at the first row."""
    if layout not in CHOICES:
        raise ImportProblem("from", f"must be one of {', '.join(CHOICES)}")
    text = decode(data)
    stripped = text.lstrip()
    is_json = stripped.startswith(("[", "{"))
    if is_json and layout in ("auto", "delighted"):
        for which, given, fixed in (
            ("scoreColumn", score_column, "score"),
            ("commentColumn", comment_column, "comment"),
        ):
            if given and given != fixed:
                raise ImportProblem(which, f"does not apply to Delighted's JSON, whose field is {fixed!r}")
        parsed = Parsed("delighted", "score", "comment", delighted_json(text))
    else:
        rows = read_csv(text)
        skipped = 0
        while skipped < len(rows) and _blank(rows[skipped]):
            skipped += 1
        rows = rows[skipped:]
        if not rows:
            raise ImportProblem("file", "is empty")
        if layout == "auto":
            found = recognise(rows)
            if found is None:
                raise ImportProblem(
                    "from",
                    "cannot be recognised: the header row is none of npsd's layouts "
                    f"({', '.join(LAYOUTS)}); name the layout with {{from}} (see docs/imports.md)",
                )
            layout = found
        check_fits(layout, rows)
        spec = CSV_PARSERS[layout](rows, score_column, comment_column)
        if spec.email is None:
            raise ImportProblem(
                "file",
                "has no column of e-mail addresses: npsd files every answer under a contact's "
                "address (see docs/imports.md for where each tool exports it)",
            )
        parsed = Parsed(
            layout,
            spec.table.labels[spec.score],
            spec.table.labels[spec.comment] if spec.comment is not None else None,
            _rows_of(spec),
        )
        if skipped:  # blank lines above the header still count as spreadsheet rows
            parsed.rows = [dataclasses.replace(e, row=e.row + skipped) for e in parsed.rows]
    if not parsed.rows:
        raise ImportProblem("file", "has no answers below its header")
    first: dict[str, int] = {}
    for index, entry in enumerate(parsed.rows):
        if isinstance(entry, Row):
            sid = entry.item["sourceId"]
            if sid in first:
                parsed.rows[index] = RowError(
                    entry.row,
                    entry.columns.get("sourceId", "sourceId"),
                    f"repeats the answer of row {first[sid]} (same response id {sid!r})",
                )
            else:
                first[sid] = entry.row
    return parsed
