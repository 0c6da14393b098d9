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
from npsd.collect.brand import Brand, brand_of
from npsd.collect.i18n import LANGUAGES, Texts, Words, base_language, pick, survey_texts
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
    brand: Brand | None = None  # the organization's name, logo, colour and privacy link


def render(page: Page) -> HTMLResponse:
    html = TEMPLATES.get_template(page.template + ".html").render({**page.context, "brand": page.brand})
    headers = {**PAGE_HEADERS, **page.headers}
    origin = page.brand.logo_origin if page.brand else None
    if origin:  # the organization's own logo is the one image from elsewhere (no referrer is sent)
        headers["Content-Security-Policy"] += f"; img-src {origin}"
    return HTMLResponse(html, status_code=page.status, headers=headers)


def message(
    words: Words,
    status: int,
    title_key: str,
    text: str | None = None,
    headers: dict[str, str] | None = None,
    brand: Brand | None = None,
) -> Page:
    title = getattr(words, title_key)
    return Page("message", status, {"words": words, "title": title, "text": text}, headers or {}, brand)


def query_language(raw: str | None) -> str | None:
    """A page's ``?lang=``: one of the languages npsd speaks, else ignored (a link may carry
    anything; the page then speaks as it would without it)."""
    lang = base_language(raw[:16]) if raw else None
    return lang if lang in LANGUAGES else None


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
    texts: Texts,
    brand: Brand,
    action: str,
    *,
    score: int | None,
    comment: str | None,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    hidden: list[tuple[str, str]] | None = None,
) -> Page:
    words = texts.words
    return Page(
        "respond",
        status,
        {
            "words": words,
            "title": words.page_title,
            "action": action,
            "hidden": hidden or [],
            "question": texts.question,
            "follow_up": texts.follow_up,
            "score": score,
            "comment": comment,
            "notice": notice,
            "error": error,
            "max_comment": service.MAX_COMMENT,
        },
        brand=brand,
    )


def thanks(texts: Texts, brand: Brand) -> Page:
    return message(texts.words, 200, "thanks_title", texts.thanks, brand=brand)


def _closed(words: Words, survey: Survey, brand: Brand) -> Page | None:
    if not is_open(survey, utcnow())[0]:
        return message(words, 410, "closed_title", words.closed_text, brand=brand)
    return None


def _invitation_problem(words: Words, inv: Invitation, survey: Survey, brand: Brand) -> Page | None:
    if inv.status == "cancelled":
        return message(words, 410, "withdrawn_title", words.withdrawn_text, brand=brand)
    closed = _closed(words, survey, brand)
    if closed is not None:
        return closed
    if utcnow() >= inv.expires_at:
        return message(words, 410, "expired_title", words.expired_text, brand=brand)
    return None


def _not_found(lang: str) -> Page:
    words = Words(lang)
    return message(words, 404, "not_found_title", words.not_found_text)


# --------------------------------------------------------------------------------- /r/{token}


@dataclass(frozen=True)
class Asked:
    """What a page needs to speak: the language it was asked in (``?lang``) and, for unknown
    links, the browser's ``Accept-Language`` choice."""

    lang: str | None
    fallback: str

    @classmethod
    def of(cls, request: Request) -> Asked:
        return cls(query_language(request.query_params.get("lang")), accepted_language(request))

    def action(self, base: str) -> str:
        """The form's target: the page itself, keeping ``?lang``."""
        return f"{base}?lang={self.lang}" if self.lang else base


def _open_invitation(
    session: Session, token: str, write: bool, asked: Asked
) -> tuple[Any, Survey, Texts, Brand] | Page:
    """The invitation of ``token``, its survey, the page's texts (in the mail's language unless
    ``?lang`` asks for another) and the organization's brand; or the page that says why it cannot
    be answered (unknown, expired, withdrawn, survey closed)."""
    inv = service.invitation_for_token(session, token, for_update=write)
    survey = session.get(Survey, inv.survey_id) if inv is not None else None
    if inv is None or survey is None:
        return _not_found(asked.fallback)
    brand = brand_of(session, inv.org_id)
    texts = survey_texts(survey, brand.name, asked.lang, inv.locale)
    problem = _invitation_problem(texts.words, inv, survey, brand)
    return problem if problem is not None else (inv, survey, texts, brand)


def _respond_get(session: Session, token: str, score_raw: str | None, write: bool, asked: Asked) -> Page:
    opened = _open_invitation(session, token, write, asked)
    if not isinstance(opened, tuple):
        return opened
    inv, survey, texts, brand = opened
    words = texts.words
    action = asked.action(token)
    score, comment = service.current_answer(session, inv)
    if score_raw is None:
        return form_page(texts, brand, action, score=score, comment=comment)
    chosen = parse_score(score_raw)
    if chosen is None:
        return form_page(
            texts, brand, action, score=score, comment=comment, error=words.choose_score, status=400
        )
    if not write:  # HEAD: show, never record
        return form_page(texts, brand, action, score=chosen, comment=comment)
    service.answer_invitation(session, inv, survey, chosen)
    return form_page(
        texts, brand, action, score=chosen, comment=comment, notice=words("recorded", score=chosen)
    )


def _respond_post(session: Session, token: str, score_raw: Any, comment_raw: Any, asked: Asked) -> Page:
    opened = _open_invitation(session, token, True, asked)
    if not isinstance(opened, tuple):
        return opened
    inv, survey, texts, brand = opened
    words = texts.words
    score = parse_score(score_raw)
    comment, comment_ok = parse_comment(comment_raw)
    if score is None or not comment_ok:
        error = words.choose_score if score is None else words.comment_invalid
        return form_page(
            texts, brand, asked.action(token), score=score, comment=comment, error=error, status=400
        )
    service.answer_invitation(session, inv, survey, score, comment, with_comment=True)
    return thanks(texts, brand)


