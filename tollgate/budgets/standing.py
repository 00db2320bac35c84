"""Standing limits: budgets kept in the store, applied to every call whose tags match.

``set_limit(usd=50, per="month", tenant="acme")`` writes one JSON document into the store;
every process sharing that store applies it from its next call on (the store's limits
version changes, and each process reloads its cached copy when it does). A standing limit is
identified by its tag match, so changing its amount keeps what was already spent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from tollgate.budgets.scope import Frame
from tollgate.budgets.spec import Action, BudgetSpec, check_downgrade_models
from tollgate.stores.base import Store


def limit_id(match: Mapping[str, object]) -> str:
    """The id of the standing limit for a tag match: ``limit[tenant=acme]``.

    The characters that separate the parts (``,=[]``, and ``%``) are escaped in values, so
    ``tenant="a,plan=free"`` cannot take the id of ``tenant="a", plan="free"``.

    >>> limit_id({"tenant": "acme", "feature": "search"}), limit_id({"tenant": "a,plan=free"})
    ('limit[feature=search,tenant=acme]', 'limit[tenant=a%2Cplan%3Dfree]')
    """
    return "limit[" + ",".join(f"{k}={_escape(str(match[k]))}" for k in sorted(match)) + "]"


def _escape(value: str) -> str:
    return value.translate(_ESCAPES) if any(c in value for c in "%,=[]") else value


_ESCAPES = str.maketrans({c: f"%{ord(c):02X}" for c in "%,=[]"})


def check_match(match: Mapping[str, object], what: str = "set_limit") -> None:
    """Refuse a tag match no call can have: tag names are identifiers, values non-empty strings
    (as :func:`tollgate.track` sets them)."""
    for name, value in match.items():
        if not name.isidentifier():
            raise ValueError(f"{what} {name}=...: tag name {name!r} is not an identifier, e.g. tenant='acme'")
        if not isinstance(value, str):
            raise ValueError(
                f"{what} {name}={value!r}: tag values are strings, as track() sets them, e.g. {name}='acme'"
            )
        if not value:
            raise ValueError(f"{what} {name}='': a tag value must not be empty, e.g. {name}='acme'")


def _per_to_json(per: str | timedelta | None) -> object:
    return {"seconds": per.total_seconds()} if isinstance(per, timedelta) else per


def _per_from_json(per: object) -> str | timedelta | None:
    if isinstance(per, dict):
        return timedelta(seconds=float(per["seconds"]))
    return per  # type: ignore[return-value]


def limit_document(
    usd: float | None,
    tokens: int | None,
    *,
    per: str | timedelta | None,
    on_exceed: Action,
    downgrade: Mapping[str, str] | None,
    key: str | tuple[str, ...],
    match: Mapping[str, str],
    calls: int | None = None,
    tool_calls: int | None = None,
    warn_at: float | Sequence[float] = (),
    burn_rate: timedelta | bool | None = None,
    tz: str | None = None,
    hold_wait: float | None = None,
) -> tuple[str, str]:
    """The id and stored JSON document of a standing limit (validated: ValueError when bad,
    a downgrade to a model the price table does not know included), without touching a store.
    ``per=None`` is a lifetime limit (prepaid credit): its counter never resets."""
    if callable(on_exceed):
        raise ValueError("set_limit(on_exceed=...) must be an action name; a callable cannot be stored")
    check_match(match)
    ident = limit_id(match)
    spec = BudgetSpec(
        usd=usd,
        tokens=tokens,
        calls=calls,
        tool_calls=tool_calls,
        per=per,
        key=(key,) if isinstance(key, str) else key,
        on_exceed=on_exceed,
        downgrade=dict(downgrade or {}),
        name=ident,
        warn_at=warn_at,  # type: ignore[arg-type]  # normalised by BudgetSpec
        burn_rate=burn_rate,
        tz=tz,
        persistent=per is None,
        hold_wait=hold_wait,
    )  # validates
    if spec.downgrade:
        from tollgate.config import settings

        check_downgrade_models(spec.downgrade, settings().prices)
    document: dict[str, Any] = {
        "usd": spec.usd,
        "tokens": spec.tokens,
        "per": _per_to_json(per),
        "key": list(spec.key),
        "on_exceed": spec.on_exceed,
        "downgrade": dict(spec.downgrade),
        "match": dict(match),
    }
    # Written only when set, so a limit without them reads as it did before they existed.
    optional = {
        "calls": spec.calls,
        "tool_calls": spec.tool_calls,
        "warn_at": list(spec.warn_at),
        "burn_rate": spec.lookback,
        "tz": tz,
    }
    document.update({k: v for k, v in optional.items() if v})
    if spec.hold_wait is not None:  # 0 is a setting (decide at once), not an absence
        document["hold_wait"] = spec.hold_wait
    return ident, json.dumps(document, sort_keys=True)


def raised_document(current: str | None, ident: str, document: str, until: float) -> str:
    """The document of a temporary raise: ``document``'s amounts in force until ``until`` (epoch
    seconds) over the ``current`` limit (None: none, and the raise lapses into no limit)."""
    new: dict[str, Any] = json.loads(document)
    named = {unit: new[unit] for unit in UNITS if new.get(unit) is not None}
    if current is None:
        return json.dumps({**new, "raised": {**named, "until": until}, "lapses": True}, sort_keys=True)
    base: dict[str, Any] = json.loads(current)
    # The units the raise does not name keep their limits; a raise over a raise that lapses
    # lapses too (its base is no limit).
    kept = {unit: base[unit] for unit in UNITS if base.get(unit) is not None}
    raised = {**kept, **named, "until": until}
    if base.get("lapses"):
        return json.dumps({**base, "raised": raised}, sort_keys=True)
    if base.get("per") != new.get("per") or base.get("tz") != new.get("tz"):
        raise ValueError(
            f"set_limit(until=...) for {ident}: a temporary raise keeps the limit's window "
            f"(per={_per_from_json(base.get('per'))!r}, tz={base.get('tz')!r}); give the same per and tz"
        )
    return json.dumps({**base, "raised": raised}, sort_keys=True)


def topped_up(current: str, ident: str, amounts: Mapping[str, float]) -> str:
    """The document of lifetime limit ``current`` with ``amounts`` added (a top-up)."""
    document: dict[str, Any] = json.loads(current)
    if document.get("per") is not None:
        raise ValueError(
            f"top_up for {ident}: the limit has a window (per={_per_from_json(document['per'])!r}); top-ups "
            "add to lifetime limits only: set_limit(usd=..., per=None, ...)"
        )
    added: dict[str, float] = dict(document.get("topped_up") or {})
    for unit, amount in amounts.items():
        if document.get(unit) is None:
            raise ValueError(f"top_up {unit}=...: the limit {ident} has no {unit} limit to add to")
        document[unit] = document[unit] + amount
        added[unit] = added.get(unit, 0) + amount
    document["topped_up"] = added
    return json.dumps(document, sort_keys=True)


#: The units a standing limit counts.
UNITS = ("usd", "tokens", "calls", "tool_calls")


class StandingLimits:
    """A process's cached copy of the store's standing limits, reloaded when their version moves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: tuple[int, int, _Index] | None = None

    def frames(self, store: Store, tags: Mapping[str, str]) -> tuple[Frame, ...]:
        """The standing limits whose match the call's ``tags`` satisfy, checked against the store."""
        version = store.limits_version()
        cache = self._cache
        if cache is None or cache[0] != id(store) or cache[1] != version:
            with self._lock:
                version, documents = store.limits()
                cache = (id(store), version, _Index(parse(doc) for _, doc in sorted(documents.items())))
                self._cache = cache
        return _matching(cache[2], tags)

    def cached(self, store: Store, tags: Mapping[str, str]) -> tuple[int, tuple[Frame, ...]] | None:
        """The matching standing limits as last loaded, and their version: no I/O (None if never loaded).

        A caller that reserves anyway checks the version the store reports with the
        reservation, and reloads only when it moved: one round trip saved on every call.
        """
        cache = self._cache
        if cache is None or cache[0] != id(store):
            return None
        return cache[1], _matching(cache[2], tags)

    def forget(self) -> None:
        """Drop the cached copy (its store was closed: a new one may get the old one's ``id()``)."""
        with self._lock:
            self._cache = None


