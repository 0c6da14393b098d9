"""Collecting answers, respondent side: server-rendered ``/r/{token}``, ``/s/{publicId}``, ``/u/{token}``.

Plain HTML forms (Jinja2, autoescaped), no JavaScript: a fieldset whose legend is the question,
11 labelled radio buttons (arrow keys move, Space selects), a labelled comment box and a submit
button; mobile-first CSS with visible focus and WCAG AA contrast. Every page is localised (the
invitation's locale, else the survey's language; ``Accept-Language`` for unknown links).

A score link records the answer on GET, as the e-mail promises ("one click"); HEAD never does,
so link checkers that only probe do not answer for the recipient. Each page works in one
transaction of its own; on SQLite its writes queue on the same event-loop lock as API writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from npsd.collect import service
from npsd.collect.i18n import Words, follow_up, pick, question
from npsd.collect.mailer import TEMPLATES
from npsd.kit.config import Settings
from npsd.kit.db import Database
from npsd.kit.http import TransactionRoute
from npsd.kit.limits import SlidingWindow
from npsd.kit.models import Invitation, Survey
from npsd.kit.timeutil import utcnow
from npsd.kit.validation import check_email, email_key
from npsd.surveys.service import is_open

T = TypeVar("T")

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
}
# Public link answers: per address (identified) or per client IP (anonymous), per survey.
IDENTIFIED_LIMIT = (3, 600.0)  # answers, seconds
ANONYMOUS_LIMIT = (20, 600.0)


router = APIRouter(route_class=TransactionRoute, include_in_schema=False)


async def run_in_transaction(request: Request, write: bool, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(session, *args)`` in a transaction of its own, committed before the page is sent.

    Writes take their SQLite write turn like API writes (``db.serialized``).
    """
    db: Database = request.app.state.db
    async with db.serialized(write, scope=request.scope):
        return await run_in_threadpool(_in_transaction, db, write, fn, args)


