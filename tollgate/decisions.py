"""What tollgate did to a call, as typed steps: one frozen type per kind of step.

A call's steps (:data:`Steps`, in the order they happened) are written by the gate (pre-flight
actions, refusals, cut-offs, store trouble) and by doors through their
:class:`~tollgate.gate.Outcome` (a LiteLLM cost note, a cache hit). They become plain dicts only
at the edges: the ledger stores :meth:`Step.as_dict`, spans carry :attr:`Step.event` with
:meth:`Step.attributes`. :func:`step_from_dict` reads a stored one back.

A step is also a read-only mapping of its stored form, so ``record.decisions[0]["action"]``
keeps working for code written against the dicts::

    >>> step = Downgraded(original="gpt-4o", model="gpt-4o-mini")
    >>> step["action"], step.as_dict()
    ('downgrade', {'action': 'downgrade', 'from': 'gpt-4o', 'to': 'gpt-4o-mini'})
    >>> step_from_dict(step.as_dict()) == step
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

#: What pre-flight decided to do with a call that may go ahead.
Action = Literal["proceed", "downgrade", "clamp", "truncate"]

#: Span events are named ``EVENT_PREFIX + action`` (``tollgate.budget.downgrade``).
EVENT_PREFIX = "tollgate.budget."
STORE_UNAVAILABLE_EVENT = "tollgate.store.unavailable"


class Step(Mapping[str, Any]):
    """One thing tollgate did to, or noted of, a call."""

    __slots__ = ()
    #: The ``action`` of the stored form (None: a note, not a budget action).
    action: ClassVar[str | None] = None
    #: The span event this step becomes (None: none).
    event: ClassVar[str | None] = None

    def fields(self) -> dict[str, Any]:
        """The step's own fields, under their stored names."""
        raise NotImplementedError

    def event_name(self) -> str | None:
        """The span event this step becomes (None: none)."""
        return self.event

    def as_dict(self) -> dict[str, Any]:
        """The stored form (ledger, hooks, JSON)."""
        out: dict[str, Any] = {"action": self.action} if self.action else {}
        out.update(self.fields())
        return out

    def attributes(self) -> dict[str, str | bool | int | float]:
        """The span event's attributes: the stored form, with non-scalar values as JSON."""
        import json

        out: dict[str, str | bool | int | float] = {}
        for key, value in self.as_dict().items():
            if isinstance(value, str | bool | int | float):
                out[key] = value
            elif value is not None:
                out[key] = json.dumps(value, default=str)
        return out

    # The read-only mapping of the stored form.
    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.as_dict() == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self.as_dict().items())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()!r})"


#: A call's steps, in order.
Steps: TypeAlias = tuple[Step, ...]


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Downgraded(Step):
    """The call was sent to a cheaper model."""

    original: str
    model: str
    action: ClassVar[str] = "downgrade"
    event: ClassVar[str] = EVENT_PREFIX + "downgrade"

    def fields(self) -> dict[str, Any]:
        return {"from": self.original, "to": self.model}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Clamped(Step):
    """The call's output cap was lowered to what the budget affords."""

    max_output_tokens: int
    was: int | None = None
    action: ClassVar[str] = "clamp"
    event: ClassVar[str] = EVENT_PREFIX + "clamp"

    def fields(self) -> dict[str, Any]:
        return {"max_output_tokens": self.max_output_tokens, "was": self.was}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Truncated(Step):
    """The oldest turns were dropped until the call fit."""

    dropped_messages: int
    action: ClassVar[str] = "truncate"
    event: ClassVar[str] = EVENT_PREFIX + "truncate"

    def fields(self) -> dict[str, Any]:
        return {"dropped_messages": self.dropped_messages}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Skipped(Step):
    """A budget asked for an action this door cannot apply (clamp on an image, ...)."""

    skipped: str
    reason: str
    action: ClassVar[str] = "skip"
    event: ClassVar[str] = EVENT_PREFIX + "skip"

    def fields(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "reason": self.reason}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Blocked(Step):
    """A budget refused the call before any traffic (``reason``: why a door could not apply
    the action that would have let it through)."""

    budget: str
    reason: str | None = None
    action: ClassVar[str] = "block"
    event: ClassVar[str] = EVENT_PREFIX + "block"

    def fields(self) -> dict[str, Any]:
        return (
            {"budget": self.budget} if self.reason is None else {"budget": self.budget, "reason": self.reason}
        )


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CutOff(Step):
    """A stream was closed when its output passed what the budget could still pay for."""

    budget: str
    output_tokens: int
    action: ClassVar[str] = "cutoff"
    event: ClassVar[str] = EVENT_PREFIX + "cutoff"

    def fields(self) -> dict[str, Any]:
        return {"budget": self.budget, "output_tokens": self.output_tokens}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class RateLimitedStep(Step):
    """A rate limit refused the call."""

    limit: str
    action: ClassVar[str] = "rate_limited"
    event: ClassVar[str] = EVENT_PREFIX + "rate_limited"

    def fields(self) -> dict[str, Any]:
        return {"limit": self.limit}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class StoreDown(Step):
    """The store could not be reached and ``on_store_error="open"`` let the call through
    unbudgeted (or a usage record went uncharged)."""

    error: str
    event: ClassVar[str] = STORE_UNAVAILABLE_EVENT

    def fields(self) -> dict[str, Any]:
        return {"store": "unavailable", "error": self.error}


