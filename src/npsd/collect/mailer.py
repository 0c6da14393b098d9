"""Survey e-mails: composed from the templates, sent over SMTP.

``NPSD_SMTP_URL`` is ``smtp://[user:password@]host[:port]`` (port 25 by default; upgraded with
STARTTLS whenever the server offers it) or ``smtps://...`` (TLS from the first byte, port 465 by
default). User and password are percent-decoded, so ``p%40ss`` is ``p@ss``.

A mail counts as sent when the server has accepted it (the reply to the final ``.`` of DATA);
the caller records that at once, so a restart never sends the same invitation twice. Each
worker thread keeps its SMTP connection for the next mail (checked with NOOP first), which
spares a TCP and TLS handshake per recipient when thousands are queued at once.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

from npsd.collect.brand import Brand
from npsd.collect.i18n import Words
from npsd.kit.telemetry import MAILS

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
    keep_trailing_newline=True,
)
IDLE_REUSE_SECONDS = 60.0


class SmtpUrlError(ValueError):
    """``NPSD_SMTP_URL`` cannot be understood."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise SmtpUrlError(f"NPSD_SMTP_URL is not a valid URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise SmtpUrlError("NPSD_SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise SmtpUrlError("NPSD_SMTP_URL names no host")
        implicit = scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=port or (465 if implicit else 25),
            implicit_tls=implicit,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )


@dataclass(frozen=True)
class Mail:
    """Everything one survey e-mail says."""

    invitation_id: str
    to_email: str
    to_name: str | None
    lang: str
    question: str
    token: str
    base_url: str
    reminder: bool = False
    brand: Brand | None = None  # the organization's name, logo, colour, privacy link and sender


def _one_line(value: str) -> str:
    """Names go into headers: no line breaks or other control characters."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def _domain(mail_from: str) -> str:
    address = parseaddr(mail_from)[1]
    domain = address.rpartition("@")[2]
    return domain if domain and all(c.isalnum() or c in ".-" for c in domain) else "npsd.localhost"


def links(base_url: str, token: str) -> tuple[list[str], str]:
    """The 11 score links and the unsubscribe link of one invitation."""
    base = base_url.rstrip("/")
    return [f"{base}/r/{token}?score={n}" for n in range(11)], f"{base}/u/{token}"


def compose(mail: Mail, mail_from: str) -> EmailMessage:
    """A multipart/alternative message (plain text first, then HTML) with RFC 8058 unsubscribe headers."""
    words = Words(mail.lang)
    score_links, unsubscribe_url = links(mail.base_url, mail.token)
    name = _one_line(mail.to_name) if mail.to_name else ""
    context: dict[str, Any] = {
        "words": words,
        "subject": words.reminder_subject if mail.reminder else words.subject,
        "greeting": words("greeting_name", name=name) if name else words.greeting,
        "intro": words.reminder_intro if mail.reminder else words.intro,
        "question": mail.question,
        "links": score_links,
        "unsubscribe_url": unsubscribe_url,
        "brand": mail.brand,
    }
    sender = mail.brand.sender(mail_from) if mail.brand else mail_from
    message = EmailMessage()
    message["Subject"] = context["subject"]
    message["From"] = sender
    message["To"] = _recipient(name, mail.to_email)
    message["Date"] = formatdate(usegmt=True)
    suffix = ".reminder" if mail.reminder else ""
    # Stable per invitation: should a mail ever go out twice, receivers can tell it is the same one.
    message["Message-ID"] = f"<invitation.{mail.invitation_id}{suffix}@{_domain(str(sender))}>"
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Npsd-Invitation-Id"] = mail.invitation_id
    message.set_content(TEMPLATES.get_template("mail.txt").render(context), cte="quoted-printable")
    message.add_alternative(
        TEMPLATES.get_template("mail.html").render(context), subtype="html", cte="quoted-printable"
    )
    message["Content-Language"] = words.lang  # after set_content, which drops Content-* headers
    return message


def _recipient(name: str, email: str) -> str | Address:
    if not name:
        return email
    local, _, domain = email.rpartition("@")
    try:
        return Address(display_name=name, username=local, domain=domain)
    except (ValueError, IndexError):
        return formataddr((name, email))


# ------------------------------------------------------------------------------------------- sending


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying cannot help: the server refused this recipient or this message for good (5xx),
    or cannot carry it at all (an internationalised address to a server without SMTPUTF8).

    Connection problems, 4xx replies and authentication failures are retried: they are the
    server's or the operator's to fix, not the recipient's.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPNotSupportedError):  # e.g. a non-ASCII address, server without SMTPUTF8
        return True
    if isinstance(exc, smtplib.SMTPDataError):
        return exc.smtp_code >= 500
    return False


def describe(exc: BaseException) -> str:
    """A short, readable reason for an invitation's ``failedReason``."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        parts = [f"{code} {_text(msg)}" for code, msg in exc.recipients.values()]
        return "recipient refused: " + "; ".join(parts)
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}"
    return f"{type(exc).__name__}: {exc}"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _Cached(threading.local):
    config: SmtpConfig | None = None
    connection: smtplib.SMTP | None = None
    last_used: float = 0.0


_cached = _Cached()


def _connect(config: SmtpConfig) -> smtplib.SMTP:
    context = ssl.create_default_context()
    connection: smtplib.SMTP
    if config.implicit_tls:
        connection = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout, context=context)
    else:
        connection = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
    try:
        connection.ehlo()
        if not config.implicit_tls and connection.has_extn("starttls"):
            connection.starttls(context=context)
            connection.ehlo()
        if config.username is not None:
            connection.login(config.username, config.password or "")
    except BaseException:
        _quietly_close(connection)
        raise
    return connection


def _quietly_close(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except Exception:
        connection.close()


def close_cached() -> None:
    """Close this thread's kept connection (tests call it when their SMTP server stops)."""
    if _cached.connection is not None:
        _quietly_close(_cached.connection)
    _cached.connection = None
    _cached.config = None


def _reusable(config: SmtpConfig) -> smtplib.SMTP | None:
    connection = _cached.connection
    if connection is None:
        return None
    if _cached.config != config or time.monotonic() - _cached.last_used > IDLE_REUSE_SECONDS:
        close_cached()
        return None
    try:
        code, _ = connection.noop()
    except (smtplib.SMTPException, OSError):
        code = 0
    if code != 250:
        close_cached()
        return None
    return connection


def send(config: SmtpConfig, message: EmailMessage) -> None:
    """Hand ``message`` to the server; returns once the server has accepted it, raises otherwise.

    Never retried here: a failure after DATA could mean the server has the mail already, and
    only the caller knows whether it has been recorded as sent.

    Counted in ``npsd_mails_total``: ``sent`` once the server accepted it, ``failed`` for every
    attempt that raised (connection, authentication, refusal), retried or not.
    """
    try:
        _send(config, message)
    except BaseException:
        MAILS.labels("failed").inc()
        raise
    MAILS.labels("sent").inc()


def _send(config: SmtpConfig, message: EmailMessage) -> None:
    connection = _reusable(config)
    if connection is None:
        connection = _connect(config)
        _cached.config = config
        _cached.connection = connection
    try:
        connection.send_message(message)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException):
        _cached.last_used = time.monotonic()  # a refusal: smtplib has sent RSET, the session is fine
        raise
    except BaseException:
        close_cached()
        raise
    _cached.last_used = time.monotonic()
