"""The ``npsd`` command line. Command names and flags are a contract: docs and scripts rely on them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from npsd.config import get_settings
from npsd.db import Database
from npsd.errors import NpsdError

app = typer.Typer(help="npsd: self-hosted Net Promoter Score service.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
org_app = typer.Typer(help="Organizations (tenants).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
user_app = typer.Typer(help="Users who log in with a password.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")
err = Console(stderr=True)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _database() -> Database:
    from npsd.migrations import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    return Database(settings.database_url, pool_size=1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
) -> None:
    """Apply migrations, then serve the API on http://HOST:PORT."""
    import uvicorn

    from npsd.migrations import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    settings.signing_key  # noqa: B018 - create the key file once, before workers race for it
    err.print(f"npsd serving on http://{host}:{port} (database: {settings.database_url.split('@')[-1]})")
    uvicorn.run("npsd.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=settings.log_level, access_log=False)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from npsd.migrations import upgrade

    upgrade(get_settings().database_url)
    err.print("database is up to date")


@org_app.command("create")
def org_create(name: str) -> None:
    """Create organization NAME (idempotent) and print its id."""
    from npsd.auth import service

    db = _database()
    try:
        with db.transaction() as session:
            org = service.ensure_org(session, name)
            typer.echo(org.id)
    except NpsdError as exc:
        _fail(exc.message)


@token_app.command("create")
def token_create(
    org: Annotated[str, typer.Option("--org", help="Organization name (created if missing)")],
    role: Annotated[str, typer.Option("--role", help="admin, editor or viewer")],
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime, e.g. 90d, 12h")] = "90d",
    name: Annotated[str | None, typer.Option("--name", help="A label to recognise the token by")] = None,
) -> None:
    """Print a new API token (and nothing else) on stdout."""
    from npsd.auth import service, tokens

    try:
        lifetime = tokens.parse_ttl(ttl)
    except ValueError as exc:
        _fail(str(exc))
    db = _database()
    settings = get_settings()
    try:
        with db.transaction() as session:
            organization = service.ensure_org(session, org)
            issued = service.create_token(session, settings, organization, role, lifetime, name=name)
    except NpsdError as exc:
        _fail(exc.message)
    typer.echo(issued.token)


@token_app.command("list")
def token_list(org: Annotated[str, typer.Option("--org", help="Organization name")]) -> None:
    """List the tokens of an organization."""
    from npsd.auth import service
    from npsd.timeutil import iso

    db = _database()
    with db.transaction(write=False) as session:
        organization = service.find_org(session, org)
        if organization is None:
            _fail(f"no organization {org!r}")
        assert organization is not None
        table = Table("jti", "name", "role", "kind", "created", "expires", "last used", "revoked")
        for t in service.list_tokens(session, organization):
            table.add_row(t.jti, t.name or "", t.role, t.kind, iso(t.created_at), iso(t.expires_at),
                          iso(t.last_used_at) or "", iso(t.revoked_at) or "")
    Console().print(table)


@token_app.command("revoke")
def token_revoke(jti: str) -> None:
    """Revoke the token with this jti; it is refused from the next request on."""
    from npsd.auth import service

    db = _database()
    with db.transaction() as session:
        if not service.revoke_token(session, jti):
            _fail(f"no token {jti}")
    err.print(f"revoked {jti}")


@user_app.command("create")
def user_create(
    org: Annotated[str, typer.Option("--org", help="Organization name (created if missing)")],
    email: Annotated[str, typer.Option("--email")],
    role: Annotated[str, typer.Option("--role", help="admin, editor or viewer")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
) -> None:
    """Create a user who can log in at POST /v1/auth/login."""
    from npsd.auth import service

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    db = _database()
    try:
        with db.transaction() as session:
            organization = service.ensure_org(session, org)
            user = service.create_user(session, organization, email, role, password)
            typer.echo(user.id)
    except NpsdError as exc:
        _fail(exc.message)


if __name__ == "__main__":
    app()