#: The process's cache of the configured store's standing limits (forgotten when the store changes).
limits_cache = StandingLimits()


class _Entry(NamedTuple):
    position: int
    match: Mapping[str, str]
    #: The limit in force (None: a raise that lapses into no limit once over).
    frame: Frame | None
    #: A temporary raise: its frame and until when (epoch seconds).
    raised: tuple[Frame, float] | None

    def now(self) -> Frame | None:
        return in_force(self.frame, self.raised, time.time())


def in_force(base: Frame | None, raised: tuple[Frame, float] | None, now: float) -> Frame | None:
    """The frame a stored limit applies at ``now``: its temporary raise until that ends, then
    the limit under it (None: the raise lapses into no limit)."""
    return raised[0] if raised is not None and now < raised[1] else base


class _Index:
    """Standing limits indexed by one ``(tag, value)`` of their match, so that a call looks at
    the limits that can match its tags, not at every limit (one per tenant is common)."""

    __slots__ = ("always", "by_tag")

    def __init__(
        self, limits: Iterable[tuple[Mapping[str, str], Frame | None, tuple[Frame, float] | None]]
    ) -> None:
        self.always: list[_Entry] = []  # an empty match: every call
        self.by_tag: dict[tuple[str, str], list[_Entry]] = {}
        for position, (match, frame, raised) in enumerate(limits):
            entry = _Entry(position, match, frame, raised)
            if match:
                self.by_tag.setdefault(min(match.items()), []).append(entry)
            else:
                self.always.append(entry)


