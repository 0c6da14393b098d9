"""``/v1/answers/{id}``: an answer with its tags, notes and follow-up. Viewers read; editors and
admins write. The id is the record's ``_id`` (as in ``/nps/{id}``), or ``srcid-<sourceId>``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from npsd.auth.deps import Editor, Viewer
from npsd.followup import service
from npsd.followup.schemas import AnswerRead, FollowUpInput, NoteInput, NoteRead, TagsInput
from npsd.kit.http import DbSession, TransactionRoute

router = APIRouter(route_class=TransactionRoute, prefix="/v1/answers", tags=["answers"])
AnswerKey = Annotated[
    str, Path(description="The answer's 24-hex `_id` (as in `/nps/{id}`), or `srcid-<sourceId>`")
]


def answer_to_read(id: AnswerKey, principal: Viewer, session: DbSession) -> dict[str, Any]:
    """The answer named in the path, in the caller's organization, or 404 (400 when malformed)."""
    return service.find_answer(session, principal.org_id, id)


def answer_to_write(id: AnswerKey, principal: Editor, session: DbSession) -> dict[str, Any]:
    """The answer named in the path, locked for the change (editor role), or 404."""
    return service.find_answer(session, principal.org_id, id, for_update=True)


ReadAnswer = Annotated[dict[str, Any], Depends(answer_to_read)]
WriteAnswer = Annotated[dict[str, Any], Depends(answer_to_write)]


@router.get("/{id}", response_model=AnswerRead)
def get_answer(answer: ReadAnswer, principal: Viewer, session: DbSession) -> dict[str, Any]:
    """Get one answer as `GET /nps/{id}` shows it, with what your team did with it: `tags`
    (sorted), `tagDetails` (the same tags in the same order, each with `addedBy`, the address of
    the user who added it or null when none is known, and `addedAt`), `notes` (newest first,
    each with its author's address and time) and `followUp` (`status` open, contacted or
    resolved, null until someone sets one; `assigneeEmail`; `updatedAt`, `updatedBy`; and
    `history`, every change newest first)."""
    return service.answer_view(session, principal.org_id, answer)


@router.put("/{id}/tags", response_model=AnswerRead)
def put_tags(body: TagsInput, principal: Editor, answer: WriteAnswer, session: DbSession) -> dict[str, Any]:
    """Replace the answer's tags (editor or admin). Tags are trimmed; duplicates that differ only
    in case count once (the first spelling is kept); each is 1-50 characters without `;` or
    control characters, at most 20 per answer (400 naming `tags.<index>` otherwise). `[]` removes
    them all. Tags the answer keeps keep who added them and when. Replies with the whole answer."""
    service.set_tags(session, principal.org_id, answer["id"], body.tags, service.actor_of(session, principal))
    return service.answer_view(session, principal.org_id, answer)


@router.post("/{id}/notes", response_model=NoteRead, status_code=201)
def post_note(body: NoteInput, principal: Editor, answer: WriteAnswer, session: DbSession) -> dict[str, Any]:
    """Add a note to the answer (editor or admin): `text`, 1-5,000 characters once trimmed. The
    note keeps who wrote it: your user's address, or for an API token without a user the
    token's name. Notes cannot be edited; they go when the answer goes (deleted or erased)."""
    return service.add_note(
        session, principal.org_id, answer["id"], body.text, service.actor_of(session, principal)
    )


@router.put("/{id}/follow-up", response_model=AnswerRead)
def put_follow_up(
    body: FollowUpInput, principal: Editor, answer: WriteAnswer, session: DbSession
) -> dict[str, Any]:
    """Set the answer's follow-up (editor or admin): `status` (open, contacted or resolved) and
    `assigneeEmail`, the address of a user of your organization (422 naming `assigneeEmail`
    otherwise; null removes the assignee, left out keeps it). Each change is kept in the
    history with who made it and when; sending what is already set changes nothing. Replies
    with the whole answer."""
    assignee = body.assigneeEmail if "assigneeEmail" in body.model_fields_set else service.UNCHANGED
    service.set_follow_up(
        session, principal.org_id, answer["id"], body.status, assignee, service.actor_of(session, principal)
    )
    return service.answer_view(session, principal.org_id, answer)
