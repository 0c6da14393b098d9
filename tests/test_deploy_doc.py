"""The deployment guide (docs/deploy.md) names only what exists: settings, commands, the
PostgreSQL commands npsd prints, and the sections it links to."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from npsd.cli import app as cli_app
from npsd.kit.backup import pg_dump_command, pg_restore_command
from npsd.kit.config import Settings

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "deploy.md"
README = ROOT / "README.md"


def settings_fields() -> set[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def code(text: str) -> list[str]:
    """The lines of fenced blocks and the inline code spans of a Markdown text."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M))
    return [line for block in blocks for line in block.splitlines()] + spans


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}


def test_every_setting_the_guide_names_is_a_setting() -> None:
    named = set(re.findall(r"\bNPSD_[A-Z0-9_]+\b", GUIDE.read_text()))
    assert {"NPSD_DATABASE_URL", "NPSD_SECRET_KEY", "NPSD_WORKER", "NPSD_DATABASE_READ_URL"} <= named
    assert named - settings_fields() == set(), f"not settings of npsd: {sorted(named - settings_fields())}"


def test_every_command_the_guide_runs_exists() -> None:
    group = typer.main.get_command(cli_app)
    commands = set(group.commands)  # type: ignore[attr-defined]
    used: set[str] = set()
    # npsd where a shell runs it: first on the line, by path, after env's assignments, && or $(
    invocation = re.compile(r"(?:^|/bin/|&&\s*|\$\(|\benv\s+(?:\S+=\S+\s+)+)npsd(?:ctl)?\s+([a-z][a-z-]*)")
    for line in code(GUIDE.read_text()):
        line = re.sub(r"(^|\s)#.*", "", line).strip()  # comments are prose
        used |= set(invocation.findall(line))
    assert {"serve", "worker", "backup", "restore", "migrate"} <= used
    assert used - commands == set(), f"not npsd commands: {sorted(used - commands)}"


def test_the_pg_commands_in_the_docs_are_the_ones_npsd_prints() -> None:
    """`npsd backup` / `npsd restore` on PostgreSQL print these (tests/test_backup.py runs them)."""
    dump = pg_dump_command("postgresql://u@h:5432/d", "FILE").split("FILE")[0]
    restore = pg_restore_command("postgresql://u@h:5432/d", "FILE").split("postgresql")[0]
    for doc in (GUIDE, README):
        lines = [line for line in code(doc.read_text()) if line.startswith(("pg_dump ", "pg_restore "))]
        assert any(line.startswith("pg_dump ") for line in lines), doc
        assert any(line.startswith("pg_restore ") for line in lines), doc
        for line in lines:
            assert line.startswith(dump if line.startswith("pg_dump ") else restore), (doc.name, line)


def test_links_lead_somewhere() -> None:
    text = GUIDE.read_text()
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", text):
        path = GUIDE if not target else (GUIDE.parent / target).resolve()
        assert path.exists(), target
        if anchor:
            assert anchor in anchors(path), f"{target}#{anchor}"


def test_the_readme_links_the_guide_from_operations_and_documents_backups() -> None:
    text = README.read_text()
    operations = text[text.index("\n## Operations\n") :]
    operations = operations[: operations.find("\n## ", 1)]
    assert "(docs/deploy.md)" in operations
    backups = text[text.index("\n## Backups\n") :]
    backups = backups[: backups.find("\n## ", 1)]
    for words in (
        "npsd backup",
        "npsd restore",
        "--force",
        "FILE.secret-key",
        "npsd.db.lock",
        "pg_dump",
        "pg_restore",
    ):
        assert words in backups, words