def _matching(index: _Index, tags: Mapping[str, str]) -> tuple[Frame, ...]:
    """The limits whose every ``tag == value`` the call's ``tags`` satisfy, in stored order."""
    found = list(index.always)
    if index.by_tag:
        for item in tags.items():
            found.extend(index.by_tag.get(item, ()))
    if not found:
        return ()
    found.sort(key=lambda entry: entry[0])
    frames = []
    for entry in found:
        if all(tags.get(k) == v for k, v in entry.match.items()):
            frame = entry.frame if entry.raised is None else entry.now()
            if frame is not None:
                frames.append(frame)
    return tuple(frames)


def parse(document: str) -> tuple[Mapping[str, str], Frame | None, tuple[Frame, float] | None]:
    """A stored limit's match, the frame of its limit (None: it lapses once its raise is over),
    and its temporary raise (frame, until), if any."""
    d: dict[str, Any] = json.loads(document)
    match = d.pop("match")
    raised = d.get("raised")

    def frame(amounts: Mapping[str, Any]) -> Frame:
        per = _per_from_json(d["per"])
        spec = BudgetSpec(
            usd=amounts.get("usd"),
            tokens=amounts.get("tokens"),
            calls=amounts.get("calls"),
            tool_calls=amounts.get("tool_calls"),
            per=per,
            key=tuple(d["key"]),
            on_exceed=d["on_exceed"],
            downgrade=d["downgrade"],
            name=limit_id(match),
            warn_at=tuple(d.get("warn_at", ())),
            burn_rate=timedelta(seconds=d["burn_rate"]) if d.get("burn_rate") else None,
            tz=d.get("tz"),
            persistent=per is None,
            hold_wait=d.get("hold_wait"),
        )
        return Frame(spec, "standing", match=match)

    base = None if d.get("lapses") else frame(d)
    return match, base, (frame(raised), float(raised["until"])) if raised else None
