"""The README is part of the product: its settings table and its commands say what is true."""

from __future__ import annotations

import re
from pathlib import Path

from npsd.kit.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def documented_settings() -> dict[str, str]:
    """``NPSD_...`` name -> its description, from the rows of the README's settings table."""
    rows = re.findall(r"^\| `(NPSD_[A-Z0-9_]+)` \|[^|]*\| (.*) \|$", section("Settings"), re.M)
    return dict(rows)


def test_the_settings_table_names_every_setting_and_no_other() -> None:
    documented = {name for name, text in documented_settings().items() if not text.startswith("tests only")}
    prefix = Settings.model_config.get("env_prefix", "")
    actual = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    assert documented, "no settings table found in the README"
    assert actual - documented == set(), f"settings missing from the README: {sorted(actual - documented)}"
    assert documented - actual == set(), (
        f"README names settings npsd does not have: {sorted(documented - actual)}"
    )


def test_the_check_reads_the_table() -> None:
    """The table parser finds known rows (else the check above would compare two empty sets)."""
    rows = documented_settings()
    assert "NPSD_DATABASE_URL" in rows
    assert rows["NPSD_TEST_DATABASE_URL"].startswith("tests only")


def test_ci_runs_the_readme_test_command() -> None:
    """`.ci/run` calls the command the README gives a contributor, verbatim."""
    command = "bash scripts/test.sh"
    assert f"```sh\n{command}\n```" in README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert re.search(rf"^{re.escape(command)}\b", ci, re.M)