Observation = Literal["observe_only", "block_ignored", "record"]


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Observed(Step):
    """The call was recorded, gated by nobody: a door no hook can gate (``observe_only``), a call
    a hook refused that its framework ran anyway (``block_ignored``), or usage reported after
    the fact (``record``)."""

    kind: Observation

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.kind}

    def fields(self) -> dict[str, Any]:
        return {}

    def event_name(self) -> str:
        return EVENT_PREFIX + self.kind


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Unreadable(Step):
    """Part of the request could not be read (``what``: "request", "messages"); tollgate sent
    it as given and budgeted what it could read. ``error`` is the exception type."""

    what: str
    error: str
    event: ClassVar[str] = "tollgate.request.unreadable"

    def fields(self) -> dict[str, Any]:
        return {"unreadable": self.what, "error": self.error}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class PricingFailed(Step):
    """The usage could not be priced; budgets were charged what was reserved."""

    error: str
    event: ClassVar[str] = "tollgate.pricing.failed"

    def fields(self) -> dict[str, Any]:
        return {"pricing": "failed", "error": self.error}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Implausible(Step):
    """The provider reported usage no call could have used (``reason``: which count, and the
    bound it broke); tollgate recorded and charged its own estimate instead."""

    reason: str
    event: ClassVar[str] = "tollgate.usage.implausible"

    def fields(self) -> dict[str, Any]:
        return {"usage": "implausible", "reason": self.reason}


#: What an abandoned call was charged on: the provider's own final usage ("usage"), the text of
#: an answer the provider had finished without reporting usage ("text"), or, when its end was
#: not seen, the output cap pre-flight reserved: the most the provider can have generated
#: ("reservation").
Basis = Literal["usage", "text", "reservation"]
_BASES = ("usage", "text", "reservation")


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Abandoned(Step):
    """The caller let go of the call before its end: a stream closed, left or dropped before
    the provider's final usage, a generator closed, a call its framework never ended.

    ``read``: chunks (events) the caller took (None: the door cannot say); ``drained``: chunks
    tollgate read after that, of what had already arrived, without waiting for more;
    ``counted``: output tokens in what was read; ``charged``: output tokens billed, on ``basis``
    (see :data:`Basis`). The record is estimated unless the basis is the provider's usage.

    >>> step = Abandoned("reservation", read=3, drained=40, counted=43, charged=500)
    >>> step.as_dict()["abandoned"], step["output_tokens_charged"]
    ('reservation', 500)
    >>> step_from_dict(step.as_dict()) == step
    True
    """

    basis: Basis
    read: int | None
    drained: int
    counted: int
    charged: int
    event: ClassVar[str] = "tollgate.call.abandoned"

    def fields(self) -> dict[str, Any]:
        return {
            "abandoned": self.basis,
            "chunks_read": self.read,
            "chunks_drained": self.drained,
            "output_tokens_counted": self.counted,
            "output_tokens_charged": self.charged,
        }


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CacheHit(Step):
    """The framework answered from its own cache: no provider traffic."""

    def fields(self) -> dict[str, Any]:
        return {"cache_hit": True}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class CostNote(Step):
    """A cost another party reported (``reporter``: "litellm"): recorded as the call's cost
    when tollgate has no price (``mismatch`` False), or noted beside tollgate's own when the two
    disagree (``mismatch`` True)."""

    reporter: str
    theirs: float
    ours: float | None = None
    mismatch: bool = False

    def fields(self) -> dict[str, Any]:
        if self.mismatch:
            return {"cost_mismatch": True, "tollgate_usd": self.ours, f"{self.reporter}_usd": self.theirs}
        return {"cost_source": self.reporter, f"{self.reporter}_usd": self.theirs}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Note(Step):
    """A stored step of a kind this version does not know (read back from a ledger)."""

    data: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.data)

    def fields(self) -> dict[str, Any]:
        return dict(self.data)


