"""SSRF guard for webhook targets.

A webhook URL is chosen by a tenant's admin, but the request is made from inside the network
npsd runs in. Without a guard, an admin could make npsd POST to ``http://169.254.169.254/`` (cloud
metadata), ``http://localhost:5432`` or any internal service. So a target must be http(s), and
every address its host resolves to must be public: checked when the webhook is saved, and again
at every delivery, because DNS can change between the two. At delivery the connection is made to
the address that was checked (the *pinned* address, with the original ``Host`` header and TLS
server name), so a second, different DNS answer cannot slip through between check and connect.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_ADDRESSES = 4  # addresses tried per delivery, in resolver order

_FORBIDDEN = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
)


class UnsafeTarget(ValueError):
    """The URL is malformed, cannot be resolved, or points at a non-public address."""


def check_syntax(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an absolute http(s) URL, or :class:`UnsafeTarget` saying why not."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UnsafeTarget("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeTarget("must be an http:// or https:// URL")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("must name a host")
    return scheme, host, port or (443 if scheme == "https" else 80)


def forbidden_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (None when it is)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for attribute, label in _FORBIDDEN:
        if getattr(address, attribute):
            return label
    if not address.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT)
        return "non-public"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in resolver order, without duplicates."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise UnsafeTarget(f"host {host!r} cannot be resolved") from exc
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        try:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        except ValueError:
            continue
        if address not in found:
            found.append(address)
    if not found:
        raise UnsafeTarget(f"host {host!r} cannot be resolved")
    return found


@dataclass(frozen=True)
class Target:
    """Where one delivery connects: the checked addresses of the URL's host."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: list[IPAddress]

    @property
    def host_is_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def check_target(url: str, allow_private: bool) -> Target:
    """Parse ``url`` and resolve its host; unless ``allow_private``, refuse it when ANY address is
    not public (a name that resolves to one public and one internal address is refused too)."""
    scheme, host, port = check_syntax(url)
    addresses = resolve(host, port)
    if not allow_private:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason is not None:
                shown = host if str(address) == host else f"{host} ({address})"
                raise UnsafeTarget(
                    f"points at a {reason} address: {shown}; webhooks may only target "
                    "public addresses (NPSD_WEBHOOK_ALLOW_PRIVATE=true lifts this)"
                )
    return Target(url, scheme, host, port, addresses[:MAX_ADDRESSES])
