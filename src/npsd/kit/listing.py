"""Query parameters, checked once for every route.

Planhat-style lists (``limit``, ``offset``, ``sort``, ``select``), SalesOS-style pages (``page``,
``limit``), and the types every route declares its parameters with: text without NUL
(:data:`ParamStr`), one sort direction (:data:`SortOrder`), one ``since``/``until`` rule
(:func:`check_since_until`). :func:`query_guard` refuses a query parameter an operation does not
declare, so a filter a client believes it applied is never silently ignored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, create_model
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from npsd.kit.errors import BadRequest
from npsd.kit.ids import is_id
from npsd.kit.validation import UtcDatetime

D = TypeVar("D", date, datetime)
T = TypeVar("T")

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


def page_count(total: int, size: int) -> int:
    """Pages of ``size`` that ``total`` items fill; at least one, so an empty list has a page 1."""
    return max(1, -(-total // size))


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


@dataclass(frozen=True)
class Paging:
    """One page of a SalesOS-style list: page ``page`` (from 1) of ``limit`` items."""

    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def salesos_paging(page: PageParam = 1, limit: LimitParam = 20) -> Paging:
    """The ``page`` and ``limit`` query parameters of a ``/v1`` list (declared once, here)."""
    return Paging(page, limit)


Paged = Annotated[Paging, Depends(salesos_paging)]


def newest_page(session: Session, model: Any, org_id: str, page: int, limit: int) -> tuple[list[Any], int]:
    """One page of an organization's rows of ``model`` (which has ``org_id``, ``created_at`` and
    ``id``), newest first, and their total number: the list of webhooks, alert rules, digests."""
    total = session.scalar(select(func.count()).select_from(model).where(model.org_id == org_id)) or 0
    rows = session.scalars(
        select(model)
        .where(model.org_id == org_id)
        .order_by(model.created_at.desc(), model.id.desc())
        .limit(limit)
        .offset((page - 1) * limit)
    )
    return list(rows), total


def with_total(response: Response, listed: tuple[list[T], int]) -> list[T]:
    """A list route's reply from a service's ``(rows, total)``: the rows as a bare array, the total
    over all pages in ``X-Total-Count`` (declare :data:`TOTAL_COUNT_HEADER` in the route's
    ``responses``)."""
    rows, total = listed
    response.headers["X-Total-Count"] = str(total)
    return rows


def selectable_list(model: type[BaseModel]) -> Any:
    """The ``response_model`` of a list that takes ``select``: a list of :func:`selectable` items.

    Built at run time, so it is typed ``Any`` (a type checker cannot read a computed type).
    """
    return list[selectable(model)]  # type: ignore[misc]  # a computed item type, for FastAPI only


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


# ------------------------------------------------------------------------------ parameter types


def _no_nul(value: str) -> str:
    # PostgreSQL refuses NUL in text, and no address, id or search text holds one: a 400 naming
    # the parameter rather than a driver error.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


ParamStr = Annotated[str, AfterValidator(_no_nul)]
"""A query or path string without NUL characters; anything else is a 400 naming the parameter."""


def blank_to_none(value: str | None) -> str | None:
    """A text filter as given, stripped; an empty one is no filter."""
    return (value.strip() or None) if value is not None else None


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


SortOrder = Annotated[Literal["asc", "desc"], BeforeValidator(_lower)]
"""``asc`` or ``desc``, in any case (SalesOS clients send both ``desc`` and ``DESC``)."""
SortOrderParam = Annotated[SortOrder | None, Query(description="asc or desc, in any case (default desc)")]


def is_descending(order: SortOrder | None) -> bool:
    """Whether ``sortOrder`` asks for descending order: ``desc``, or nothing, since every list
    that takes ``sortOrder`` (SalesOS style) is newest first by default."""
    return order != "asc"


def check_since_until(since: D | None, until: D | None) -> None:
    """400 naming ``since`` when it is after ``until``: such a window is empty, surely a mistake."""
    if since is not None and until is not None and since > until:
        raise BadRequest.field("since", "must not be after until")


@dataclass(frozen=True)
class Window:
    """Answered at or after ``since`` and at or before ``until`` (naive UTC; None: open)."""

    since: datetime | None
    until: datetime | None


def answered_window(
    since: Annotated[
        UtcDatetime | None, Query(description="Answered at or after (ISO 8601 or epoch seconds)")
    ] = None,
    until: Annotated[UtcDatetime | None, Query(description="Answered at or before")] = None,
) -> Window:
    """The ``since``/``until`` pair of the lists of answers (records, survey responses)."""
    check_since_until(since, until)
    return Window(since, until)


# ------------------------------------------------------------------------------- unknown parameters


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def declared_query_names(dependant: Dependant) -> frozenset[str]:
    """The query keys an operation declares, by the name clients send (the alias), dependencies
    included; a parameter declared as a model contributes its fields."""
    names: set[str] = set()
    for dep in _dependants(dependant):
        for param in dep.query_params:
            model = param.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                names.update(f.alias or n for n, f in model.model_fields.items())
            else:
                names.add(param.alias)
    return frozenset(names)


MAX_NAMED = 20  # unknown parameters named in one reply; a flood of them is refused all the same


def _shown(key: str) -> str:
    return key if len(key) <= 100 else key[:100] + "..."


def query_guard(route: APIRoute) -> Callable[[Request], None] | None:
    """A check that refuses the query parameters ``route`` does not declare (400 naming each),
    or None for a route that takes any.

    A client that sends a filter npsd does not know (a misspelling, a name another product
    uses) would otherwise get every object back as if it had
    filtered: a silent wrong answer. Every operation of the OpenAPI document is checked, since the document lists
    each parameter it takes. Operations left out of the document are not: those are the
    respondent pages (``/r``, ``/s``, ``/u``), which read their parameters by hand, and whose
    links people click from mails that mail clients and newsletters decorate with ``utm_source``
    and the like; a respondent must never meet an error page for that.
    """
    if not route.include_in_schema:
        return None
    known = declared_query_names(route.dependant)
    expected = ", ".join(sorted(known)) or "none"

    def check(request: Request) -> None:
        if not request.scope.get("query_string"):
            return
        unknown = [key for key in request.query_params if key not in known]
        if unknown:
            issue = f"is not a query parameter of this operation (it takes: {expected})"
            raise BadRequest(
                f"unknown query parameter(s): {', '.join(_shown(k) for k in unknown[:5])}; "
                f"this operation takes: {expected}",
                [{"field": _shown(key), "issue": issue} for key in unknown[:MAX_NAMED]],
            )

    return check
