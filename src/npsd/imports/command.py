"""``npsd import``: the command line's face of the import engine.

Progress goes to stderr (a Rich bar on a terminal, a plain line a batch otherwise); the report
(each row not taken, then the summary) to stdout, as a table on a terminal and tab-separated
lines otherwise, so scripts can read it. The exit status is 0 only when every row was taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from npsd.auth.service import find_org
from npsd.imports.layouts import CLI_OPTIONS, ImportProblem, parse
from npsd.imports.service import Tally, check_survey, run_rows
from npsd.kit.db import Database
from npsd.kit.errors import NpsdError
from npsd.kit.ids import is_id
from npsd.kit.models import Organization


class CommandFailed(Exception):
    """The import could not start (a bad file, option, organization or survey): one line."""


@dataclass(frozen=True)
class Outcome:
    rows: int
    tally: Tally

    @property
    def ok(self) -> bool:
        return not self.tally.errors


def run_import(
    db: Database,
    path: Path,
    org: str,
    *,
    survey: str | None,
    layout: str,
    score_column: str | None,
    comment_column: str | None,
    dry_run: bool,
    err: Console,
    out: Console,
) -> Outcome:
    """Read ``path``, write its rows into organization ``org`` and print the report."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandFailed(f"cannot read {path}: {exc.strerror or exc}") from exc
    with db.transaction(write=False) as session:
        org_id, survey_id = _targets(session, org, survey)
    try:
        parsed = parse(data, layout, score_column, comment_column)
    except ImportProblem as problem:
        name = CLI_OPTIONS.get(problem.field, "FILE" if problem.field == "file" else problem.field)
        raise CommandFailed(f"{name}: {problem.text(CLI_OPTIONS)}") from problem
    columns = f"score column {parsed.score_column!r}" + (
        f", comment column {parsed.comment_column!r}" if parsed.comment_column else ", no comment column"
    )
    err.print(
        f"{escape(path.name)}: {parsed.layout} layout, {parsed.total} rows; {escape(columns)}",
        highlight=False,
    )
    try:
        if err.is_terminal:
            with Progress(
                TextColumn("importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            ) as bar:
                task = bar.add_task("rows", total=parsed.total)
                tally = run_rows(
                    db,
                    org_id,
                    parsed.rows,
                    survey_id=survey_id,
                    dry_run=dry_run,
                    progress=lambda _s, done, _t: bar.update(task, completed=done),
                )
        else:
            tally = run_rows(
                db,
                org_id,
                parsed.rows,
                survey_id=survey_id,
                dry_run=dry_run,
                progress=lambda _s, done, _t: err.print(f"{done} of {parsed.total} rows", highlight=False),
            )
    except NpsdError as exc:  # the survey was deleted meanwhile, say
        raise CommandFailed(exc.message) from exc
    except RuntimeError as exc:  # no signing key to recognise erased addresses by (PostgreSQL)
        raise CommandFailed(str(exc)) from exc
    outcome = Outcome(parsed.total, tally)
    report(outcome, out, dry_run)
    return outcome


def _targets(session: Session, org: str, survey: str | None) -> tuple[str, str | None]:
    try:
        organization = find_org(session, org) if org.strip() else None
        if organization is None and is_id(org.strip()):
            organization = session.get(Organization, org.strip())
        if organization is None:
            raise CommandFailed(f"no organization {org!r} (create it with `npsd org create`)")
        survey_id = check_survey(session, organization.id, survey) if survey is not None else None
    except NpsdError as exc:
        message = exc.message.replace("surveyId:", "--survey:")
        raise CommandFailed(message) from exc
    return organization.id, survey_id


def report(outcome: Outcome, out: Console, dry_run: bool) -> None:
    """The rows not taken (row, column, issue), then one summary line."""
    tally = outcome.tally
    if tally.errors:
        if out.is_terminal:
            table = Table("row", "column", "what is wrong", title=f"{len(tally.errors)} rows not taken")
            for e in tally.errors:
                table.add_row(str(e.row), escape(e.column), escape(e.issue))
            out.print(table)
        else:
            # Scripts read this: whole values, one row a line (Rich would expand the tabs).
            print("row\tcolumn\tissue", file=out.file)
            for e in tally.errors:
                cells = (str(e.row), e.column, e.issue)
                print("\t".join(v.replace("\t", " ").replace("\n", " ") for v in cells), file=out.file)
    verb = "would be " if dry_run else ""
    summary = (
        f"rows read {outcome.rows}, {verb}created {tally.created}, {verb}updated {tally.updated}, "
        f"unchanged {tally.unchanged}, errors {len(tally.errors)}"
    )
    if dry_run:
        summary += " (dry run: nothing was written)"
    out.print(summary, markup=False, highlight=False, soft_wrap=True)
