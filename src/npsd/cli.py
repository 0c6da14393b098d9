"""The ``npsd`` command line. Command names and flags are a contract: docs and scripts rely on them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
    """The settings from the environment; a bad one is one line naming it, and exit status 1."""
    from pydantic import ValidationError

    try:
        return get_settings()
    except ValidationError as exc:
        prefix = Settings.model_config.get("env_prefix", "")
        problems = [
            f"{prefix}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        _fail("; ".join(problems))


@contextmanager
def _session(write: bool = True) -> Iterator[Session]:
    """One unit of work on the configured database, migrated first (commit on success).

    An :class:`NpsdError` becomes a one-line message on stderr and exit status 1.
    """
    from npsd.migrations import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    db = Database(settings.database_url, pool_size=1)
    try:
        with db.transaction(write=write) as session:
            yield session
    except NpsdError as exc:
        _fail(exc.message)
    finally:
        db.dispose()


def _check_role(role: str) -> None:
    from npsd.auth import tokens

    if role not in tokens.ROLE_RANK:
        _fail(f"invalid role {role!r}: use one of {', '.join(tokens.ROLES)}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
) -> None:
    """Apply migrations, then serve the API on http://HOST:PORT."""
    import uvicorn

    from npsd.migrations import upgrade

    settings = _settings()
    try:
        settings.signing_key  # noqa: B018 - create the key file once, before workers race for it
    except RuntimeError as exc:
        _fail(str(exc))
    upgrade(settings.database_url)
    err.print(f"npsd serving on http://{host}:{port} (database: {settings.database_url.split('@')[-1]})")
    uvicorn.run(
        "npsd.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,
    )


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from npsd.migrations import upgrade

    upgrade(_settings().database_url)
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
    from npsd.kit.jobs import Worker, run_pending
    from npsd.migrations import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    create_app(settings)  # imports every module that registers a job handler
    db = Database(settings.database_url, pool_size=2, settings=settings)
    try:
        if once:
            err.print(f"ran {run_pending(db)} job(s)")
            return
        loop = Worker(db, settings.worker_poll_seconds)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        loop.start()
        err.print("npsd worker running; Ctrl+C to stop")
        stop.wait()
        loop.stop()
    finally:
        db.dispose()


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
