"""The ``npsd`` command line. Command names and flags are a contract: docs and scripts rely on them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session

from npsd.kit.config import Settings, get_settings
from npsd.kit.db import Database
from npsd.kit.errors import NpsdError

# Each command imports the rest of npsd it needs inside itself: `npsd --help` or a mistyped flag
# should not pay a second and a half for loading the app, Alembic and the auth stack. The CLI is
# the top of the stack (ARCHITECTURE.md), so these local imports cannot hide a cycle.

app = typer.Typer(
    help="npsd: self-hosted Net Promoter Score service.", no_args_is_help=True, pretty_exceptions_enable=False
)
org_app = typer.Typer(help="Organizations (tenants).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
user_app = typer.Typer(help="Users who log in with a password.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")
err = Console(stderr=True, soft_wrap=True)  # an error is one line, however long


def _print_version(value: bool) -> None:
    if value:
        from npsd import __version__

        print(f"npsd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """npsd: self-hosted Net Promoter Score service."""


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False)
    raise typer.Exit(1)


def _settings() -> Settings:
    """The settings from the environment; a bad one is one line naming it, and exit status 1.

    The directory of a SQLite database is created here when missing, for every command alike
    (the file itself is created by the migrations), so that no command trips over it first.
    """
    from pydantic import ValidationError

    try:
        settings = get_settings()
    except ValidationError as exc:
        prefix = Settings.model_config.get("env_prefix", "")
        problems = [
            f"{prefix}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        _fail("; ".join(problems))
    path = settings.sqlite_path()
    if path is not None and not path.parent.is_dir():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _fail(
                f"NPSD_DATABASE_URL: cannot create the directory {path.parent} of the SQLite file: "
                f"{exc.strerror or exc}"
            )
    return settings


def _database_problem(settings: Settings) -> str | None:
    """Why the configured PostgreSQL server cannot be reached (None when it answers, and for
    SQLite). Asked before anything else touches it, with a short connect timeout: an
    unreachable database is one line naming the setting, not a traceback from the migrations."""
    if settings.is_sqlite:
        return None
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from npsd.kit.db import normalize_url

    url = make_url(normalize_url(settings.database_url))
    where = f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            return None
    except Exception as exc:
        return f"cannot connect to the database at {where}: {_reason(exc, url.password)}"
    finally:
        engine.dispose()


def _reason(exc: BaseException, password: str | None = None) -> str:
    """The driver's own words for a database error, on one line, without the password."""
    text = str(getattr(exc, "orig", None) or exc)
    text = " ".join(line.strip() for line in text.splitlines() if line.strip() and "sqlalche.me" not in line)
    text = text.removeprefix("connection failed: ")
    if password:
        text = text.replace(password, "***")
    return text[:300]


def _announce(settings: Settings, message: str) -> None:
    """A line for the operator on stderr: a JSON log line under NPSD_LOG_FORMAT=json (so that
    every line of a server's output parses), whatever the log level."""
    if settings.log_format == "json":
        from npsd.kit.logs import json_line

        print(json_line("npsd.cli", message), file=sys.stderr, flush=True)
    else:
        err.print(message, highlight=False)


def _upgrade(settings: Settings) -> None:
    """Check that the database answers, then bring its schema up to date; either failure is one
    line naming NPSD_DATABASE_URL and exit status 1 (every command that uses the database comes
    through here or through :func:`_session`)."""
    from sqlalchemy.exc import OperationalError

    from npsd.migrations import upgrade

    problem = _database_problem(settings)
    if problem is not None:
        _fail(f"NPSD_DATABASE_URL: {problem}")
    try:
        upgrade(settings.database_url)
    except OperationalError as exc:
        _fail(f"NPSD_DATABASE_URL: the database failed while migrating: {_reason(exc)}")


@contextmanager
def _session(write: bool = True) -> Iterator[Session]:
    """One unit of work on the configured database, migrated first (commit on success).

    An :class:`NpsdError` becomes a one-line message on stderr and exit status 1.
    """
    settings = _settings()
    _upgrade(settings)
    db = Database(settings.database_url, pool_size=1, settings=settings)
    try:
        with db.transaction(write=write) as session:
            yield session
    except NpsdError as exc:
        _fail(exc.message)
    finally:
        db.dispose()


