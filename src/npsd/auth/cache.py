"""Short-lived, in-process memory of verified tokens, so a request costs no database round trip
and no signature check for a token seen a moment ago.

* Verified claims are remembered per (key, token); expiry and not-before are re-checked on
  every use, so caching never extends a token's life.
* The ``api_token`` row (revocation, role, organization) is remembered for ``STATE_TTL``
  seconds. A revocation made in this process (API or CLI in-process) is forgotten at once;
  one made by another process takes effect within ``STATE_TTL``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

STATE_TTL = 2.0
MAX_ENTRIES = 4096


@dataclass(frozen=True)
class TokenState:
    org_id: str
    role: str
    user_id: str | None
    revoked: bool
    expires_at: datetime
    last_used_at: datetime | None


_lock = threading.Lock()
_claims: dict[tuple[str, str], dict[str, Any]] = {}
_states: dict[str, tuple[float, TokenState | None]] = {}


def get_claims(key: str, token: str) -> dict[str, Any] | None:
    return _claims.get((key, token))


def put_claims(key: str, token: str, claims: dict[str, Any]) -> None:
    with _lock:
        if len(_claims) >= MAX_ENTRIES:
            _claims.clear()
        _claims[(key, token)] = claims


def get_state(jti: str) -> tuple[bool, TokenState | None]:
    """(fresh, state): ``fresh`` is False when the row must be read again."""
    entry = _states.get(jti)
    if entry is None or time.monotonic() - entry[0] > STATE_TTL:
        return False, None
    return True, entry[1]


def put_state(jti: str, state: TokenState | None) -> None:
    with _lock:
        if len(_states) >= MAX_ENTRIES:
            _states.clear()
        _states[jti] = (time.monotonic(), state)


def forget(jti: str) -> None:
    """Drop what is known of ``jti`` (called when it is revoked)."""
    with _lock:
        _states.pop(jti, None)
