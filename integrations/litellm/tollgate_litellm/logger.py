"""``TollgateLogger``: a LiteLLM ``CustomLogger`` that runs every call through tollgate's gate.

Where each step happens:

- pre-flight: ``async_pre_call_deployment_hook`` (every async SDK call, and every Router /
  proxy call, after the deployment is chosen and before the request is sent): a block raises
  :class:`tollgate.BudgetExceeded`; downgrade, clamp and truncate come back as modified
  kwargs; a stream is asked for its usage chunk (``stream_options.include_usage``);
- Router: ``async_filter_deployments`` pre-flights a call whose model group mixes models, so a
  downgrade routes to the group's deployments of the cheaper model;
- proxy: ``async_pre_call_hook`` pre-flights with the key / team / user as tags, so standing
  limits (``tollgate.set_limit(..., api_key=...)``) apply; a block becomes HTTP 429, a
  downgrade to another model group is routed there;
- post-flight, as soon as LiteLLM has the response: ``async_post_call_success_deployment_hook``
  (SDK and Router, before the call returns; on the proxy too, and ``async_post_call_success_hook``
  there) settles a budgeted call, so the next call, even one made right after by the same code,
  never sees its hold. Otherwise ``async_log_success_event`` / ``async_log_failure_event`` (and
  their sync twins for sync calls), run in LiteLLM's logging task, settle the call matched by
  ``litellm_call_id`` (streams, failures, cache hits, unbudgeted calls, calls tollgate cannot
  price). A call is settled once: whichever hook comes first takes it from the registry.
  Usage comes from ``response_obj.usage``, cost from tollgate's price table; LiteLLM's
  ``response_cost``, known only in the logging task, is noted in the record's decisions when it
  differs (calls settled there), and used when tollgate has no price for the model.

A sync ``litellm.completion`` cannot be changed or stopped by a LiteLLM hook: the logger records
it (observe-only, not charged to budgets); :func:`tollgate_litellm.completion` gates it.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator, Mapping, MutableMapping
from typing import Any, ParamSpec, TypeVar

from litellm.integrations.custom_logger import CustomLogger

from tollgate import gate
from tollgate.config import settings
from tollgate.decisions import CacheHit, CostNote
from tollgate.errors import BudgetExceeded, RateLimited, TollgateError
from tollgate.pricing import cost
from tollgate.pricing.estimate import estimator, lookup_price
from tollgate.providers.base import field as get_field
from tollgate.providers.base import outcome
from tollgate.request import Usage
from tollgate.tags import track
from tollgate_litellm import _translate as tr

log = logging.getLogger("tollgate")

_MAX_DONE = 4096
#: A cost difference below this share of the larger cost is not worth a note.
_COST_TOLERANCE = 0.01
#: Proxy key metadata -> tollgate tag names (budgets keyed by them: ``set_limit(api_key=...)``).
PROXY_TAGS = {
    "api_key": "api_key",
    "key_alias": "key_alias",
    "team_id": "team",
    "user_id": "user",
    "end_user_id": "end_user",
    "org_id": "org",
}


class _Pending:
    __slots__ = ("applied", "call", "view")

    def __init__(self, call: gate.Call, view: tr.View, applied: bool = False) -> None:
        self.call = call
        self.view = view
        self.applied = applied


#: Seconds after which a call LiteLLM never reported on (a stream its reader abandoned: LiteLLM
#: sends no event for it) is settled as abandoned, its reservation given back.
STALE_AFTER = 600.0


class Registry:
    """Calls in flight by ``litellm_call_id``, shared by every logger and wrapper in the process
    (a call is pre-flighted once and settled once, whichever logger sees its events).

    A call with no event after :data:`STALE_AFTER` seconds, or still pending when the process
    exits, is settled as abandoned (usage estimated): nothing is lost, nothing stays reserved.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._done: OrderedDict[str, None] = OrderedDict()

    def add(self, call_id: str, pending: _Pending) -> None:
        self.settle_stale(STALE_AFTER)
        with self._lock:
            self._pending[call_id] = pending

    def settle_stale(self, older_than: float) -> int:
        """Settle as abandoned the calls pending for more than ``older_than`` seconds; how many."""
        now = time.time()
        with self._lock:
            stale = [k for k, p in self._pending.items() if now - p.call.started_at >= older_than]
            abandoned = [self._pending.pop(k) for k in stale]
            for k in stale:
                self._mark(k)
        for p in abandoned:
            p.call.abandon()
        return len(abandoned)

    def watch(self, holder: Any, call_id: str) -> None:
        """Settle the call as abandoned once ``holder`` is gone (LiteLLM's logging object, or the
        stream a wrapper returned): a stream its reader dropped sends LiteLLM no event, and
        without this the call would wait :data:`STALE_AFTER` seconds. A call settled already
        is left alone."""
        if holder is None:
            return
        with contextlib.suppress(TypeError):  # no weak reference: the stale sweep settles it
            weakref.finalize(holder, self.abandon, call_id)

    def abandon(self, call_id: str) -> None:
        """Settle the call as abandoned, if it is still pending."""
        pending = self.take(call_id)
        if pending is not None:
            pending.call.abandon()

    def abandon_all(self) -> None:
        """Settle every call still pending as abandoned (at exit)."""
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for p in pending:
            p.call.abandon()

    def get(self, call_id: Any) -> _Pending | None:
        with self._lock:
            return self._pending.get(call_id) if isinstance(call_id, str) else None

    def rename(self, old: Any, new: str) -> _Pending | None:
        """Move a pending call to the id LiteLLM gave it later; the call (None when unknown)."""
        with self._lock:
            pending = self._pending.pop(old, None) if isinstance(old, str) else None
            if pending is not None:
                self._pending[new] = pending
            return pending

    def take(self, call_id: Any) -> _Pending | None:
        """Remove and return the pending call (None when unknown or taken already)."""
        if not isinstance(call_id, str):
            return None
        with self._lock:
            pending = self._pending.pop(call_id, None)
            if pending is not None:
                self._mark(call_id)
            return pending

    def seen(self, call_id: Any) -> bool:
        """Whether the call was taken (settled or observed) already; marks it taken."""
        if not isinstance(call_id, str):
            return True
        with self._lock:
            if call_id in self._done or call_id in self._pending:
                return True
            self._mark(call_id)
            return False

    def _mark(self, call_id: str) -> None:
        self._done[call_id] = None
        while len(self._done) > _MAX_DONE:
            self._done.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