@router.api_route("/r/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def respond_page(request: Request, token: str) -> Response:
    """The survey page of one invitation; ``?score=N`` (the e-mail's links) records N at once."""
    score_raw = request.query_params.get("score")
    write = score_raw is not None and request.method == "GET"
    page = await run_in_transaction(request, write, _respond_get, token, score_raw, write, Asked.of(request))
    return render(page)


@router.post("/r/{token}", response_class=HTMLResponse)
async def respond_submit(request: Request, token: str) -> Response:
    """The form: score and comment; updates the invitation's one record, then says thank you."""
    form = await read_form(request)
    page = await run_in_transaction(
        request, True, _respond_post, token, form.get("score"), form.get("comment"), Asked.of(request)
    )
    return render(page)


# --------------------------------------------------------------------------------- /u/{token}


def _unsubscribe_get(session: Session, settings: Settings, token: str, lang: str) -> Page:
    inv = service.invitation_for_token(session, token)
    if inv is None:
        return _not_found(lang)
    words, brand = _unsubscribe_words(session, inv)
    if service.is_unsubscribed(session, settings, inv.org_id, inv.email_key):
        return message(
            words, 200, "unsubscribed_title", words("unsubscribed_text", email=inv.email), brand=brand
        )
    return Page(
        "unsubscribe",
        200,
        {"words": words, "title": words.unsubscribe_title, "action": token, "email": inv.email},
        brand=brand,
    )


def _unsubscribe_words(session: Session, inv: Invitation) -> tuple[Words, Brand]:
    """The words of the invitation's mail (its language) and the organization's brand."""
    survey = session.get(Survey, inv.survey_id)
    brand = brand_of(session, inv.org_id)
    if survey is None:
        return Words(pick(inv.locale)), brand
    return survey_texts(survey, brand.name, inv.locale).words, brand


def _unsubscribe_post(session: Session, settings: Settings, token: str, one_click: bool, lang: str) -> Page:
    inv = service.invitation_for_token(session, token)
    if inv is None:
        return _not_found(lang)
    words, brand = _unsubscribe_words(session, inv)
    service.unsubscribe(
        session, settings, inv.org_id, inv.email, "one-click" if one_click else "link", inv.id
    )
    return message(words, 200, "unsubscribed_title", words("unsubscribed_text", email=inv.email), brand=brand)


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


def _open_public(
    session: Session, public_id: str, asked: Asked, browser: list[str]
) -> tuple[Survey, Texts, Brand] | Page:
    """The survey of a public link, the page's texts and the organization's brand; or the page
    saying it is unknown or closed.

    The language is ``?lang``, else the first of the browser's languages the survey has a
    translation for, else the survey's own: a survey without translations speaks its language
    to everyone, as its author wrote it.
    """
    survey = service.survey_for_public_id(session, public_id)
    if survey is None:
        return _not_found(asked.fallback)
    brand = brand_of(session, survey.org_id)
    offered = [lang for lang in browser if lang in (survey.translations or {})]
    texts = survey_texts(survey, brand.name, asked.lang, *offered[:1])
    closed = _closed(texts.words, survey, brand)
    return closed if closed is not None else (survey, texts, brand)


def browser_languages(request: Request) -> list[str]:
    """The base languages of ``Accept-Language`` npsd speaks, in the header's order (at most 10)."""
    header = request.headers.get("accept-language", "")[:500]
    tags = [base_language(part.split(";", 1)[0].strip()) for part in header.split(",")][:10]
    return [tag for tag in tags if tag in LANGUAGES]


def _public_get(
    session: Session, public_id: str, email_raw: str | None, asked: Asked, browser: list[str]
) -> Page:
    opened = _open_public(session, public_id, asked, browser)
    if not isinstance(opened, tuple):
        return opened
    _, texts, brand = opened
    email, ok = _public_email(email_raw)
    if not ok:
        return message(texts.words, 400, "bad_email_title", brand=brand)
    return form_page(
        texts,
        brand,
        asked.action(public_id),
        score=None,
        comment=None,
        hidden=[("email", email)] if email else [],
    )


def _public_post(
    session: Session, public_id: str, form: dict[str, Any], client: str, asked: Asked, browser: list[str]
) -> Page:
    opened = _open_public(session, public_id, asked, browser)
    if not isinstance(opened, tuple):
        return opened
    survey, texts, brand = opened
    words = texts.words
    email, email_ok = _public_email(form.get("email"))
    if not email_ok:
        return message(words, 400, "bad_email_title", brand=brand)
    hidden = [("email", email)] if email else []
    score = parse_score(form.get("score"))
    comment, comment_ok = parse_comment(form.get("comment"))
    if score is None or not comment_ok:
        error = words.choose_score if score is None else words.comment_invalid
        return form_page(
            texts,
            brand,
            asked.action(public_id),
            score=score,
            comment=comment,
            error=error,
            status=400,
            hidden=hidden,
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
            brand=brand,
        )
    service.answer_public(session, survey, email, score, comment)
    return thanks(texts, brand)


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
            Asked.of(request),
            browser_languages(request),
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
            request,
            True,
            _public_post,
            public_id,
            values,
            client,
            Asked.of(request),
            browser_languages(request),
        )
    )