def _whole_number(option: str, low: int, high: int | None = None) -> Callable[[str | int], int]:
    """The parser of a numeric option: a value that is not a whole number in range is one line
    naming the option and its range, and exit status 1, like a bad setting (not Typer's box)."""
    wanted = (
        f"a whole number from {low} to {high}" if high is not None else f"a whole number of at least {low}"
    )

    def parse(value: str | int) -> int:
        try:
            number = int(str(value).strip(), 10)
        except ValueError:
            _fail(f"{option}: got {str(value)!r}, expected {wanted}")
        if number < low or (high is not None and number > high):
            _fail(f"{option}: got {number}, expected {wanted}")
        return number

    return parse


def _check_role(role: str) -> None:
    from npsd.auth import tokens

    if role not in tokens.ROLE_RANK:
        _fail(f"invalid role {role!r}: use one of {', '.join(tokens.ROLES)}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(parser=_whole_number("--port", 1, 65535), metavar="PORT", help="TCP port (1-65535)")
    ] = 8000,
    workers: Annotated[
        int, typer.Option(parser=_whole_number("--workers", 1), metavar="N", help="Worker processes")
    ] = 1,
) -> None:
    """Apply migrations, then serve the API on http://HOST:PORT.

    "npsd serving on http://HOST:PORT" is printed once the port is bound (and, with one process,
    the app has started). Without NPSD_BASE_URL, links in e-mails follow --host and --port
    (127.0.0.1 for the wildcard 0.0.0.0: set NPSD_BASE_URL to the public address).
    """
    import os
    import shutil
    import tempfile

    from npsd.kit import serving

    settings = _settings()
    try:
        settings.signing_key  # noqa: B018 - create the key file once, before workers race for it
    except RuntimeError as exc:
        _fail(str(exc))
    _upgrade(settings)
    shown_host = f"[{host}]" if ":" in host else host
    notes = [f"database: {settings.database_url.split('@')[-1]}"]
    if "base_url" not in settings.model_fields_set:
        # the app is built from the environment in each worker process: tell it there
        base_url = serving.local_url(host, port)
        os.environ["NPSD_BASE_URL"] = base_url
        settings = settings.model_copy(update={"base_url": base_url})
        if host in ("0.0.0.0", "::", ""):
            notes.append(f"links use {base_url}: set NPSD_BASE_URL to the public address")
    metrics_dir = None
    if workers > 1:
        # prometheus-client's multiprocess mode: a scrape of any worker sums them all (kit/telemetry.py)
        metrics_dir = tempfile.mkdtemp(prefix="npsd-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    message = f"npsd serving on http://{shown_host}:{port} ({'; '.join(notes)})"

    try:
        started = serving.run(
            serving.build_config(settings, host, port, workers), lambda: _announce(settings, message)
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    if not started:
        _fail(f"could not serve on {shown_host}:{port} (the reason is logged above)")


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    _upgrade(_settings())
    err.print("database is up to date")


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run the jobs that are due now, then exit")] = False,
) -> None:
    """Run background jobs (survey e-mails, reminders, webhook deliveries) in the foreground.

    `npsd serve` already runs a worker in-process (unless NPSD_WORKER=false); run this to scale
    workers out separately. Several workers never take the same job.
    """
    import signal
    import threading

    from npsd.app import create_app
    from npsd.kit.backup import DatabaseInUse, hold_database
    from npsd.kit.jobs import Worker, run_pending
    from npsd.kit.logs import configure as configure_logging

    settings = _settings()
    configure_logging(settings)
    try:
        db_lock = hold_database(settings)  # SQLite: `npsd restore` refuses while this worker runs
    except DatabaseInUse as exc:
        _fail(str(exc))
    _upgrade(settings)
    create_app(settings)  # imports every module that registers a job handler
    db = Database(settings.database_url, pool_size=2, settings=settings)
    try:
        if once:
            _announce(settings, f"ran {run_pending(db)} job(s)")
            return
        loop = Worker(db, settings.worker_poll_seconds)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        loop.start()
        _announce(settings, "npsd worker running; Ctrl+C to stop")
        stop.wait()
        loop.stop()
    finally:
        db.dispose()
        if db_lock is not None:
            db_lock.release()


# ------------------------------------------------------------- backup and restore (kit/backup.py)


def _pg_instead(what: str, command: str, had_password: bool) -> NoReturn:
    """On PostgreSQL, say which tool does ``what`` and how, and exit 1: nothing was done."""
    err.print(
        f"npsd {what} works on SQLite databases; NPSD_DATABASE_URL is PostgreSQL, so nothing was done. Run:",
        highlight=False,
    )
    typer.echo(command)
    if had_password:
        err.print(
            "(the password is not shown: the tool reads it from PGPASSWORD or ~/.pgpass)", highlight=False
        )
    raise typer.Exit(1)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            break
        size /= 1024
    return f"{size:.1f} {unit}"


@contextmanager
def _backup_errors(what: str, file: Path) -> Iterator[None]:
    """What a backup or a restore refuses (``BackupError``) or meets (``OSError``: a full disk, a
    directory not writable) as one line, exit 1: the operator reads the reason, not a traceback."""
    from npsd.kit import backup as backups

    try:
        yield
    except backups.BackupError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{what} failed: {exc.strerror or exc} ({exc.filename or file})")


@app.command()
def backup(
    file: Annotated[Path, typer.Argument(help="The backup file to write")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace FILE and FILE.secret-key if they exist")
    ] = False,
) -> None:
    """Copy the SQLite database into FILE while servers keep writing, and verify the copy.

    The copy is one consistent instant of the database (SQLite's online backup), checked with
    SQLite's integrity check and the comment search index's own check, written aside and renamed
    into place: FILE is whole or absent. Without NPSD_SECRET_KEY the signing key beside the
    database is copied to FILE.secret-key (mode 0600), so restored tokens and invitation links
    still verify. On PostgreSQL it prints the pg_dump command for the configured database and
    exits with status 1.
    """
    from npsd.kit import backup as backups

    settings = _settings()
    database = settings.sqlite_path()
    if database is None:
        command = backups.pg_dump_command(settings.database_url, file)
        _pg_instead("backup", command, backups.libpq_url(settings.database_url)[1])
    with _backup_errors("writing the backup", file):
        result = backups.backup_sqlite(database, file, force=force, copy_key=not settings.secret_key)
    typer.echo(
        f"wrote {result.path}: {_size(result.size)}, {result.answers:,} answers, "
        f"migration {result.revision}, in {result.seconds:.2f} s"
    )
    if result.key_file is not None:
        typer.echo(f"signing key copied to {result.key_file} (mode 0600); `npsd restore` puts it back")
    elif settings.secret_key:
        typer.echo("the signing key is NPSD_SECRET_KEY: keep it with your configuration, tokens need it")


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A backup made by `npsd backup`")],
    keep_old: Annotated[
        bool,
        typer.Option(
            "--keep-old/--discard-old",
            help="Keep the replaced database as DATABASE.before-restore-<UTC stamp> (default) or delete it",
        ),
    ] = True,
) -> None:
    """Replace the SQLite database by the backup FILE; refused while a server or worker uses it.

    FILE is copied beside the database, verified (integrity, comment search index, a migration
    this build knows), synced and renamed over the database. The old database is kept as
    DATABASE.before-restore-<stamp> unless --discard-old. FILE.secret-key, if present, becomes
    the signing key beside the database (unless NPSD_SECRET_KEY is set). On PostgreSQL it prints
    the pg_restore command and exits with status 1.
    """
    from alembic.script import ScriptDirectory

    from npsd.kit import backup as backups
    from npsd.migrations import alembic_config, head_revision

    settings = _settings()
    database = settings.sqlite_path()
    if database is None:
        command = backups.pg_restore_command(settings.database_url, file)
        _pg_instead("restore", command, backups.libpq_url(settings.database_url)[1])
    known = {
        rev.revision for rev in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()
    }
    with _backup_errors("the restore", file):
        result = backups.restore_sqlite(
            file, database, keep_old=keep_old, use_key_file=not settings.secret_key, known_revisions=known
        )
    typer.echo(
        f"restored {file} into {result.database}: {result.answers:,} answers, "
        f"migration {result.revision}, in {result.seconds:.2f} s"
    )
    if result.kept is not None:
        typer.echo(f"the replaced database is kept as {result.kept}")
    if result.key_installed:
        typer.echo("the signing key came with the backup and is in place")
    if settings.secret_key and Path(f"{file}{backups.KEY_SUFFIX}").is_file():
        typer.echo(f"{file}{backups.KEY_SUFFIX} is not used: NPSD_SECRET_KEY is set and signs tokens")
    if result.key_missing:
        err.print(
            f"warning: no {file}{backups.KEY_SUFFIX} beside the backup: the signing key beside the "
            "database stays (or a new one is made); tokens and invitation links signed with another key "
            "will not verify",
            highlight=False,
        )
    if result.revision != head_revision():
        typer.echo(f"`npsd serve` or `npsd migrate` brings it to migration {head_revision()}")