registry = Registry()
atexit.register(registry.abandon_all)


def api_keys(kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    """The credentials a call carries (masked in a captured error message)."""
    keys = (kwargs.get("api_key"), kwargs.get("azure_ad_token"))
    return tuple(k for k in keys if isinstance(k, str) and k)


def _call_id(kwargs: Mapping[str, Any]) -> Any:
    call_id = kwargs.get("litellm_call_id")
    if call_id is None:
        call_id = get_field(kwargs.get("litellm_logging_obj"), "litellm_call_id")
    return call_id


def _is_async(kwargs: Mapping[str, Any]) -> bool:
    params = kwargs.get("litellm_params")
    flags = [kwargs.get("acompletion"), kwargs.get("aembedding")]
    if isinstance(params, Mapping):
        flags += [params.get("acompletion"), params.get("aembedding"), params.get("aresponses")]
    return any(flag is True for flag in flags)


def _metadata(kwargs: Mapping[str, Any]) -> Any:
    meta = kwargs.get("metadata")
    if meta is None:
        meta = kwargs.get("litellm_metadata")
    if meta is None:
        params = kwargs.get("litellm_params")
        if isinstance(params, Mapping):
            meta = params.get("metadata")
    return meta


#: The metadata key that carries a call pre-flighted by the Router filter to the deployment hook.
#: LiteLLM's Rust router core (1.110+) gives filters a copy of the request, without its call id,
#: and names the call only later; the metadata dict is the one object both hooks share.
_HANDOFF = "tollgate_preflighted_call"


def _hand_over(request_kwargs: Mapping[str, Any], call_id: str) -> None:
    meta = _metadata(request_kwargs)
    if isinstance(meta, MutableMapping):
        meta[_HANDOFF] = call_id


def _handed_over(kwargs: Mapping[str, Any]) -> Any:
    meta = _metadata(kwargs)
    return meta.pop(_HANDOFF, None) if isinstance(meta, MutableMapping) else None


P = ParamSpec("P")
T = TypeVar("T")


@contextlib.contextmanager
def _refusals_final() -> Iterator[None]:
    """LiteLLM's Router retries an error a hook raises, and a retried refusal is refused again,
    leaving one more blocked record (and a backoff) each time: tollgate's refusals raised
    inside are final. The Router reads ``num_retries`` off the error."""
    try:
        yield
    except (BudgetExceeded, RateLimited) as exc:
        exc.num_retries = 0  # type: ignore[union-attr]
        raise


def _final(hook: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """``hook`` with its refusals final for the Router (see :func:`_refusals_final`)."""

    @functools.wraps(hook)
    async def final(*args: P.args, **kwargs: P.kwargs) -> T:
        with _refusals_final():
            return await hook(*args, **kwargs)

    return final


async def _refuse(call: gate.Call, reason: str) -> BudgetExceeded:
    return await call.arefuse(f"tollgate cannot {call.decision.action} this call: {reason}")


def outcome_of(call: gate.Call, view: tr.View, kwargs: Mapping[str, Any], response: Any) -> gate.Outcome:
    """What ``response`` says of the call; LiteLLM's cost noted (or used) beside tollgate's.

    Without reported usage (a stream that did not send it) the gate estimates the output from
    the text and flags the record ``estimated``.
    """
    said = outcome(call, view.surface, response, lambda r: tr.found(view.surface, r))
    if kwargs.get("cache_hit") is True:  # LiteLLM answered from its cache: nothing was billed
        return said._replace(usage=Usage(), usd=None, estimated=False, steps=(CacheHit(),))
    decided = call.decision.model
    if decided != call.request.model and said.model == call.request.model:
        # The proxy names the model group the client asked for in its response, not the one a
        # downgrade sent the call to: the cheaper model answered and is billed.
        said = said._replace(model=decided)
    theirs = tr.reported_cost(kwargs)
    if theirs is None or said.usd is not None:
        return said
    price = lookup_price(call.settings, said.model, call.request.provider) if said.model else None
    price = price or call.price
    if price is None:  # tollgate has no price: LiteLLM's is better than $0
        return said._replace(usd=theirs, steps=(CostNote("litellm", theirs),))
    if said.usage is None:
        return said
    try:
        ours = cost(price, said.usage)
    except Exception:  # the gate notes a usage it cannot price
        return said
    if abs(ours - theirs) > _COST_TOLERANCE * max(abs(ours), abs(theirs), 1e-12):
        return said._replace(steps=(CostNote("litellm", theirs, ours, mismatch=True),))
    return said


class TollgateLogger(CustomLogger):
    """Budgets, attribution and telemetry for every LiteLLM call (SDK, Router, proxy).

    ``litellm.callbacks = [TollgateLogger()]``. ``tags``: map ``metadata={"tollgate": {...}}``
    (SDK, Router) and the proxy's key / team / user to tollgate tags. ``observe_sync``: record
    plain sync ``litellm.completion`` calls (which no hook can gate) as observe-only.
    """

    def __init__(self, *, tags: bool = True, observe_sync: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tags = tags
        self.observe_sync = observe_sync

    def _scope(self, kwargs: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> track:
        tags = tr.tags_from(_metadata(kwargs)) if self.tags else {}
        return track(**{**tags, **(extra or {})})

    # -- pre-flight -----------------------------------------------------------------------------

    @_final
    async def async_pre_call_deployment_hook(
        self, kwargs: dict[str, Any], call_type: Any
    ) -> dict[str, Any] | None:
        call_id = _call_id(kwargs)
        handed = _handed_over(kwargs)  # taken out of the metadata whichever way the call is found
        pending = registry.get(call_id)
        if pending is None and isinstance(call_id, str):
            pending = registry.rename(handed, call_id)
        if pending is not None:  # pre-flighted by a wrapper, the Router filter or the proxy hook
            if pending.applied:
                return None
            pending.applied = True
            return tr.apply(pending.call, pending.view, kwargs)
        if gate.covered() or not isinstance(call_id, str):
            return None
        view = tr.view_of(kwargs, tr.call_type_name(call_type))
        if view is None:
            return None
        registry.seen(call_id)  # a refused call's failure event is not to be recorded again
        with self._scope(kwargs):
            call = await gate.apreflight(view.request, secrets=api_keys(kwargs))
        reason = tr.blocked_edits(call, view)
        if reason is not None:
            raise await _refuse(call, f"the {reason}d argument was passed positionally")
        edited = tr.apply(call, view, kwargs)
        try:
            tr.check_routable(call, edited)
        except ValueError as exc:
            raise await _refuse(call, str(exc)) from exc
        registry.add(call_id, _Pending(call, view, applied=True))
        registry.watch(kwargs.get("litellm_logging_obj"), call_id)
        return edited

    @_final
    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list[Any],
        messages: list[Any] | None,
        request_kwargs: dict[str, Any] | None = None,
        parent_otel_span: Any = None,
    ) -> list[Any]:
        """Route a downgraded call to the deployments of the cheaper model, when the group has them.

        Only groups whose deployments run different models are pre-flighted here (priced at the
        priciest of them); the deployment hook applies the rest of the decision.
        """
        if request_kwargs is None or gate.covered():
            return healthy_deployments
        models: dict[str, Any] = {}
        for deployment in healthy_deployments:
            name = str(((deployment or {}).get("litellm_params") or {}).get("model") or "")
            models.setdefault(tr.split_model(name)[1], deployment)
        if len(models) < 2:
            return healthy_deployments
        call_id = request_kwargs.get("litellm_call_id")
        pending = registry.get(call_id)
        if pending is None:
            if not isinstance(call_id, str):
                import uuid

                call_id = request_kwargs["litellm_call_id"] = str(uuid.uuid4())
                _hand_over(request_kwargs, call_id)
            pending = await self._preflight_group(models, messages, request_kwargs, call_id)
        target = pending.call.decision.model
        if target == pending.call.request.model:
            return healthy_deployments
        chosen = [
            d
            for d in healthy_deployments
            if tr.split_model(str(d["litellm_params"].get("model") or ""))[1] == target
        ]
        return chosen or healthy_deployments

    async def _preflight_group(
        self,
        models: Mapping[str, Any],
        messages: list[Any] | None,
        request_kwargs: Mapping[str, Any],
        call_id: str,
    ) -> _Pending:
        views = []
        for deployment in models.values():
            params = deployment["litellm_params"]
            native = {
                **request_kwargs,
                "messages": messages,
                **{k: params[k] for k in ("api_base",) if k in params},
            }
            view = tr.view_of(native, "acompletion", model=str(params.get("model") or ""))
            if view is not None:
                views.append(view)
        estimate = estimator(settings())
        view = max(views, key=lambda v: estimate(v.request)[0].usd)
        with self._scope(request_kwargs):
            call = await gate.apreflight(view.request, secrets=api_keys(request_kwargs))
        pending = _Pending(call, view)
        registry.add(call_id, pending)
        return pending

    def pre_call_check(self, deployment: dict[str, Any]) -> dict[str, Any] | None:
        """Sync Router calls: refuse a deployment while an applying budget is already spent.

        The hook sees only the deployment (not the request), so it cannot reserve: it blocks
        when a budget has no room left at all, and the call is then recorded (observe-only).
        Use :func:`tollgate_litellm.completion` with ``router=`` to gate sync Router calls fully.
        """
        if gate.covered():
            return None
        from tollgate.budgets.scope import active_budgets

        if not active_budgets():
            return None
        params = deployment.get("litellm_params") or {}
        view = tr.view_of(
            {"messages": [], "max_tokens": 1}, "completion", model=str(params.get("model") or "")
        )
        if view is None:
            return None
        with _refusals_final():
            gate.probe(view.request)  # raises BudgetExceeded when nothing is left
        return None

    async def async_pre_call_hook(
        self,
        user_api_key_dict: Any,
        cache: Any,
        data: dict[str, Any],
        call_type: Any,
    ) -> dict[str, Any] | None:
        """Proxy: pre-flight with the key / team / user as tags; block -> HTTP 429."""
        name = tr.call_type_name(call_type)
        if name not in ("completion", "acompletion", "embeddings", "aembedding", "responses", "aresponses"):
            return None
        call_type_norm = {"embeddings": "aembedding"}.get(name, name)
        import uuid

        call_id = data.get("litellm_call_id")
        if not isinstance(call_id, str):
            call_id = data["litellm_call_id"] = str(uuid.uuid4())
        group = str(data.get("model") or "")
        underlying = _proxy_model(group)
        view = tr.view_of(data, call_type_norm, model=underlying)
        if view is None:
            return None
        tags = proxy_tags(user_api_key_dict) if self.tags else {}
        registry.seen(call_id)  # the proxy's failure event for a refused call is not recorded again
        try:
            with self._scope(data, tags):
                call = await gate.apreflight(view.request, secrets=api_keys(data))
        except BudgetExceeded as exc:
            raise _http_429(exc) from exc
        reason = None
        if call.decision.model != call.request.model:
            target_group = _proxy_group_for(call.decision.model)
            if target_group is None:
                reason = f"no model group of the proxy serves {call.decision.model!r}"
        if reason is not None:
            raise _http_429(await _refuse(call, reason))
        out = dict(data)
        if call.decision.model != call.request.model:
            out["model"] = target_group
        edited = tr.apply(call, view, {**out, "model": call.decision.model})
        edited["model"] = out["model"]
        registry.add(call_id, _Pending(call, view, applied=True))
        return edited

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        """A plain sync ``litellm.completion(stream=True)`` (no hook can gate it) is noted as it
        starts, so that a stream its reader drops, of which LiteLLM says nothing more, is still
        recorded (as abandoned, by the stale sweep or at exit)."""
        if not self.observe_sync or kwargs.get("stream") is not True or _is_async(kwargs) or gate.covered():
            return
        call_id = _call_id(kwargs)
        if not isinstance(call_id, str) or registry.get(call_id) is not None or registry.seen(call_id):
            return
        view = tr.view_of(kwargs, tr.call_type_name(kwargs.get("call_type") or "completion"))
        if view is None:
            return
        with track(**(tr.tags_from(_metadata(kwargs)) if self.tags else {})):
            call = gate.observe(view.request)
        call.streaming()
        registry.add(call_id, _Pending(call, view))

    # -- post-flight ----------------------------------------------------------------------------

    async def async_post_call_success_deployment_hook(
        self, request_data: dict[str, Any], response: Any, call_type: Any
    ) -> Any:
        """Settle a budgeted call as soon as LiteLLM has its response, in the call's own path (SDK,
        Router, proxy): its hold is gone before the call returns. Returns None (the response as is)."""
        await self._settle_now(request_data, response)
        return None

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        """Proxy: as :meth:`async_post_call_success_deployment_hook`, for a call it did not settle."""
        await self._settle_now(data, response)
        return None

    async def _settle_now(self, kwargs: Mapping[str, Any], response: Any) -> None:
        call_id = _call_id(kwargs)
        pending = registry.get(call_id)
        # Only a call that holds budget is settled early; one tollgate cannot price waits for
        # LiteLLM's cost, known in the logging task only.
        if pending is None or not pending.call.holds or pending.call.price is None:
            return
        if _whole(kwargs, response) is None or get_field(response, "usage") is None:
            return  # a stream (settled when it ends), or nothing to settle on yet
        pending = registry.take(call_id)
        if pending is not None:  # else another hook took it meanwhile
            call = pending.call
            await call.afinish(outcome_of(call, pending.view, kwargs, response), raise_overrun=False)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        await self._success(kwargs, response_obj)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        if _is_async(kwargs):
            return  # the async event settles it
        pending = registry.take(_call_id(kwargs))
        if pending is not None:
            self._settle(pending, kwargs, response_obj)
        elif self.observe_sync:
            self._observe(kwargs, response_obj, None)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        pending = registry.take(_call_id(kwargs))
        if pending is not None:
            exc = kwargs.get("exception")
            await pending.call.afail(exc if isinstance(exc, BaseException) else RuntimeError(str(exc)))

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        if _is_async(kwargs):
            return
        exc = kwargs.get("exception")
        error = exc if isinstance(exc, BaseException) else RuntimeError(str(exc))
        pending = registry.take(_call_id(kwargs))
        if pending is not None:
            pending.call.fail(error)
        elif self.observe_sync:
            self._observe(kwargs, None, error)

    async def _success(self, kwargs: Any, response_obj: Any) -> None:
        response_obj = _whole(kwargs, response_obj)
        if response_obj is None:
            return  # a chunk; the stream's end brings the whole response
        pending = registry.take(_call_id(kwargs))
        if pending is None:
            return
        call = pending.call
        await call.afinish(outcome_of(call, pending.view, kwargs, response_obj), raise_overrun=False)

    def _settle(self, pending: _Pending, kwargs: Any, response_obj: Any) -> None:
        response_obj = _whole(kwargs, response_obj)
        call = pending.call
        call.finish(outcome_of(call, pending.view, kwargs, response_obj), raise_overrun=False)

    def _observe(self, kwargs: Any, response_obj: Any, error: BaseException | None) -> None:
        if isinstance(error, TollgateError):
            return  # tollgate refused it, and recorded that
        if error is None:
            response_obj = _whole(kwargs, response_obj)
            if response_obj is None:
                return
        if registry.seen(_call_id(kwargs)):
            return
        view = tr.view_of(kwargs, tr.call_type_name(kwargs.get("call_type") or "completion"))
        if view is None:
            return
        tags = tr.tags_from(_metadata(kwargs)) if self.tags else {}

        with track(**tags):
            call = gate.observe(view.request)
        if error is not None:
            call.fail(error)
            return
        said = outcome_of(call, view, kwargs, response_obj)
        call.finish(said._replace(stream=kwargs.get("stream") is True), raise_overrun=False)


def _whole(kwargs: Mapping[str, Any], response_obj: Any) -> Any:
    """The whole response of a success event (None for a stream chunk's event)."""
    for key in ("complete_streaming_response", "async_complete_streaming_response"):
        if kwargs.get(key) is not None:
            return kwargs[key]
    if get_field(response_obj, "object") == "chat.completion.chunk":
        return None
    return response_obj


def proxy_tags(user_api_key_dict: Any) -> dict[str, str]:
    """tollgate tags from the proxy's ``UserAPIKeyAuth`` (the hashed key, its alias, team, user)."""
    out: dict[str, str] = {}
    key = get_field(user_api_key_dict, "api_key") or get_field(user_api_key_dict, "token")
    if isinstance(key, str) and key.startswith("sk-"):  # a raw key never reaches the ledger
        import hashlib

        key = hashlib.sha256(key.encode()).hexdigest()
    for attr, tag in PROXY_TAGS.items():
        value = key if attr == "api_key" else get_field(user_api_key_dict, attr)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            out[tag] = str(value)
    return out


def _proxy_router() -> Any:
    try:
        from litellm.proxy import proxy_server

        return proxy_server.llm_router
    except Exception:
        return None


def _router_model(router: Any, group: str) -> str:
    """The model a Router model group runs (its first deployment's), or the group name itself."""
    for deployment in getattr(router, "model_list", None) or ():
        if deployment.get("model_name") == group:
            return str((deployment.get("litellm_params") or {}).get("model") or group)
    return group


def _router_group_for(router: Any, model: str) -> str | None:
    """The Router model group to send a downgraded call to: one named ``model``, else one whose
    deployments all run it, else one with a deployment running it."""
    groups: dict[str, set[str]] = {}
    for deployment in getattr(router, "model_list", None) or ():
        name = str((deployment.get("litellm_params") or {}).get("model") or "")
        groups.setdefault(str(deployment.get("model_name")), set()).add(tr.split_model(name)[1])
    if model in groups:
        return model
    for group, models in groups.items():
        if models == {model}:
            return group
    for group, models in groups.items():
        if model in models:
            return group
    return None


def _proxy_model(group: str) -> str:
    router = _proxy_router()
    return group if router is None else _router_model(router, group)


def _proxy_group_for(model: str) -> str | None:
    router = _proxy_router()
    return None if router is None else _router_group_for(router, model)


def _http_429(exc: BudgetExceeded) -> Exception:
    """The proxy's HTTP 429 for a blocked call, carrying tollgate's message."""
    try:
        from fastapi import HTTPException

        return HTTPException(status_code=429, detail={"error": f"tollgate: {exc}"})
    except Exception:  # no fastapi: the proxy is not running
        exc.status_code = 429  # type: ignore[attr-defined]
        return exc
