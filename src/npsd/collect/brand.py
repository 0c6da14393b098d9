"""The organization as respondents see it: name, logo, colour and privacy link of mails and pages.

The logo is the one reference to another host that respondent mails and pages make: it is the
organization's own image at the address its admin gave. Pages allow exactly that origin in their
Content-Security-Policy (``img-src``) and send no referrer, so the image's host never learns a
survey link; without a logo nothing is loaded from anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from npsd.auth.service import Profile, load_profile

DEFAULT_COLOR = "#0b57d0"


@dataclass(frozen=True)
class Brand:
    name: str
    logo_url: str | None = None
    color: str = DEFAULT_COLOR
    privacy_url: str | None = None
    sender_name: str | None = None
    sender_email: str | None = None

    @classmethod
    def of(cls, profile: Profile) -> Brand:
        return cls(
            name=profile.name,
            logo_url=profile.logo_url,
            color=profile.brand_color or DEFAULT_COLOR,
            privacy_url=profile.privacy_url,
            sender_name=profile.sender_name,
            sender_email=profile.sender_email,
        )

    @property
    def on_color(self) -> str:
        """Text colour readable on ``color``: black or white, whichever contrasts more (WCAG)."""
        luminance = _luminance(self.color)
        return "#000000" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "#ffffff"

    @property
    def logo_origin(self) -> str | None:
        """``https://host[:port]`` of the logo, for the pages' ``img-src``."""
        if not self.logo_url:
            return None
        parts = urlsplit(self.logo_url)
        return f"{parts.scheme.lower()}://{parts.netloc}"

    def sender(self, default_from: str) -> str | Address:
        """The From of survey mails: ``senderName <senderEmail>``; a missing part comes from the
        organization's name (display name) or from ``NPSD_SMTP_FROM`` (address); with neither set,
        ``NPSD_SMTP_FROM`` unchanged."""
        if not self.sender_email and not self.sender_name:
            return default_from
        default_name, default_address = parseaddr(default_from)
        address = self.sender_email or default_address
        name = self.sender_name or (self.name if self.sender_email else default_name)
        name = " ".join("".join(ch if ch.isprintable() else " " for ch in name).split())
        local, _, domain = address.rpartition("@")
        try:
            return Address(display_name=name, username=local, domain=domain)
        except (ValueError, IndexError):
            return default_from


def _luminance(color: str) -> float:
    def channel(hex2: str) -> float:
        c = int(hex2, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(color[i : i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def brand_of(session: Session, org_id: str) -> Brand:
    return Brand.of(load_profile(session, org_id))