@app.command()
def demo(
    org: Annotated[str, typer.Option("--org", help="Name of the organization to create")] = "demo",
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", help="Seed of the random history (default 10); same seed, same day, same data"
        ),
    ] = None,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset", help="Delete the organization if an earlier `npsd demo` made it, then build it again"
        ),
    ] = False,
) -> None:
    """Fill the database with a realistic demo organization and print how to sign in.

    Four surveys, a dozen companies, about a hundred contacts, some 3,000 answers over the last 14
    months, invitations, and an admin, an editor and a viewer. An existing organization of that
    name is left alone (exit status 1) unless --reset is given.
    """
    import time

    from npsd import demo as demo_data

    started = time.perf_counter()
    settings = _settings()
    try:
        settings.signing_key  # noqa: B018 - invitation links are signed with it; fail before writing
    except RuntimeError as exc:
        _fail(str(exc))
    with _session() as session:
        result = demo_data.build(
            session, settings, org, seed=demo_data.DEFAULT_SEED if seed is None else seed, reset=reset
        )
    typer.echo(result.summary())
    typer.echo(f"\nSign in at {settings.base_url.rstrip('/')}/app (while `npsd serve` runs):")
    width = max(len(user.email) for user in result.users)
    for user in result.users:
        typer.echo(f"  {user.role:<6}  {user.email:<{width}}  {user.password}")
    err.print(f"built in {time.perf_counter() - started:.1f} s", highlight=False)


