"""``/v1/alert-rules``: tell people when an answer needs them (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from npsd.alerts import delivery as _jobs  # noqa: F401  (registers the alert jobs with the worker)
from npsd.alerts import service
from npsd.alerts.schemas import (
    AlertDeliveryRead,
    AlertRuleCreate,
    AlertRuleRead,
    AlertRuleUpdate,
    Channel,
    DeliveryStatus,
)
from npsd.auth.deps import Admin
from npsd.kit.http import AppSettings, DbSession, TransactionRoute
from npsd.kit.listing import TOTAL_COUNT_HEADER, LimitParam, PageParam, with_total
from npsd.kit.lookup import resolve
from npsd.kit.models import AlertRule

router = APIRouter(route_class=TransactionRoute, prefix="/v1/alert-rules", tags=["alerts"])


def rule_by_id(
    id: Annotated[str, Path(description="Alert rule id (24 hexadecimal characters)")],
    principal: Admin,
    session: DbSession,
) -> AlertRule:
    """The rule named in the path, in the caller's organization, or 404 (400 when malformed)."""
    return resolve(session, AlertRule, principal.org_id, id, "alert rule", prefixes=False)


RuleById = Annotated[AlertRule, Depends(rule_by_id)]


@router.post("", response_model=AlertRuleRead, status_code=201)
def create_rule(
    body: AlertRuleCreate, principal: Admin, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    """Create an alert rule (admin only).

    From now on, every answer written by any path (`POST /nps`, `PUT /nps`, the respondent pages,
    survey responses, imports) that meets all the rule's conditions (`surveyId`, `companyId`,
    `scoreAtMost`, `commentContains`, `sentiments`, `themeIds`; none set: every answer) is
    announced within about a minute, once per answer, even if the answer is later updated (a new
    answer's alert waits the server's `NPSD_ALERT_DELAY_SECONDS`, 30 s by default, so that a
    comment typed after the score is in it): one e-mail to all of `emails` and/or a
    message `{"text": ...}` POSTed to `chatWebhookUrl` (a Slack incoming webhook, or anything that
    takes the same format), with the score, comment, its themes and sentiment (once analysed),
    contact, company, survey and a link to the answer on the dashboard. At least one of `emails`
    and `chatWebhookUrl` is required (400 naming `emails`). A `surveyId` or `companyId` of no
    survey or company of yours is a 404 naming it; a rule limited to one is deleted with it.

    `sentiments` (`negative`, `neutral`, `positive`) and `themeIds` (ids from
    `GET /v1/insights/themes`; a theme of no organization of yours is a 404 naming `themeIds`, a
    suggested theme must be adopted first) are judged on what the comment analysis read in the
    comment: the alert waits for the analysis (seconds; it gives up after 10 minutes, e.g. when
    the server runs with `NPSD_INSIGHTS` off), never guesses, and an answer without a comment
    never meets them. A rule on a theme that is later merged follows it into the theme it joined.

    The chat URL must be http(s) and resolve to public addresses only (400 naming
    `chatWebhookUrl`), unless the server sets `NPSD_WEBHOOK_ALLOW_PRIVATE`. Failed sends are
    retried for about 24 hours; see `GET /v1/alert-rules/{id}/deliveries`.
    """
    return service.create_rule(session, principal.org_id, body, settings.webhook_allow_private)


@router.get("", response_model=list[AlertRuleRead], responses=TOTAL_COUNT_HEADER)
def list_rules(
    principal: Admin, session: DbSession, response: Response, page: PageParam = 1, limit: LimitParam = 20
) -> list[dict[str, Any]]:
    """List the organization's alert rules, newest first, as a bare array (total in `X-Total-Count`)."""
    return with_total(response, service.list_rules(session, principal.org_id, page, limit))


@router.get("/{id}", response_model=AlertRuleRead)
def get_rule(rule: RuleById) -> dict[str, Any]:
    """Get one alert rule."""
    return service.rule_out(rule)


@router.patch("/{id}", response_model=AlertRuleRead)
def patch_rule(
    rule: RuleById, body: AlertRuleUpdate, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    """Change some fields of a rule; the fields not sent keep their values, and `null` removes a
    condition or the chat URL. The rule must keep `emails` or a `chatWebhookUrl`. Answers already
    alerted are not alerted again; the new conditions apply to answers written from now on."""
    return service.update_rule(session, rule, body, settings.webhook_allow_private)


@router.delete("/{id}", status_code=204, response_class=Response)
def delete_rule(rule: RuleById, session: DbSession) -> Response:
    """Delete a rule with its delivery log; alerts still waiting to be retried are dropped."""
    service.delete_rule(session, rule)
    return Response(status_code=204)


@router.get("/{id}/deliveries", response_model=list[AlertDeliveryRead], responses=TOTAL_COUNT_HEADER)
def list_deliveries(
    rule: RuleById,
    session: DbSession,
    response: Response,
    page: PageParam = 1,
    limit: LimitParam = 20,
    status: Annotated[DeliveryStatus | None, Query(description="pending, sent or failed")] = None,
    channel: Annotated[Channel | None, Query(description="email or chat")] = None,
) -> list[dict[str, Any]]:
    """The rule's delivery log, newest first: one entry per answer and channel, with its status,
    attempts, last error and times. A bare array; the total is in `X-Total-Count`."""
    return with_total(
        response,
        service.list_deliveries(
            session, rule, service.DeliveryQuery(page=page, limit=limit, status=status, channel=channel)
        ),
    )