_OBSERVATIONS = ("observe_only", "block_ignored", "record")


def step_from_dict(d: Mapping[str, Any]) -> Step:
    """The step a stored dict stands for (a :class:`Note` when unknown or malformed)."""
    try:
        action = d.get("action")
        if action == "downgrade":
            return Downgraded(str(d["from"]), str(d["to"]))
        if action == "clamp":
            return Clamped(int(d["max_output_tokens"]), d.get("was"))
        if action == "truncate":
            return Truncated(int(d["dropped_messages"]))
        if action == "skip":
            return Skipped(str(d["skipped"]), str(d["reason"]))
        if action == "block":
            return Blocked(str(d["budget"]), d.get("reason"))
        if action == "cutoff":
            return CutOff(str(d["budget"]), int(d["output_tokens"]))
        if action == "rate_limited":
            return RateLimitedStep(str(d["limit"]))
        if action in _OBSERVATIONS and len(d) == 1:
            return Observed(action)
        if action is None:
            if d.get("store") == "unavailable":
                return StoreDown(str(d.get("error", "")))
            if "unreadable" in d:
                return Unreadable(str(d["unreadable"]), str(d.get("error", "")))
            if d.get("pricing") == "failed":
                return PricingFailed(str(d.get("error", "")))
            if d.get("usage") == "implausible":
                return Implausible(str(d.get("reason", "")))
            if d.get("abandoned") in _BASES:
                read = d.get("chunks_read")
                return Abandoned(
                    d["abandoned"],
                    None if read is None else int(read),
                    int(d.get("chunks_drained") or 0),
                    int(d["output_tokens_counted"]),
                    int(d["output_tokens_charged"]),
                )
            if d.get("cache_hit") is True and len(d) == 1:
                return CacheHit()
            if isinstance(d.get("cost_source"), str):
                source = d["cost_source"]
                return CostNote(source, float(d[f"{source}_usd"]))
            if d.get("cost_mismatch") is True:
                reporter = next(k[:-4] for k in d if k.endswith("_usd") and k != "tollgate_usd")
                return CostNote(
                    reporter, float(d[f"{reporter}_usd"]), float(d["tollgate_usd"]), mismatch=True
                )
    except (KeyError, TypeError, ValueError, StopIteration):
        pass
    return Note(dict(d))


def stored(step: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of a step (or of a plain dict given in its place)."""
    return step.as_dict() if isinstance(step, Step) else dict(step)


def actions(steps: Sequence[Step]) -> list[str]:
    """The budget actions among ``steps``, in order."""
    out: list[str] = []
    for step in steps:
        if isinstance(step, Observed):
            out.append(step.kind)
        elif step.action is not None:
            out.append(step.action)
        elif isinstance(step, Note) and isinstance(step.data.get("action"), str):
            out.append(step.data["action"])
    return out