# ------------------------------------------------------------------------------- erasure (privacy/)


@app.command()
def erase(
    org: Annotated[str, typer.Option("--org", help="Organization name (or id)")],
    email: Annotated[str, typer.Option("--email", help="The person's address (any case)")],
) -> None:
    """Erase a person now: their answers in every survey, their contact and invitations, stored
    replies and webhook deliveries holding the address; figures are recounted. Prints what was
    removed (zeros when the organization held nothing of the address). The same as
    POST /v1/erasures, but done before the command returns; webhooks get `person.erased`."""
    from npsd.auth import service as auth_service
    from npsd.kit.ids import is_id
    from npsd.kit.models import Organization
    from npsd.kit.validation import check_email
    from npsd.privacy import service

    try:
        address = check_email(email.strip())
    except ValueError as exc:
        _fail(f"--email: {exc}")
    settings = _settings()
    try:
        settings.signing_key  # noqa: B018 - the erasure record keeps a hash keyed with it
    except RuntimeError as exc:
        _fail(str(exc))
    with _session() as session:
        found = auth_service.find_org(session, org) if org.strip() else None
        if found is None and is_id(org.strip()):
            found = session.get(Organization, org.strip())
        if found is None:
            _fail(f"no organization {org!r}")
        erasure, counts = service.erase_now(session, settings, found.id, address)
    typer.echo(f"erasure {erasure.id}: done")
    for label, value in (
        ("answers", counts.answers),
        ("contacts", counts.contacts),
        ("invitations", counts.invitations),
        ("idempotency replies", counts.idempotency_replies),
        ("webhook deliveries", counts.webhook_deliveries),
    ):
        typer.echo(f"  {label:<20} {value}")


