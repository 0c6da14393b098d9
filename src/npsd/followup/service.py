"""What a team does with an answer: tags, notes, and a follow-up status with an assignee and
its history (``/v1/answers/{id}``, the dashboard's answer page and feed filters).

Every function takes the organization; an answer is found only through
:func:`npsd.records.service.find_record` (another organization's answer is a 404 like an unknown
one), and an assignee only among the organization's users. Writes lock the answer's row first
(PostgreSQL: ``FOR UPDATE``; SQLite writers are serialized already), so two concurrent changes
of one answer's tags or follow-up apply one after the other instead of colliding.

Who did something comes from the caller: a user's address (kept as it was then), else the API
token's name, else ``api``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.orm import Session

from npsd.auth.deps import Principal
from npsd.followup.schemas import tag_key
from npsd.kit.db import one_of
from npsd.kit.errors import Unprocessable
from npsd.kit.ids import new_id
from npsd.kit.models import (
    AnswerFollowUp,
    AnswerFollowUpChange,
    AnswerNote,
    AnswerTag,
    ApiToken,
    NpsRecord,
    User,
)
from npsd.kit.timeutil import iso, utcnow
from npsd.records.output import record_row, to_output
from npsd.records.service import find_record

T = NpsRecord.__table__
UNCHANGED: Any = object()  # an assignee left out of a change: it stays as it is
NO_STATUS = "none"  # the feed's filter value for answers whose follow-up nobody has set


@dataclass(frozen=True)
class Actor:
    """Who is making a change: the user (None for an API token without one) and the label kept."""

    user_id: str | None
    label: str


def actor_of(session: Session, principal: Principal) -> Actor:
    """The caller as the history remembers it: its user's address, else its token's name or "api"."""
    if principal.user_id is not None:
        email = session.scalar(
            select(User.email).where(User.id == principal.user_id, User.org_id == principal.org_id)
        )
        if email is not None:
            return Actor(principal.user_id, email)
    name = session.scalar(select(ApiToken.name).where(ApiToken.jti == principal.jti))
    return Actor(None, (name or "").strip()[:320] or "api")


def find_answer(session: Session, org_id: str, key: str, *, for_update: bool = False) -> dict[str, Any]:
    """The answer ``key`` names in the organization (a mapping of record columns), or 404 (400
    for a malformed key). ``for_update`` locks its row until the transaction ends."""
    record = find_record(session, org_id, key)
    if for_update:
        session.execute(select(T.c.id).where(T.c.id == record["id"], T.c.org_id == org_id).with_for_update())
    return record


# ------------------------------------------------------------------------------------------ reads


def _follow_up_out(row: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    if row is None:
        return {
            "status": None,
            "assigneeEmail": None,
            "updatedAt": None,
            "updatedBy": None,
            "history": history,
        }
    return {
        "status": row.status,
        "assigneeEmail": row.email,
        "updatedAt": iso(row.updated_at),
        "updatedBy": row.updated_by,
        "history": history,
    }


def answer_view(session: Session, org_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as ``GET /nps/{id}`` shows it, plus ``tags``, ``tagDetails`` (the same tags in
    the same order, each with who added it and when), ``notes`` and ``followUp``."""
    rid = record["id"]
    out = to_output(record_row(record))
    tags = sorted(
        session.execute(
            select(AnswerTag.tag, AnswerTag.created_at, User.email)
            .outerjoin(User, (User.id == AnswerTag.created_by_user_id) & (User.org_id == org_id))
            .where(AnswerTag.org_id == org_id, AnswerTag.record_id == rid)
        ),
        key=lambda row: tag_key(row.tag),
    )
    out["tags"] = [t.tag for t in tags]
    # who added each tag: the user's address; None for an API token without a user or a user
    # since deleted (``created_by_user_id`` is set to NULL with them)
    out["tagDetails"] = [{"tag": t.tag, "addedBy": t.email, "addedAt": iso(t.created_at)} for t in tags]
    out["notes"] = [
        {"id": n.id, "text": n.text, "authorEmail": n.author_email, "createdAt": iso(n.created_at)}
        for n in session.scalars(
            select(AnswerNote)
            .where(AnswerNote.org_id == org_id, AnswerNote.record_id == rid)
            .order_by(AnswerNote.created_at.desc(), AnswerNote.id.desc())
        )
    ]
    history = [
        {
            "status": c.status,
            "assigneeEmail": c.assignee_email,
            "changedBy": c.changed_by,
            "changedAt": iso(c.changed_at),
        }
        for c in session.scalars(
            select(AnswerFollowUpChange)
            .where(AnswerFollowUpChange.org_id == org_id, AnswerFollowUpChange.record_id == rid)
            .order_by(AnswerFollowUpChange.changed_at.desc(), AnswerFollowUpChange.id.desc())
        )
    ]
    current = session.execute(
        select(AnswerFollowUp.status, AnswerFollowUp.updated_at, AnswerFollowUp.updated_by, User.email)
        .outerjoin(User, User.id == AnswerFollowUp.assignee_user_id)
        .where(AnswerFollowUp.org_id == org_id, AnswerFollowUp.record_id == rid)
    ).first()
    out["followUp"] = _follow_up_out(current, history)
    return out


