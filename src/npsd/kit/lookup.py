"""Find one object of the caller's organization by id or by ``extid-`` / ``srcid-`` prefix.

This is the only place a path key becomes a row; another organization's object is a 404,
exactly like an unknown one. :func:`parse_key` is the one rule for what a key names, shared with
the records area's own point read (which selects plain columns rather than an entity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from npsd.kit.errors import BadRequest, NotFound
from npsd.kit.ids import is_id

M = TypeVar("M")
# ``externalId`` / ``sourceId`` are at most 500 characters; the prefix adds six.
MAX_KEY_LENGTH = 506
# key prefix -> (the column it searches, how an error message spells the key)
PREFIXES: dict[str, tuple[str, str]] = {
    "extid-": ("external_id", "extid-<externalId>"),
    "srcid-": ("source_id", "srcid-<sourceId>"),
}


def parse_key(key: str, prefixes: Sequence[str] = ()) -> tuple[str, str]:
    """The column ``key`` names a row by and the value to look for: ``("id", key)`` for a 24-hex
    id, or the column of one of ``prefixes`` (keys of :data:`PREFIXES`) and the rest of the key.

    A key no row can have is a 400 naming ``id``: one with a NUL character or longer than any
    stored key is refused before any query, because PostgreSQL rejects NUL in text parameters,
    which would otherwise surface as a 500.
    """
    hint = "".join((" or " if i == 0 else " / ") + PREFIXES[p][1] for i, p in enumerate(prefixes))
    if "\x00" in key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest.field(
            "id",
            f"must be a 24-character hexadecimal id{hint}, without NUL characters and at most "
            f"{MAX_KEY_LENGTH} characters long",
        )
    for prefix in prefixes:
        if key.startswith(prefix):
            return PREFIXES[prefix][0], key[len(prefix) :]
    if is_id(key):
        return "id", key
    raise BadRequest.field("id", f"must be a 24-character hexadecimal id{hint}")


def resolve(session: Session, model: type[M], org_id: str, key: str, label: str, prefixes: bool = True) -> M:
    """The ``model`` row of ``org_id`` that ``key`` names, or 404 (400 for a key no row can have,
    see :func:`parse_key`); ``prefixes`` allows the prefixes whose column ``model`` has."""
    cls: Any = model
    allowed = [p for p, (column, _) in PREFIXES.items() if prefixes and hasattr(cls, column)]
    column, value = parse_key(key, allowed)
    row: M | None = session.scalar(select(cls).where(cls.org_id == org_id, getattr(cls, column) == value))
    if row is None:
        raise NotFound(f"no {label} {key}")
    return row