def _in_transaction(db: Database, write: bool, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    with db.transaction(write=write) as session:
        return fn(session, *args)


# ------------------------------------------------------------------------------------------ helpers


@dataclass
class Page:
    template: str
    status: int
    context: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def render(page: Page) -> HTMLResponse:
    html = TEMPLATES.get_template(page.template + ".html").render(page.context)
    return HTMLResponse(html, status_code=page.status, headers={**PAGE_HEADERS, **page.headers})


def message(
    words: Words, status: int, title_key: str, text: str | None = None, headers: dict[str, str] | None = None
) -> Page:
    title = getattr(words, title_key)
    return Page("message", status, {"words": words, "title": title, "text": text}, headers or {})


def accepted_language(request: Request) -> str:
    header = request.headers.get("accept-language", "")[:500]
    return pick(*[part.split(";", 1)[0].strip() for part in header.split(",")][:10])


def parse_score(raw: Any) -> int | None:
    if not isinstance(raw, str) or not raw.strip().isdigit() or len(raw) > 3:
        return None
    score = int(raw)
    return score if 0 <= score <= 10 else None


def parse_comment(raw: Any) -> tuple[str | None, bool]:
    """The comment as typed (line breaks as ``\\n``; blank is none) and whether it can be stored."""
    if raw is None:
        return None, True
    if not isinstance(raw, str):
        return None, False
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text or len(text) > service.MAX_COMMENT:
        return text.replace("\x00", ""), False
    return (text if text.strip() else None), True


async def read_form(request: Request) -> FormData:
    try:
        return await request.form(max_files=0, max_fields=20)
    except Exception:  # malformed multipart or too many fields: treat as an empty form
        return FormData()


def form_page(
    words: Words,
    survey: Survey,
    action: str,
    *,
    score: int | None,
    comment: str | None,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    hidden: list[tuple[str, str]] | None = None,
) -> Page:
    return Page(
        "respond",
        status,
        {
            "words": words,
            "title": words.page_title,
            "action": action,
            "hidden": hidden or [],
            "question": question(survey.question, words.lang),
            "follow_up": follow_up(survey.follow_up_question, words.lang),
            "score": score,
            "comment": comment,
            "notice": notice,
            "error": error,
            "max_comment": service.MAX_COMMENT,
        },
    )


def thanks(words: Words, survey: Survey) -> Page:
    return message(words, 200, "thanks_title", survey.thank_you_message or words.thanks)


def _closed(words: Words, survey: Survey) -> Page | None:
    if not is_open(survey, utcnow())[0]:
        return message(words, 410, "closed_title", words.closed_text)
    return None


def _invitation_problem(words: Words, inv: Invitation, survey: Survey) -> Page | None:
    if inv.status == "cancelled":
        return message(words, 410, "withdrawn_title", words.withdrawn_text)
    closed = _closed(words, survey)
    if closed is not None:
        return closed
    if utcnow() >= inv.expires_at:
        return message(words, 410, "expired_title", words.expired_text)
    return None


def _not_found(lang: str) -> Page:
    words = Words(lang)
    return message(words, 404, "not_found_title", words.not_found_text)


# --------------------------------------------------------------------------------- /r/{token}


def _open_invitation(
    session: Session, token: str, write: bool, lang: str
) -> tuple[Any, Survey, Words] | Page:
    """The invitation of ``token``, its survey and the page's words; or the page that says why
    it cannot be answered (unknown, expired, withdrawn, survey closed)."""
    inv = service.invitation_for_token(session, token, for_update=write)
    survey = session.get(Survey, inv.survey_id) if inv is not None else None
    if inv is None or survey is None:
        return _not_found(lang)
    words = Words(pick(inv.locale, survey.language))
    problem = _invitation_problem(words, inv, survey)
    return problem if problem is not None else (inv, survey, words)


def _respond_get(session: Session, token: str, score_raw: str | None, write: bool, lang: str) -> Page:
    opened = _open_invitation(session, token, write, lang)
    if not isinstance(opened, tuple):
        return opened
    inv, survey, words = opened
    score, comment = service.current_answer(session, inv)
    if score_raw is None:
        return form_page(words, survey, token, score=score, comment=comment)
    chosen = parse_score(score_raw)
    if chosen is None:
        return form_page(
            words, survey, token, score=score, comment=comment, error=words.choose_score, status=400
        )
    if not write:  # HEAD: show, never record
        return form_page(words, survey, token, score=chosen, comment=comment)
    service.answer_invitation(session, inv, survey, chosen)
    return form_page(
        words, survey, token, score=chosen, comment=comment, notice=words("recorded", score=chosen)
    )


def _respond_post(session: Session, token: str, score_raw: Any, comment_raw: Any, lang: str) -> Page:
    opened = _open_invitation(session, token, True, lang)
    if not isinstance(opened, tuple):
        return opened
    inv, survey, words = opened
    score = parse_score(score_raw)
    comment, comment_ok = parse_comment(comment_raw)
    if score is None or not comment_ok:
        error = words.choose_score if score is None else words.comment_invalid
        return form_page(words, survey, token, score=score, comment=comment, error=error, status=400)
    service.answer_invitation(session, inv, survey, score, comment, with_comment=True)
    return thanks(words, survey)


@router.api_route("/r/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def respond_page(request: Request, token: str) -> Response:
    """The survey page of one invitation; ``?score=N`` (the e-mail's links) records N at once."""
    score_raw = request.query_params.get("score")
    write = score_raw is not None and request.method == "GET"
    page = await run_in_transaction(
        request, write, _respond_get, token, score_raw, write, accepted_language(request)
    )
    return render(page)


@router.post("/r/{token}", response_class=HTMLResponse)
async def respond_submit(request: Request, token: str) -> Response:
    """The form: score and comment; updates the invitation's one record, then says thank you."""
    form = await read_form(request)
    page = await run_in_transaction(
        request,
        True,
        _respond_post,
        token,
        form.get("score"),
        form.get("comment"),
        accepted_language(request),
    )
    return render(page)


# --------------------------------------------------------------------------------- /u/{token}


def _unsubscribe_get(session: Session, settings: Settings, token: str, lang: str) -> Page:
    inv = service.invitation_for_token(session, token)
    if inv is None:
        return _not_found(lang)
    survey = session.get(Survey, inv.survey_id)
    words = Words(pick(inv.locale, survey.language if survey else None))
    if service.is_unsubscribed(session, settings, inv.org_id, inv.email_key):
        return message(words, 200, "unsubscribed_title", words("unsubscribed_text", email=inv.email))
    return Page(
        "unsubscribe",
        200,
        {"words": words, "title": words.unsubscribe_title, "action": token, "email": inv.email},
    )


def _unsubscribe_post(session: Session, settings: Settings, token: str, one_click: bool, lang: str) -> Page:
    inv = service.invitation_for_token(session, token)
    if inv is None:
        return _not_found(lang)
    survey = session.get(Survey, inv.survey_id)
    words = Words(pick(inv.locale, survey.language if survey else None))
    service.unsubscribe(
        session, settings, inv.org_id, inv.email, "one-click" if one_click else "link", inv.id
    )
    return message(words, 200, "unsubscribed_title", words("unsubscribed_text", email=inv.email))


@router.api_route("/u/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def unsubscribe_page(request: Request, token: str) -> Response:
    """Asks for confirmation; unsubscribing needs the POST (mail scanners follow GET links)."""
    return render(
        await run_in_transaction(
            request, False, _unsubscribe_get, request.app.state.settings, token, accepted_language(request)
        )
    )


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_submit(request: Request, token: str) -> Response:
    """Unsubscribes the invitation's address: the page's button, or a mail client's RFC 8058 one-click POST
    (body ``List-Unsubscribe=One-Click``). Works after the survey link has expired."""
    form = await read_form(request)
    one_click = form.get("List-Unsubscribe") == "One-Click"
    return render(
        await run_in_transaction(
            request,
            True,
            _unsubscribe_post,
            request.app.state.settings,
            token,
            one_click,
            accepted_language(request),
        )
    )


# ---------------------------------------------------------------------------------- /s/{publicId}


identified_limiter = SlidingWindow(*IDENTIFIED_LIMIT)
anonymous_limiter = SlidingWindow(*ANONYMOUS_LIMIT)


def _public_email(raw: Any) -> tuple[str | None, bool]:
    if raw is None or raw == "":
        return None, True
    if not isinstance(raw, str) or len(raw) > 320 or "\x00" in raw:
        return None, False
    try:
        return check_email(raw.strip()), True
    except ValueError:
        return None, False


def _open_public(session: Session, public_id: str, lang: str) -> tuple[Survey, Words] | Page:
    """The survey of a public link and the page's words; or the page saying it is unknown or closed."""
    survey = service.survey_for_public_id(session, public_id)
    if survey is None:
        return _not_found(lang)
    words = Words(pick(survey.language))
    closed = _closed(words, survey)
    return closed if closed is not None else (survey, words)


def _public_get(session: Session, public_id: str, email_raw: str | None, lang: str) -> Page:
    opened = _open_public(session, public_id, lang)
    if not isinstance(opened, tuple):
        return opened
    survey, words = opened
    email, ok = _public_email(email_raw)
    if not ok:
        return message(words, 400, "bad_email_title")
    return form_page(
        words, survey, public_id, score=None, comment=None, hidden=[("email", email)] if email else []
    )


def _public_post(session: Session, public_id: str, form: dict[str, Any], client: str, lang: str) -> Page:
    opened = _open_public(session, public_id, lang)
    if not isinstance(opened, tuple):
        return opened
    survey, words = opened
    email, email_ok = _public_email(form.get("email"))
    if not email_ok:
        return message(words, 400, "bad_email_title")
    hidden = [("email", email)] if email else []
    score = parse_score(form.get("score"))
    comment, comment_ok = parse_comment(form.get("comment"))
    if score is None or not comment_ok:
        error = words.choose_score if score is None else words.comment_invalid
        return form_page(
            words, survey, public_id, score=score, comment=comment, error=error, status=400, hidden=hidden
        )
    if email is not None:
        wait = identified_limiter.hit(f"{survey.id}:{email_key(email)}")
    else:
        wait = anonymous_limiter.hit(f"{survey.id}:{client}")
    if wait is not None:
        return message(
            words,
            429,
            "too_many_title",
            words.too_many_text,
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )
    service.answer_public(session, survey, email, score, comment)
    return thanks(words, survey)


@router.api_route("/s/{public_id}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def public_page(request: Request, public_id: str) -> Response:
    """The survey's public page: anonymous, or identified with ``?email=``."""
    return render(
        await run_in_transaction(
            request,
            False,
            _public_get,
            public_id,
            request.query_params.get("email"),
            accepted_language(request),
        )
    )


@router.post("/s/{public_id}", response_class=HTMLResponse)
async def public_submit(request: Request, public_id: str) -> Response:
    """One answer through the public link; rate-limited per address, or per client IP when anonymous."""
    form = await read_form(request)
    client = request.client.host if request.client else "unknown"
    values = {key: form.get(key) for key in ("score", "comment", "email")}
    return render(
        await run_in_transaction(
            request, True, _public_post, public_id, values, client, accepted_language(request)
        )
    )