# ------------------------------------------------------------------------------ imports (imports/)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="The export: CSV (or Delighted's JSON)", show_default=False)],
    org: Annotated[str, typer.Option("--org", help="Organization name (or id)")],
    survey: Annotated[
        str | None, typer.Option("--survey", help="Attach every answer to this survey (its id)")
    ] = None,
    layout: Annotated[
        str,
        typer.Option(
            "--from",
            help="Layout: auto, csv, delighted, qualtrics, surveymonkey, typeform or formbricks",
        ),
    ] = "auto",
    score_column: Annotated[
        str | None, typer.Option("--score-column", help="The column holding the 0-10 score (header text)")
    ] = None,
    comment_column: Annotated[
        str | None, typer.Option("--comment-column", help="The column holding the comment (header text)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and count every row, write nothing")
    ] = False,
) -> None:
    """Import answers from another tool's export (see docs/imports.md).

    Rows go through the same path as PUT /nps, 5,000 at a time; each answer's sourceId comes from
    the tool's response id, so importing a file again creates nothing new. Prints each row not
    taken (row, column, what is wrong) and a summary; exit status 0 only when every row was taken.
    """
    from npsd.imports.command import CommandFailed, run_import
    from npsd.imports.layouts import CHOICES

    if layout not in CHOICES:
        _fail(f"--from: must be one of {', '.join(CHOICES)}")
    settings = _settings()
    _upgrade(settings)
    db = Database(settings.database_url, pool_size=2, settings=settings)
    try:
        outcome = run_import(
            db,
            file,
            org,
            survey=survey,
            layout=layout,
            score_column=score_column,
            comment_column=comment_column,
            dry_run=dry_run,
            err=err,
            out=Console(soft_wrap=True),
        )
    except CommandFailed as exc:
        _fail(str(exc))
    finally:
        db.dispose()
    if not outcome.ok:
        raise typer.Exit(1)


@org_app.command("create")
def org_create(name: str) -> None:
    """Create organization NAME (idempotent) and print its id."""
    from npsd.auth import service

    with _session() as session:
        org_id = service.ensure_org(session, name).id
    typer.echo(org_id)


@token_app.command("create")
def token_create(
    org: Annotated[str, typer.Option("--org", help="Organization name (created if missing)")],
    role: Annotated[str, typer.Option("--role", help="admin, editor or viewer")],
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime, e.g. 90d, 12h, 2w")] = "90d",
    name: Annotated[str | None, typer.Option("--name", help="A label to recognise the token by")] = None,
) -> None:
    """Print a new API token (and nothing else) on stdout, e.g. `export NPSD_TOKEN=$(npsd token create ...)`."""
    from npsd.auth import service, tokens

    _check_role(role)
    try:
        lifetime = tokens.parse_ttl(ttl)
    except ValueError as exc:
        _fail(str(exc))
    if name is not None and len(name) > 200:
        _fail("--name must be at most 200 characters")
    settings = _settings()
    with _session() as session:
        organization = service.ensure_org(session, org)
        issued = service.create_token(session, settings, organization, role, lifetime, name=name)
    typer.echo(issued.token)


@token_app.command("list")
def token_list(org: Annotated[str, typer.Option("--org", help="Organization name")]) -> None:
    """List the tokens of an organization (tab-separated when stdout is not a terminal)."""
    from npsd.auth import service
    from npsd.kit.timeutil import iso

    header = ("jti", "name", "role", "kind", "created", "expires", "last used", "revoked")
    with _session(write=False) as session:
        organization = service.find_org(session, org)
        if organization is None:
            _fail(f"no organization {org!r}")
        rows = [
            (
                t.jti,
                t.name or "",
                t.role,
                t.kind,
                iso(t.created_at) or "",
                iso(t.expires_at) or "",
                iso(t.last_used_at) or "",
                iso(t.revoked_at) or "",
            )
            for t in service.list_tokens(session, organization)
        ]
    out = Console()
    if not out.is_terminal:
        # Scripts read this: whole values, one token a line, no wrapping or truncation.
        for row in (header, *rows):
            typer.echo("\t".join(value.replace("\t", " ") for value in row))
        return
    table = Table(*header)
    table.columns[0].no_wrap = True
    table.columns[0].min_width = 32
    for row in rows:
        table.add_row(*row)
    out.print(table)


@token_app.command("revoke")
def token_revoke(jti: str) -> None:
    """Revoke the token with this jti; running servers refuse it within 2 seconds (they cache tokens that briefly)."""
    from npsd.auth import service

    with _session() as session:
        if not service.revoke_token(session, jti.strip()):
            _fail(f"no token {jti}")
    err.print(f"revoked {escape(jti)}", highlight=False)


@user_app.command("create")
def user_create(
    org: Annotated[str, typer.Option("--org", help="Organization name (created if missing)")],
    email: Annotated[str, typer.Option("--email")],
    role: Annotated[str, typer.Option("--role", help="admin, editor or viewer")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin")
    ] = False,
) -> None:
    """Create a user who can log in at POST /v1/auth/login; prints the user id."""
    from npsd.auth import service

    _check_role(role)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _session() as session:
        organization = service.ensure_org(session, org)
        user_id = service.create_user(session, organization, email, role, password).id
    typer.echo(user_id)


if __name__ == "__main__":
    app()
