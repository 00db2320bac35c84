"""Process-wide configuration: where records go, how prices resolve, what to do when unpriced.

:func:`configure` validates every value when it is called, so a typo fails at start-up, not
on the first LLM call at 3 a.m. The settings object is immutable and replaced as a whole,
so a call in flight on another thread always sees one consistent configuration.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from tollgate.budgets.rates import RateLimit
from tollgate.budgets.spec import HOLD_WAIT, Action, check_count, check_hold_wait
from tollgate.budgets.standing import check_match, limit_document, limit_id, limits_cache, raised_document
from tollgate.ledger import Ledger, open_ledger
from tollgate.pricing import PriceTable, default_table
from tollgate.stores.base import Store
from tollgate.stores.memory import MemoryStore

if TYPE_CHECKING:
    from tollgate.alerts import Alert
    from tollgate.request import CallRecord
    from tollgate.stores.sliced import Slices

log = logging.getLogger("tollgate")

OnUnpriced = Literal["warn", "raise", "ignore"]
_ON_UNPRICED = ("warn", "raise", "ignore")
OnStoreError = Literal["closed", "open"]
_UNSET: Any = object()


@dataclass(frozen=True)
class Settings:
    """The configuration in force; read it with :func:`settings`, change it with :func:`configure`."""

    ledger: Ledger
    prices: PriceTable
    store: Store
    on_unpriced: OnUnpriced = "warn"
    on_store_error: OnStoreError = "closed"
    expected_output_tokens: int | None = None
    capture_content: bool = False
    #: Tag names whose values become attributes of tollgate's metrics (opt-in: cardinality).
    metric_tags: tuple[str, ...] = ()
    on_record: tuple[Callable[[CallRecord], object], ...] = ()
    on_alert: tuple[Callable[[Alert], object], ...] = ()
    rate_limits: tuple[RateLimit, ...] = ()
    #: Seconds a call that does not fit only because of other calls' holds waits for them.
    hold_wait: float = HOLD_WAIT
    #: Escrow slices in force (the store is then a SlicedStore over the one configured), or None.
    slices: Slices | None = None
    # Models already warned about, so UnpricedModelWarning is issued once per model.
    warned_unpriced: set[str] = field(default_factory=set, compare=False)
    warned_unknown: set[tuple[str, str]] = field(default_factory=set, compare=False)


def _defaults() -> Settings:
    return Settings(ledger=open_ledger("memory://"), prices=default_table(), store=MemoryStore())


_settings: Settings | None = None

#: Record watchers that outlive configure() and reset(), called after the on_record hooks
#: (the pytest plugin's per-test accounting): see :func:`watch`.
watchers: list[Callable[[CallRecord], object]] = []


def watch(hook: Callable[[CallRecord], object]) -> Callable[[], None]:
    """Call ``hook`` with every CallRecord from now on, whatever is configured later; returns
    the function that stops it. For tools (the pytest plugin), not for sinks: use on_record."""
    watchers.append(hook)

    def unwatch() -> None:
        if hook in watchers:
            watchers.remove(hook)

    return unwatch


def settings() -> Settings:
    """The settings in force (created with defaults on first use, not at import)."""
    global _settings
    if _settings is None:
        _settings = _defaults()
    return _settings


def configure(
    *,
    store: str | Store = _UNSET,
    ledger: str | Ledger = _UNSET,
    on_unpriced: OnUnpriced = _UNSET,
    prices: Mapping[str, Mapping[str, float]] | None = _UNSET,
    capture_content: bool = _UNSET,
    on_record: Callable[[CallRecord], object] | Sequence[Callable[[CallRecord], object]] | None = _UNSET,
    on_store_error: OnStoreError = _UNSET,
    expected_output_tokens: int | None = _UNSET,
    metric_tags: Sequence[str] = _UNSET,
    on_alert: Callable[[Alert], object] | Sequence[Callable[[Alert], object]] | None = _UNSET,
    hold_wait: float = _UNSET,
    slices: bool | Mapping[str, float] | Slices | None = _UNSET,
) -> Settings:
    """Change tollgate's process-wide settings; arguments not given keep their value.

    - ``store``: where budget and rate-limit counters live: ``"memory://"`` (this process,
      the default), ``"sqlite:///path.db"`` (processes of one machine), ``"redis://host:6379/0"``
      (many machines), or a :class:`~tollgate.stores.base.Store`.
    - ``expected_output_tokens``: what a call that sets no output cap reserves for its answer.
      None (the default) reserves the model's maximum output: a cap can never be overspent,
      but uncapped calls hold a lot of budget while in flight. A number holds less, at the risk
      of an answer longer than that pushing spend past a cap by the difference.
    - ``on_store_error``: when the store cannot be reached, ``"closed"`` (the default: the call
      is not made, :class:`~tollgate.StoreUnavailable`) or ``"open"`` (the call goes ahead
      unbudgeted, and its record says so).
    - ``ledger``: ``"memory://"`` (bounded ring buffer, the default), ``"sqlite:///path.db"``,
      or a :class:`~tollgate.ledger.Ledger` instance.
    - ``on_unpriced``: ``"warn"`` (once per model, the default), ``"raise"``
      (:class:`~tollgate.UnpricedModelError` pre-flight) or ``"ignore"``.
    - ``prices``: per-token USD overrides, ``{"my-model": {"input": 1e-6, "output": 2e-6}}``.
    - ``capture_content``: put prompts and completions on spans (off by default).
    - ``metric_tags``: the tag names (``track(tenant=...)``) that metrics carry as
      ``tollgate.tag.<name>`` attributes; none by default, as every value makes a new series.
      Spans carry every tag.
    - ``on_record``: a callable (or a list of them) called with every
      :class:`~tollgate.CallRecord` after it is written to the ledger and its span ended, in
      the thread that settled the call. A hook that raises is logged and cannot fail the
      call; a hook must be quick (it runs before the call returns): hand slow work to a
      queue, as :class:`~tollgate.HttpSink` does (``on_record=HttpSink(url, headers)``).
    - ``on_alert``: a callable (or a list of them) called with every :class:`~tollgate.Alert`
      a budget's ``warn_at`` or ``burn_rate`` fires (once per window and key across every
      process on the store), in the thread that settled the call that crossed it; like
      ``on_record`` hooks, guarded and meant to be quick (``on_alert=tollgate.Webhook(url)``
      posts from a background thread).
    - ``hold_wait``: seconds (default 5) a call waits when it does not fit a budget only
      because of other calls in flight (what is spent leaves it room, their reservations do
      not), before the budget's ``on_exceed`` applies; 0 decides at once. Waiting holds
      nothing. A budget's own ``hold_wait`` takes precedence (:mod:`tollgate.budgets.waiting`).
    - ``slices``: escrow slices (:mod:`tollgate.stores.sliced`): ``True`` for the defaults, a
      mapping such as ``{"size": 0.05, "ttl": 30, "low_water": 0.5, "last_stretch": 1}``, or
      ``False`` / ``None`` (the default: every call reserves in the store). The process then
      takes slices of hot counters and admits most calls in memory, with no store round trip.

    >>> import tollgate
    >>> tollgate.configure(on_unpriced="ignore").on_unpriced
    'ignore'
    >>> tollgate.configure(on_unpriced="loud")
    Traceback (most recent call last):
    ...
    ValueError: on_unpriced='loud' is not one of 'warn', 'raise', 'ignore'
    >>> _ = tollgate.reset()
    """
    global _settings
    current = settings()
    changes: dict[str, Any] = {}
    if on_unpriced is not _UNSET:
        if not isinstance(on_unpriced, str) or on_unpriced not in _ON_UNPRICED:
            raise ValueError(f"on_unpriced={on_unpriced!r} is not one of 'warn', 'raise', 'ignore'")
        changes["on_unpriced"] = on_unpriced
    if capture_content is not _UNSET:
        if not isinstance(capture_content, bool):
            raise ValueError(f"capture_content={capture_content!r} must be True or False")
        changes["capture_content"] = capture_content
    if metric_tags is not _UNSET:
        if not isinstance(metric_tags, (list, tuple)) or not all(
            isinstance(n, str) and n.isidentifier() for n in metric_tags
        ):
            raise ValueError(
                f"metric_tags={metric_tags!r}: a list of tag names (identifiers), e.g. ['tenant', 'feature']"
            )
        changes["metric_tags"] = tuple(metric_tags)
    if on_record is not _UNSET:
        hooks = () if on_record is None else (on_record,) if callable(on_record) else on_record
        if not isinstance(hooks, (list, tuple)) or not all(callable(h) for h in hooks):
            raise ValueError(f"on_record={on_record!r} is not callable (nor a list of callables)")
        changes["on_record"] = tuple(hooks)
    if on_alert is not _UNSET:
        alert_hooks = () if on_alert is None else (on_alert,) if callable(on_alert) else on_alert
        if not isinstance(alert_hooks, (list, tuple)) or not all(callable(h) for h in alert_hooks):
            raise ValueError(
                f"on_alert={on_alert!r} is not callable (nor a list of callables), e.g. "
                "on_alert=lambda alert: print(alert.message()) or on_alert=tollgate.Webhook(url)"
            )
        changes["on_alert"] = tuple(alert_hooks)
    if expected_output_tokens is not _UNSET:
        if expected_output_tokens is not None:
            expected_output_tokens = check_count(
                "expected_output_tokens",
                expected_output_tokens,
                "a positive number of tokens (a whole number above 0), e.g. 1000, or None for the "
                "model's maximum output",
            )
        changes["expected_output_tokens"] = expected_output_tokens
    if hold_wait is not _UNSET:
        changes["hold_wait"] = check_hold_wait("hold_wait", hold_wait)
    if on_store_error is not _UNSET:
        if not isinstance(on_store_error, str) or on_store_error not in ("closed", "open"):
            raise ValueError(f"on_store_error={on_store_error!r} is not one of 'closed', 'open'")
        changes["on_store_error"] = on_store_error
    if prices is not _UNSET:
        changes["prices"] = default_table() if not prices else default_table().with_overrides(_prices(prices))
    if store is not _UNSET and not isinstance(store, str | Store):
        raise ValueError(f"store={store!r} is neither a store URI nor a Store")
    if ledger is not _UNSET and not isinstance(ledger, str | Ledger):
        raise ValueError(f"ledger={ledger!r} is neither a ledger URI nor a Ledger")
    if isinstance(store, str):
        from tollgate.stores import open_store

        changes["store"] = open_store(store)
    elif store is not _UNSET:
        changes["store"] = store
    if slices is not _UNSET:
        from tollgate.stores.sliced import slices_config

        changes["slices"] = slices_config(slices)
    if "store" in changes or "slices" in changes:
        chosen = changes.get("slices", _UNSET)
        changes["store"], changes["slices"] = _sliced(
            changes.get("store", current.store), chosen, current.slices
        )
    try:
        if ledger is not _UNSET:
            changes["ledger"] = open_ledger(ledger) if isinstance(ledger, str) else ledger
    except BaseException:
        if isinstance(store, str):
            changes["store"].close()  # opened above for nothing: the ledger is refused
        raise
    new = dataclasses.replace(current, **changes)
    if "ledger" in changes and current.ledger is not new.ledger:
        current.ledger.close()
    if "store" in changes and current.store is not new.store:
        _close_store(current.store, new.store)
        limits_cache.forget()
        from tollgate.alerts import forget as forget_alerts

        forget_alerts()
    _settings = new
    return new


def _sliced(store: Store, slices: Slices | None, before: Slices | None) -> tuple[Store, Slices | None]:
    """``store`` with ``slices`` in force (``_UNSET``: as the store says, for a new store given
    without ``slices=``: a SlicedStore is kept as it is, any other gets the slices in force
    ``before``): wrapped in a SlicedStore, or the plain store under it when slices are off."""
    from tollgate.stores.sliced import SlicedStore

    if slices is _UNSET:
        if isinstance(store, SlicedStore):
            return store, store.config
        slices = before
    plain = store.inner if isinstance(store, SlicedStore) else store
    if slices is None:
        return plain, None
    if isinstance(store, SlicedStore) and store.config == slices:
        return store, slices
    return SlicedStore(plain, slices), slices


def _close_store(old: Store, new: Store) -> None:
    """Close the store configure() replaced; slices only are given back when the plain store
    under them stays in use (slices turned on, off, or resized)."""
    from tollgate.stores.sliced import SlicedStore

    plain_old = old.inner if isinstance(old, SlicedStore) else old
    plain_new = new.inner if isinstance(new, SlicedStore) else new
    if plain_old is not plain_new:
        old.close()
    elif isinstance(old, SlicedStore):
        old.give_back()


def _prices(prices: object) -> Mapping[str, Mapping[str, float]]:
    """``configure(prices=...)`` checked for what the price table does not check itself: the
    shape, model names, and whole-number token limits."""
    example = "e.g. {'my-model': {'input': 1e-06, 'output': 2e-06}}"
    if not isinstance(prices, Mapping):
        raise ValueError(f"prices={prices!r}: a map of model name to per-token USD prices, {example}")
    for model, fields in prices.items():
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"prices: model name {model!r} must be a non-empty string, {example}")
        if not isinstance(fields, Mapping):
            raise ValueError(f"prices[{model!r}]={fields!r}: a map of field to USD per token, {example}")
        for name in ("max_input_tokens", "max_output_tokens"):
            if name in fields:
                fix = f"a whole number of tokens above 0, e.g. {name}=128000"
                check_count(f"price override for {model!r}: {name}", fields[name], fix)
    return prices


def limit(
    rpm: int | None = None,
    tpm: int | None = None,
    *,
    concurrent: int | None = None,
    model: str | None = None,
    provider: str | None = None,
    per: timedelta = timedelta(minutes=1),
    wait: bool = True,
    timeout: float = 60.0,
    lease: float = 60.0,
) -> RateLimit:
    """Add a rate limit for this process (its counters live in the configured store).

    >>> import tollgate
    >>> tollgate.limit(rpm=500, tpm=200_000, model="gpt-4o").name
    'rate[gpt-4o]/60s'
    >>> _ = tollgate.reset()

    ``rpm`` / ``tpm`` count requests and tokens per ``per`` (a rolling minute by default).
    ``concurrent`` caps the calls in flight at once across every process on the store; each
    slot is a lease renewed while its call runs, so a process that dies frees its slots within
    ``lease`` seconds (:mod:`tollgate.leases`).
    """
    global _settings
    rate = RateLimit(
        requests=rpm,
        tokens=tpm,
        concurrent=concurrent,
        per=per,
        model=model,
        provider=provider,
        wait=wait,
        timeout=timeout,
        lease=lease,
    )  # validates
    current = settings()
    _settings = dataclasses.replace(current, rate_limits=(*current.rate_limits, rate))
    return rate


def set_limit(
    usd: float | None = None,
    tokens: int | None = None,
    *,
    per: str | timedelta | None,
    on_exceed: Action = "block",
    downgrade: Mapping[str, str] | None = None,
    key: str | tuple[str, ...] = (),
    calls: int | None = None,
    tool_calls: int | None = None,
    warn_at: float | Sequence[float] = (),
    burn_rate: timedelta | bool | None = None,
    tz: str | None = None,
    until: datetime | None = None,
    hold_wait: float | None = None,
    store: Store | None = None,
    **match: str,
) -> str:
    """Create or change the standing limit for calls tagged ``match``; returns its id.

    >>> import tollgate
    >>> tollgate.set_limit(usd=50, per="month", tenant="acme")
    'limit[tenant=acme]'
    >>> tollgate.remove_limit(tenant="acme")
    True

    The limit is written to the store (``store``, else the configured one), so every process
    sharing it applies it from its next call on. ``key`` gives one counter per value of other
    tags (``set_limit(usd=5, per="day", key="api_key")`` caps every API key at $5 a day).
    ``per=None`` is a lifetime limit that never resets (prepaid credit; add to it with
    :func:`tollgate.top_up`). ``until`` (an aware datetime) makes this a temporary raise: these
    amounts apply until then, and the limit in force before applies again after (with no
    limit before, the limit lapses). ``warn_at``, ``burn_rate``, ``tz``, ``hold_wait``: as for
    :func:`tollgate.budget`. ``on_exceed`` must be an action name: a callable cannot be stored.
    """
    ident, document = limit_document(
        usd,
        tokens,
        per=per,
        on_exceed=on_exceed,
        downgrade=downgrade,
        key=key,
        match=match,
        calls=calls,
        tool_calls=tool_calls,
        warn_at=warn_at,
        burn_rate=burn_rate,
        tz=tz,
        hold_wait=hold_wait,
    )
    target = _limits_store(store, "set_limit")
    if until is None:
        target.put_limit(ident, document)
        return ident
    ends = _until(until)
    for _ in range(1_000):  # a lost swap means another writer changed the limit: read it again
        _, documents = target.limits()
        current = documents.get(ident)
        if target.swap_limit(ident, current, raised_document(current, ident, document, ends)):
            return ident
    raise RuntimeError(f"set_limit for {ident}: the limit kept changing; try again")  # pragma: no cover


def _until(until: object) -> float:
    if not isinstance(until, datetime) or until.tzinfo is None or until.utcoffset() is None:
        raise ValueError(
            f"set_limit until={until!r}: an aware datetime, e.g. until=datetime(2026, 12, 31, tzinfo=UTC)"
        )
    ends = until.timestamp()
    if ends <= time.time():
        raise ValueError(f"set_limit until={until.isoformat()}: that time has passed; give a time to come")
    return ends


def remove_limit(*, store: Store | None = None, **match: str) -> bool:
    """Remove the standing limit for calls tagged ``match``; True if there was one."""
    check_match(match, "remove_limit")
    return _limits_store(store, "remove_limit").delete_limit(limit_id(match))


def _limits_store(store: Store | None, what: str) -> Store:
    if store is None:
        return settings().store
    if not isinstance(store, Store):
        raise ValueError(f"{what} store={store!r}: a Store, or None for the configured one")
    return store


def reset() -> Settings:
    """Back to the defaults: empty in-memory ledger and store, bundled prices, ``on_unpriced="warn"``.

    Meant for tests. A SQLite ledger or store that was configured is closed (its file is kept).
    """
    global _settings
    from tollgate.alerts import forget as forget_alerts
    from tollgate.budgets.enforce import warned_keys

    if _settings is not None:
        _settings.ledger.close()
        _settings.store.close()
    limits_cache.forget()
    forget_alerts()
    warned_keys.clear()  # a budget missing its key tag warns again, as an unpriced model does
    _settings = _defaults()
    return _settings
