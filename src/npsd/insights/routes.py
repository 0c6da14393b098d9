"""``/v1/insights``: what the comments say: themes, sentiment, their impact on the score.

Viewers read; admins change the themes. The analysis runs in the background on this server (no
text leaves it): see ``GET /v1/insights/status``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from npsd.analytics.metrics import Interval
from npsd.auth.deps import Admin, Viewer
from npsd.insights import service
from npsd.insights.schemas import (
    AnswerReading,
    InsightStatus,
    SentimentName,
    Suggestion,
    SuggestionAdopt,
    ThemeCreate,
    ThemeMerge,
    ThemeRead,
    ThemesReport,
    ThemeTrend,
    ThemeUpdate,
)
from npsd.kit.errors import BadRequest
from npsd.kit.http import DbSession, TransactionRoute
from npsd.kit.ids import is_id
from npsd.kit.listing import TOTAL_COUNT_HEADER, LimitParam, PageParam, check_since_until, id_list, with_total
from npsd.kit.lookup import resolve
from npsd.kit.models import InsightTheme
from npsd.kit.validation import UtcDatetime

router = APIRouter(route_class=TransactionRoute, prefix="/v1/insights", tags=["insights"])


def insight_filters(
    surveyId: Annotated[str | None, Query(description="Comma-separated survey ids")] = None,
    companyId: Annotated[str | None, Query(description="Comma-separated company ids")] = None,
    since: Annotated[
        UtcDatetime | None,
        Query(description="First day (UTC) of answers to count, ISO 8601 or epoch seconds"),
    ] = None,
    until: Annotated[
        UtcDatetime | None, Query(description="Last day (UTC) of answers to count, included")
    ] = None,
) -> service.Filters:
    """The filters of the metrics API: surveys, companies, whole UTC days."""
    first, last = (since.date() if since else None), (until.date() if until else None)
    check_since_until(first, last)
    return service.Filters(id_list(surveyId, "surveyId"), id_list(companyId, "companyId"), first, last)


Filters = Annotated[service.Filters, Depends(insight_filters)]
ThemeId = Annotated[str, Path(description="Theme id (24 hexadecimal characters)")]


def theme_to_read(id: ThemeId, principal: Viewer, session: DbSession) -> InsightTheme:
    """The theme named in the path, in the caller's organization, or 404 (400 when malformed)."""
    service.themes_version(session, principal.org_id)
    return resolve(session, InsightTheme, principal.org_id, id, "theme", prefixes=False)


def theme_to_write(id: ThemeId, principal: Admin, session: DbSession) -> InsightTheme:
    """The theme named in the path, for an admin to change, or 404 (400 when malformed)."""
    service.themes_version(session, principal.org_id)
    return resolve(session, InsightTheme, principal.org_id, id, "theme", prefixes=False)


ReadTheme = Annotated[InsightTheme, Depends(theme_to_read)]
WriteTheme = Annotated[InsightTheme, Depends(theme_to_write)]


def theme_out(theme: InsightTheme) -> dict[str, Any]:
    return {
        "id": theme.id,
        "key": theme.key,
        "name": theme.name,
        "keywords": theme.keywords,
        "examples": theme.examples,
        "status": theme.status,
        "hidden": theme.hidden,
        "mergedIntoId": theme.merged_into_id,
    }


@router.get("/themes", response_model=ThemesReport)
def get_themes(principal: Viewer, session: DbSession, filters: Filters) -> dict[str, Any]:
    """The themes of the answers that match the filters, most answers first.

    Every answer with a comment is read in the background: its themes (one or more, strongest
    first; a comment that fits none has none) and its sentiment. Per visible theme: `answers`
    (answers with the theme), `share` of the answers whose comment says something
    (`commentedAnswers`), the theme's `npsScore` with its 95% `marginOfError`, `sentiment` counts,
    and `impact`: how many NPS points the overall score of the filtered answers would move
    without the theme's answers (`+4.2`: the score would be 4.2 points higher, the theme pulls it
    down; negative: the theme holds it up), with its 95% `impactMarginOfError`; and a few
    `exampleAnswerIds`, the answers most typical of it (see `GET /nps/{id}`). Themes with no
    answer are listed with zeros. Answers not analysed yet are not counted (see `/status`)."""
    return service.themes_report(session, principal.org_id, filters)


@router.post("/themes", response_model=ThemeRead, status_code=201)
def create_theme(body: ThemeCreate, principal: Admin, session: DbSession) -> dict[str, Any]:
    """Add a theme of your own (admin): a `name` and 1-30 `examples`, phrases as customers would
    write them, in any of en/de/fr/es. Every answer is then read again in the background, so
    existing answers get the new theme too. At most 50 themes of your own; names are unique."""
    return theme_out(service.create_theme(session, principal.org_id, body.name, body.examples, body.keywords))


@router.get("/themes/{id}", response_model=ThemeRead)
def get_theme(theme: ReadTheme) -> dict[str, Any]:
    """One theme as configured, hidden, merged and suggested ones included."""
    return theme_out(theme)