def badges(session: Session, org_id: str, record_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    """For the feed: each answer's tags, follow-up status and assignee, in two queries for a page.
    Answers with none of them are left out."""
    found: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"tags": [], "status": None, "assigneeEmail": None}
    )
    if not record_ids:
        return {}
    for rid, tag in session.execute(
        select(AnswerTag.record_id, AnswerTag.tag)
        .where(AnswerTag.org_id == org_id, one_of(session, AnswerTag.record_id, record_ids))
        .order_by(AnswerTag.record_id, AnswerTag.tag_key)
    ):
        found[rid]["tags"].append(tag)
    for rid, status, email in session.execute(
        select(AnswerFollowUp.record_id, AnswerFollowUp.status, User.email)
        .outerjoin(User, User.id == AnswerFollowUp.assignee_user_id)
        .where(AnswerFollowUp.org_id == org_id, one_of(session, AnswerFollowUp.record_id, record_ids))
    ):
        found[rid]["status"] = status
        found[rid]["assigneeEmail"] = email
    return dict(found)


def org_users(session: Session, org_id: str) -> list[tuple[str, str]]:
    """The organization's users (id, address) by address: who can be assigned an answer."""
    return [
        (uid, email)
        for uid, email in session.execute(
            select(User.id, User.email).where(User.org_id == org_id).order_by(User.email)
        )
    ]


# ----------------------------------------------------------------------------------------- writes


def set_tags(session: Session, org_id: str, record_id: str, tags: list[str], actor: Actor) -> None:
    """Replace the answer's tags with ``tags`` (already trimmed and distinct, see the schema).

    A tag the answer keeps keeps who added it and when (its spelling follows ``tags``)."""
    wanted = {tag_key(t): t for t in tags}
    current = {
        key: tag
        for key, tag in session.execute(
            select(AnswerTag.tag_key, AnswerTag.tag).where(
                AnswerTag.org_id == org_id, AnswerTag.record_id == record_id
            )
        )
    }
    gone = [key for key in current if key not in wanted]
    if gone:
        session.execute(
            delete(AnswerTag).where(
                AnswerTag.org_id == org_id, AnswerTag.record_id == record_id, AnswerTag.tag_key.in_(gone)
            )
        )
    for key, tag in wanted.items():
        if key in current and current[key] != tag:
            session.execute(
                update(AnswerTag)
                .where(AnswerTag.org_id == org_id, AnswerTag.record_id == record_id, AnswerTag.tag_key == key)
                .values(tag=tag)
            )
    new = [
        {
            "record_id": record_id,
            "tag_key": key,
            "org_id": org_id,
            "tag": tag,
            "created_by_user_id": actor.user_id,
            "created_by": actor.label,
            "created_at": utcnow(),
        }
        for key, tag in wanted.items()
        if key not in current
    ]
    if new:
        session.execute(insert(AnswerTag), new)


