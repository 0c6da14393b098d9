"""24-hex, time-ordered identifiers compatible with MongoDB ObjectIds (Planhat's ``_id``).

Layout: 4 bytes of seconds since the epoch, 5 random bytes fixed per process, 3 bytes of counter.
Sorting ids sorts by creation time, which keeps B-tree inserts at the right edge.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time

_ID_RE = re.compile(r"^[0-9a-f]{24}$")
_process_bytes = os.urandom(5).hex()
_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_lock = threading.Lock()


def new_id() -> str:
    """A fresh id, unique across processes and increasing within one."""
    with _lock:
        n = next(_counter) & 0xFFFFFF
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{_process_bytes}{n:06x}"


def new_ids(count: int) -> list[str]:
    """``count`` fresh ids at once (the bulk paths call this)."""
    with _lock:
        ns = [next(_counter) & 0xFFFFFF for _ in range(count)]
    prefix = f"{int(time.time()) & 0xFFFFFFFF:08x}{_process_bytes}"
    return [f"{prefix}{n:06x}" for n in ns]


def is_id(value: object) -> bool:
    """Whether ``value`` is a well-formed id (lower-case 24 hex)."""
    return isinstance(value, str) and _ID_RE.match(value) is not None
