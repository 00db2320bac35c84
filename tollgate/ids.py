"""Random identifiers without a system call each: call ids, Redis reservation tokens.

128 random bits from a private generator seeded from ``os.urandom`` (a ``getrandom`` syscall per
id costs more than the rest of the id), reseeded in a forked child so siblings never share
ids, and private so that ``random.seed()`` in the application cannot make ids repeat.
"""

from __future__ import annotations

import os
import random

_ids = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.seed)


def random_hex(bits: int) -> str:
    """``bits`` random bits as lowercase hex (``bits`` a multiple of 4).

    >>> len(random_hex(128)), random_hex(128) != random_hex(128)
    (32, True)
    """
    return f"{_ids.getrandbits(bits):0{bits // 4}x}"