def add_note(session: Session, org_id: str, record_id: str, text: str, actor: Actor) -> dict[str, Any]:
    """Add a note to the answer; the note as the API shows it."""
    note = AnswerNote(
        id=new_id(),
        org_id=org_id,
        record_id=record_id,
        author_user_id=actor.user_id,
        author_email=actor.label,
        text=text,
        created_at=utcnow(),
    )
    session.add(note)
    session.flush()
    return {
        "id": note.id,
        "text": note.text,
        "authorEmail": note.author_email,
        "createdAt": iso(note.created_at),
    }


def assignee_id(session: Session, org_id: str, email: str) -> str:
    """The id of the organization's user with this address, or 422 naming ``assigneeEmail``."""
    uid = session.scalar(select(User.id).where(User.org_id == org_id, User.email == email.strip().lower()))
    if uid is None:
        raise Unprocessable.field("assigneeEmail", "must be the address of a user of your organization")
    return uid


def set_follow_up(
    session: Session, org_id: str, record_id: str, status: str, assignee_email: Any, actor: Actor
) -> bool:
    """Set the answer's status and, unless ``assignee_email`` is :data:`UNCHANGED`, its assignee
    (None: nobody). A change is added to the history; setting what is already set changes
    nothing and adds nothing. Whether anything changed."""
    row = session.get(AnswerFollowUp, record_id)
    if row is not None and row.org_id != org_id:  # unreachable through find_answer; never cross
        raise Unprocessable("this answer is not in your organization")
    if assignee_email is UNCHANGED:
        user_id = row.assignee_user_id if row is not None else None
    elif assignee_email is None:
        user_id = None
    else:
        user_id = assignee_id(session, org_id, assignee_email)
    if row is not None and row.status == status and row.assignee_user_id == user_id:
        return False
    now = utcnow()
    if row is None:
        row = AnswerFollowUp(record_id=record_id, org_id=org_id)
        session.add(row)
    row.status = status
    row.assignee_user_id = user_id
    row.updated_by = actor.label
    row.updated_at = now
    email = session.scalar(select(User.email).where(User.id == user_id)) if user_id else None
    session.add(
        AnswerFollowUpChange(
            id=new_id(),
            org_id=org_id,
            record_id=record_id,
            status=status,
            assignee_email=email,
            changed_by_user_id=actor.user_id,
            changed_by=actor.label,
            changed_at=now,
        )
    )
    session.flush()
    return True


# ---------------------------------------------------------------------------------------- filters


def answer_conditions(
    org_id: str, tag: str | None = None, status: str | None = None, assignee_email: str | None = None
) -> list[ColumnElement[bool]]:
    """Conditions on ``nps_record`` for the record list query (``ListQuery.conditions``): answers
    with the tag ``tag`` (any case), with follow-up ``status`` (or ``"none"``: no status set),
    assigned to the user with ``assignee_email``. Each is a semi-join on an indexed table."""
    conditions: list[ColumnElement[bool]] = []
    if tag:
        conditions.append(
            T.c.id.in_(
                select(AnswerTag.record_id).where(
                    AnswerTag.org_id == org_id, AnswerTag.tag_key == tag_key(tag.strip())
                )
            )
        )
    if status == NO_STATUS:
        conditions.append(
            T.c.id.not_in(select(AnswerFollowUp.record_id).where(AnswerFollowUp.org_id == org_id))
        )
    elif status:
        conditions.append(
            T.c.id.in_(
                select(AnswerFollowUp.record_id).where(
                    AnswerFollowUp.org_id == org_id, AnswerFollowUp.status == status
                )
            )
        )
    if assignee_email:
        conditions.append(
            T.c.id.in_(
                select(AnswerFollowUp.record_id)
                .join(User, User.id == AnswerFollowUp.assignee_user_id)
                .where(
                    AnswerFollowUp.org_id == org_id,
                    User.org_id == org_id,
                    User.email == assignee_email.strip().lower(),
                )
            )
        )
    return conditions


def org_tags(session: Session, org_id: str) -> list[str]:
    """Every tag in use in the organization, each once (whatever its case), sorted ignoring case."""
    rows = session.execute(
        select(AnswerTag.tag_key, func.min(AnswerTag.tag))
        .where(AnswerTag.org_id == org_id)
        .group_by(AnswerTag.tag_key)
    )
    return sorted((tag for _, tag in rows), key=tag_key)
