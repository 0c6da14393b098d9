"""Find one object of the caller's organization by id or by ``extid-`` / ``srcid-`` prefix.

This is the only place a path key becomes a row; another organization's object is a 404,
exactly like an unknown one.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from npsd.kit.errors import BadRequest, NotFound
from npsd.kit.ids import is_id

M = TypeVar("M")
# ``externalId`` / ``sourceId`` are at most 500 characters; the prefix adds six.
MAX_KEY_LENGTH = 506


def resolve(session: Session, model: type[M], org_id: str, key: str, label: str, prefixes: bool = True) -> M:
    """The ``model`` row of ``org_id`` that ``key`` names, or 404 (400 for a key no row can have).

    A key with a NUL character or longer than any stored key is refused before the query:
    PostgreSQL rejects NUL in text parameters, which would otherwise surface as a 500.
    """
    cls: Any = model
    if "\x00" in key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest.field(
            "id",
            "must be a 24-character hexadecimal id or a prefixed key without NUL "
            f"characters, at most {MAX_KEY_LENGTH} characters long",
        )
    if prefixes and key.startswith("extid-") and hasattr(cls, "external_id"):
        cond = cls.external_id == key[len("extid-") :]
    elif prefixes and key.startswith("srcid-") and hasattr(cls, "source_id"):
        cond = cls.source_id == key[len("srcid-") :]
    elif is_id(key):
        cond = cls.id == key
    else:
        hint = " or extid-<externalId> / srcid-<sourceId>" if prefixes else ""
        raise BadRequest.field("id", f"must be a 24-character hexadecimal id{hint}")
    row = session.scalar(select(cls).where(cls.org_id == org_id, cond))
    if row is None:
        raise NotFound(f"no {label} {key}")
    return row