@router.patch("/themes/{id}", response_model=ThemeRead)
def patch_theme(theme: WriteTheme, body: ThemeUpdate, principal: Admin, session: DbSession) -> dict[str, Any]:
    """Rename a theme, change its keywords or examples, hide it or show it again (admin). A
    change to what is matched (`examples`, `hidden`, the name of a theme of your own) reads every
    answer again in the background; a default theme keeps its shipped examples besides yours."""
    sent = body.model_dump(exclude_unset=True)
    if any(sent.get(f, "") is None for f in ("name", "examples", "keywords", "hidden")):
        field = next(f for f in ("name", "examples", "keywords", "hidden") if f in sent and sent[f] is None)
        raise BadRequest.field(field, "must not be null")
    return theme_out(service.update_theme(session, principal.org_id, theme, sent))


@router.post("/themes/{id}/merge", response_model=ThemeRead)
def merge_theme(theme: WriteTheme, body: ThemeMerge, principal: Admin, session: DbSession) -> dict[str, Any]:
    """Merge this theme into another (admin): its answers count as the other's at once, its
    examples match as the other's from now on, and it leaves the list (`mergedIntoId` is set).
    Replies with the theme merged into."""
    into = resolve(session, InsightTheme, principal.org_id, body.into, "theme", prefixes=False)
    return theme_out(service.merge_theme(session, principal.org_id, theme, into))


@router.delete("/themes/{id}", status_code=204)
def delete_theme(theme: WriteTheme, principal: Admin, session: DbSession) -> Response:
    """Delete a theme of your own or a suggestion (admin). A default theme is hidden instead
    (`PATCH` with `hidden: true`), so it can come back."""
    service.delete_theme(session, principal.org_id, theme)
    return Response(status_code=204)


@router.get("/themes/{id}/trend", response_model=ThemeTrend)
def get_theme_trend(
    theme: ReadTheme,
    principal: Viewer,
    session: DbSession,
    filters: Filters,
    interval: Annotated[Interval, Query(description="Trend period")] = "month",
) -> dict[str, Any]:
    """A theme over time, like the NPS trend: per day, week or month from the first analysed
    comment to the last, the theme's `answers`, their `share` of that period's
    `commentedAnswers`, and their `npsScore` with its 95% `marginOfError`."""
    return {
        "theme": theme_out(theme),
        "interval": interval,
        "trend": service.theme_trend(session, principal.org_id, theme, filters, interval),
    }


@router.get("/suggestions", response_model=list[Suggestion])
def get_suggestions(principal: Viewer, session: DbSession) -> list[dict[str, Any]]:
    """Suggested new themes: groups of comments that fit none of your themes, worked out after
    every analysis run, each labelled by its characteristic words, with how many comments
    without a theme are close to it and a few of them. Adopt one to make it a theme."""
    suggested = [t for t in service.all_themes(session, principal.org_id) if t.status == "suggested"]
    members = service.suggestion_members(session, principal.org_id, suggested, 5)
    out = []
    for theme in suggested:
        answers, ids = members[theme.id]
        out.append(
            {
                "id": theme.id,
                "name": theme.name,
                "keywords": theme.keywords,
                "answers": answers,
                "exampleAnswerIds": ids,
                "examples": theme.examples[:5],
            }
        )
    return out


@router.post("/suggestions/{id}/adopt", response_model=ThemeRead)
def adopt_suggestion(
    theme: WriteTheme, principal: Admin, session: DbSession, body: SuggestionAdopt | None = None
) -> dict[str, Any]:
    """Make a suggested theme one of your themes (admin), matched by the comments it was formed
    from; optionally under another `name`. Every answer is then read again in the background."""
    return theme_out(service.adopt_suggestion(session, principal.org_id, theme, body.name if body else None))


@router.get("/answers", response_model=list[AnswerReading], responses=TOTAL_COUNT_HEADER)
def get_answers(
    principal: Viewer,
    session: DbSession,
    response: Response,
    filters: Filters,
    themeId: Annotated[str | None, Query(description="Only answers with this theme")] = None,
    sentiment: Annotated[SentimentName | None, Query(description="Only answers of this sentiment")] = None,
    page: PageParam = 1,
    limit: LimitParam = 20,
) -> list[dict[str, Any]]:
    """Analysed answers whose comment says something, newest first, as a bare array (total in
    `X-Total-Count`): `answerId` (as in `GET /nps/{id}`), `themeIds` (strongest first),
    `sentiment` (negative, neutral, positive, read from the comment, with the score as a weak
    prior) and `sentimentScore` from -1 to 1."""
    if themeId is not None and not is_id(themeId):
        raise BadRequest.field("themeId", "must be a 24-character hexadecimal id")
    if themeId is not None:
        resolve(session, InsightTheme, principal.org_id, themeId, "theme", prefixes=False)
    return with_total(
        response,
        service.list_answers(
            session, principal.org_id, filters, themeId, sentiment, limit, (page - 1) * limit
        ),
    )


@router.get("/status", response_model=InsightStatus)
def get_status(principal: Viewer, session: DbSession) -> dict[str, Any]:
    """How far the analysis is: `answers`, `analysed` with the current themes, `pending`,
    `emptyComments` (no comment, or one that says nothing: "", "n/a", "-", "ok"), the jobs
    queued, and when an answer was last read. New and changed answers are read within seconds
    of being written (about 40 comments a second on two cores); writes never wait for it."""
    return service.status(session, principal.org_id)


@router.post("/refresh", response_model=InsightStatus, status_code=202)
def post_refresh(principal: Admin, session: DbSession) -> dict[str, Any]:
    """Read every answer again with the current themes, in the background (admin). Changes of
    themes do this by themselves; this also reads answers written before the analysis existed.
    Replies with the status (`state` `working`)."""
    return service.refresh(session, principal.org_id)
