"""Planhat-style list parameters (``limit``, ``offset``, ``sort``, ``select``), checked once for every list."""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field, create_model

from npsd.kit.errors import BadRequest
from npsd.kit.ids import is_id

MAX_LIMIT = 10_000
# Far beyond any real list, and far inside what SQLite and PostgreSQL accept for OFFSET (64-bit).
MAX_OFFSET = 1_000_000_000


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int
    sort: str | None
    select: list[str] | None

    def check_fields(self, fields: Collection[str]) -> Page:
        """400 when ``sort`` or ``select`` names a field the objects do not have."""
        if self.sort is not None:
            name = self.sort[1:] if self.sort.startswith("-") else self.sort
            if name not in fields:
                raise BadRequest.field("sort", f"unknown field {name!r}; sort by one of the output fields")
        if self.select:
            unknown = [f for f in self.select if f not in fields]
            if unknown:
                raise BadRequest.field("select", f"unknown field(s): {', '.join(unknown)}")
        return self


def planhat_page(
    limit: Annotated[int, Query(description="At most this many objects (1-10000)")] = 100,
    offset: Annotated[int, Query(description="Skip this many objects")] = 0,
    sort: Annotated[
        str | None, Query(description="Output field to sort by; prefix with - for descending")
    ] = None,
    select: Annotated[
        str | None, Query(description="Comma-separated output fields to return (_id always)")
    ] = None,
) -> Page:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest.field("limit", f"must be from 1 to {MAX_LIMIT}")
    if not 0 <= offset <= MAX_OFFSET:
        raise BadRequest.field("offset", f"must be from 0 to {MAX_OFFSET}")
    fields = [f.strip() for f in select.split(",") if f.strip()] if select else None
    return Page(limit, offset, sort.strip() if sort else None, fields)


def id_list(value: str | None, name: str) -> list[str] | None:
    """A comma-separated list of ids; a malformed one is a 400 naming the parameter."""
    if value is None or not value.strip():
        return None
    ids = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in ids if not is_id(v)]
    if bad:
        raise BadRequest.field(name, f"{bad[0]!r} is not a 24-character hexadecimal id")
    return ids


# SalesOS-style lists (``/v1/...``): ``page`` and ``limit``, a bare array, the total in a header.
SALESOS_MAX_LIMIT = 100
SALESOS_MAX_PAGE = 1_000_000
PageParam = Annotated[int, Query(ge=1, le=SALESOS_MAX_PAGE, description="Page number, from 1")]
LimitParam = Annotated[int, Query(ge=1, le=SALESOS_MAX_LIMIT, description="Items per page (1-100)")]
TOTAL_COUNT_HEADER: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "X-Total-Count": {
                "description": "Items matching the filters, over all pages",
                "schema": {"type": "integer"},
            }
        }
    }
}


@functools.cache
def selectable(model: type[BaseModel]) -> type[BaseModel]:
    """The list item schema of ``model`` for a list that takes ``select``: the same fields, of which
    only ``_id`` is always present (with ``select``, an object holds ``_id`` and the fields named).

    Only the OpenAPI document reads it (list replies are serialized directly), so a client that
    validates replies against the schema accepts a selected list as well as a whole one.
    """
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name == "id":
            fields[name] = (info.annotation, info)
        else:
            # not required, and never null unless the whole model says so
            fields[name] = (info.annotation, Field(None, alias=info.alias, description=info.description))
    partial: type[BaseModel] = create_model(f"{model.__name__}Item", __config__=model.model_config, **fields)
    partial.__doc__ = (model.__doc__ or "").strip() + " With `select`, only `_id` and the selected fields."
    return partial
