"""The one rule that files an address under a contact: every path that meets an e-mail address
(an answer, an invitation, ``POST /endusers``) asks here who it belongs to.

An address names the organization's contact with the same case-insensitive key. An address no
contact has yet is filed under the company given with it, else under the company whose
``domains`` hold the address's domain (the smallest company id when several do), else under no
company. This module only answers; creating the contact is the caller's (the bulk write path
inserts many at once, with their latest answer already set).

It lives in the records area, below the contacts API: an answer's arrival is what usually
creates a contact, and the contacts API is built on top of records (its cascades delete them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from npsd.kit.db import one_of
from npsd.kit.models import CompanyDomain, Enduser


def domain_of(key: str) -> str:
    """The domain of a normalized address (see :func:`npsd.kit.validation.email_key`)."""
    return key.rpartition("@")[2]


@dataclass(frozen=True)
class Filing:
    """Where one address belongs.

    ``contact`` is the existing contact's row (``id``, ``company_id``, then the columns asked
    for), or None for an address new to the organization; ``company_id`` is the contact's
    company, or for a new address the company it is to be filed under.
    """

    contact: Sequence[Any] | None
    company_id: str | None

    @property
    def enduser_id(self) -> str | None:
        return None if self.contact is None else self.contact[0]


def file_addresses(
    session: Session, org_id: str, addresses: Mapping[str, str | None], columns: Sequence[Any] = ()
) -> dict[str, Filing]:
    """Where each address belongs: ``addresses`` maps a normalized address to the company given
    with it (or None). Two queries whatever the number and mix of addresses: contacts by address (with
    ``columns`` of their row), then the domains of the new addresses that came without a company.
    """
    contacts: dict[str, Sequence[Any]] = {}
    if addresses:
        for found_row in session.execute(
            select(Enduser.email_key, Enduser.id, Enduser.company_id, *columns).where(
                Enduser.org_id == org_id, one_of(session, Enduser.email_key, addresses)
            )
        ):
            contacts[found_row[0]] = tuple(found_row[1:])
    unplaced = {
        domain_of(key) for key, company in addresses.items() if key not in contacts and company is None
    }
    by_domain = companies_by_domain(session, org_id, unplaced)
    found: dict[str, Filing] = {}
    for key, company in addresses.items():
        row = contacts.get(key)
        if row is not None:
            found[key] = Filing(row, row[1])
        else:
            found[key] = Filing(None, company if company is not None else by_domain.get(domain_of(key)))
    return found


def companies_by_domain(session: Session, org_id: str, domains: set[str]) -> dict[str, str]:
    """domain -> the company whose ``domains`` hold it (the smallest id when several do)."""
    found: dict[str, str] = {}
    if not domains:
        return found
    for domain, cid in session.execute(
        select(CompanyDomain.domain, CompanyDomain.company_id)
        .where(CompanyDomain.org_id == org_id, one_of(session, CompanyDomain.domain, domains))
        .order_by(CompanyDomain.company_id)
    ):
        found.setdefault(domain, cid)
    return found
