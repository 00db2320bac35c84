"""LangChain callback handlers: every chat model or LLM call through tollgate's gate.

A callback can observe, attribute and refuse a call, but not edit it. So the handler runs the
gate's pre-flight when the model starts (``raise_error=True``: a ``BudgetExceeded`` stops the
call before any traffic), settles with the usage LangChain reports when it ends, and releases
the reservation when it fails. When a budget's action would edit the call (downgrade, clamp,
truncate) the handler cannot apply it: by default it blocks the call (the reservation was
sized for the edited call; use :func:`tollgate_langchain.guard` to have the action applied),
or, with ``on_action="proceed"``, lets the unedited call go and records what it cost.

Under an async invocation (``ainvoke``, ``astream``) :class:`TollgateCallbackHandler` runs
inline in the event loop (``run_inline``), so it blocks there too.
:class:`AsyncTollgateCallbackHandler` awaits the store instead (Redis without blocking the
loop). LangChain runs an async handler's coroutines under a *sync* ``invoke`` in a private
event loop and swallows what they raise, so there it cannot block: the refused call is still
recorded as blocked, the call goes ahead, and its usage is recorded in a second record marked
``{"action": "block_ignored"}``. Use the sync handler where sync calls must be stopped.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk, LLMResult

from tollgate import gate
from tollgate.errors import BudgetExceeded
from tollgate.providers.base import as_int
from tollgate.request import LLMRequest
from tollgate.tags import current_tags, track
from tollgate_langchain import _translate as tr

log = logging.getLogger("tollgate")

OnAction = Literal["block", "proceed"]
_MAX_IGNORED = 1024

# Runs some tollgate handler has taken: when several handlers see the same run (one passed in
# callbacks=[...] and one from enable(), or a sync and an async one), only the first counts it.
_claims: dict[UUID, object] = {}
_claims_lock = threading.Lock()


def _claim(run_id: UUID, handler: object) -> bool:
    with _claims_lock:
        owner = _claims.setdefault(run_id, handler)
    return owner is handler


def _unclaim(run_id: UUID, handler: object) -> None:
    with _claims_lock:
        if _claims.get(run_id) is handler:
            del _claims[run_id]


def chat_request(
    serialized: Mapping[str, Any] | None,
    messages: Sequence[Any],
    invocation_params: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
) -> LLMRequest:
    """The provider-neutral view of a chat model call, from what its callback is told."""
    params = dict(invocation_params or {})
    meta = dict(metadata or {})
    kwargs = dict((serialized or {}).get("kwargs") or {})
    class_name = str((serialized or {}).get("name") or ((serialized or {}).get("id") or [""])[-1])
    base_url = kwargs.get("openai_api_base") or kwargs.get("base_url") or kwargs.get("anthropic_api_url")
    model = params.get("model") or params.get("model_name") or meta.get("ls_model_name") or ""
    return tr.request_for(
        provider=tr.provider_name(meta.get("ls_provider"), class_name, base_url),
        model=str(model),
        messages=tr.neutral_messages(messages),
        max_output_tokens=tr.output_cap(params) or tr.output_cap(meta),
        n=as_int(params.get("n")) or 1,
        tools=tr.tool_schemas(params.get("tools")),
        base_url=base_url,
    )


def text_request(
    serialized: Mapping[str, Any] | None,
    prompts: Sequence[str],
    invocation_params: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
) -> LLMRequest:
    """The provider-neutral view of a (non-chat) LLM call."""
    params = dict(invocation_params or {})
    meta = dict(metadata or {})
    class_name = str((serialized or {}).get("name") or "")
    model = params.get("model") or params.get("model_name") or meta.get("ls_model_name") or ""
    return tr.request_for(
        provider=tr.provider_name(meta.get("ls_provider"), class_name),
        model=str(model),
        prompt=list(prompts),
        max_output_tokens=tr.output_cap(params) or tr.output_cap(meta),
    )


#: Seconds after which a call LangChain never ended is settled as abandoned (see
#: :meth:`_Core.settle_stale`); at exit, every such call is.
STALE_AFTER = 600.0
_cores: weakref.WeakSet[_Core] = weakref.WeakSet()


def settle_stale(older_than: float = STALE_AFTER) -> int:
    """Settle as abandoned the calls of every handler that LangChain never ended and that
    started more than ``older_than`` seconds ago (0: all of them; done at exit)."""
    return sum(core.settle_stale(older_than) for core in list(_cores))


atexit.register(settle_stale, 0.0)


class _Core:
    """What both handlers share: translating events, and the calls in flight by run id."""

    def __init__(self, on_action: OnAction, tags: bool, owner: object = None) -> None:
        if on_action not in ("block", "proceed"):
            raise ValueError(f"on_action must be 'block' or 'proceed', not {on_action!r}")
        self.on_action: OnAction = on_action
        self.tags = tags
        self.calls: dict[UUID, gate.Call] = {}
        # Refused runs LangChain may run anyway (async handler under a sync invoke), with their
        # tags; bounded, since under ainvoke such a run never ends.
        self.ignored: OrderedDict[UUID, tuple[LLMRequest | gate.Reader, Mapping[str, str]]] = OrderedDict()
        self.owner = owner
        _cores.add(self)

    def hold(self, run_id: UUID, call: gate.Call) -> None:
        """Keep ``call`` until its run ends; first settle the runs LangChain never ended."""
        if self.calls:
            self.settle_stale(STALE_AFTER)
        self.calls[run_id] = call

    def settle_stale(self, older_than: float) -> int:
        """Settle as abandoned (estimated) the calls started more than ``older_than`` seconds
        ago that LangChain never ended: it reports neither end nor error for a stream whose
        chunks it cannot add up (a malformed ``usage_metadata``), nor for a task cancelled in
        flight. How many there were."""
        now = time.time()
        stale = [r for r, c in list(self.calls.items()) if now - c.started_at >= older_than]
        for run_id in stale:
            call = self.calls.pop(run_id, None)
            _unclaim(run_id, self.owner)
            if call is not None:
                call.abandon()
        return len(stale)

    def ignore(self, run_id: UUID, request: LLMRequest | gate.Reader) -> None:
        self.ignored[run_id] = (request, current_tags())
        while len(self.ignored) > _MAX_IGNORED:
            self.ignored.popitem(last=False)

    def begin(self, run_id: UUID, owner: object) -> bool:
        """Whether this handler is to count the run (not a guard's, not another handler's)."""
        return not gate.covered() and _claim(run_id, owner)

    def scope(self, metadata: Mapping[str, Any] | None, tags: Sequence[str] | None) -> track:
        return track(**(tr.tags_from(metadata, tags) if self.tags else {}))

    def edits(self, call: gate.Call) -> str | None:
        """Why the call must be refused: its decision edits it, a callback cannot, and
        ``on_action`` is ``block`` (None: it may go ahead)."""
        if call.decision.action == "proceed" or self.on_action == "proceed":
            return None
        return (
            f"a callback cannot {call.decision.action} a call; wrap the model with tollgate_langchain.guard()"
        )

    @staticmethod
    def outcome(response: LLMResult) -> gate.Outcome:
        try:
            generations = response.generations
            generation = generations[0][0] if generations and generations[0] else None
            streamed = isinstance(generation, (ChatGenerationChunk, GenerationChunk))
            message = getattr(generation, "message", None)
            said = tr.outcome(message, response.llm_output)
            if len(generations[0]) > 1:  # n > 1: every completion's tool calls
                said = said._replace(
                    tool_calls=sum(tr.tool_calls(getattr(g, "message", None)) for g in generations[0])
                )
            if message is None and generation is not None and said.usage is None:  # a plain LLM: text
                text = getattr(generation, "text", None)
                said = said._replace(text=text if isinstance(text, str) else None)
            return said._replace(stream=streamed) if streamed else said
        except Exception:  # a result of a shape tollgate does not know: the gate estimates
            return gate.Outcome()


class TollgateCallbackHandler(BaseCallbackHandler):
    """Budget, attribute and record every call of the chat models and LLMs it is given to.

    >>> from langchain_core.language_models import GenericFakeChatModel
    >>> from langchain_core.messages import AIMessage
    >>> import tollgate
    >>> _ = tollgate.reset(), tollgate.configure(on_unpriced="ignore")
    >>> model = GenericFakeChatModel(messages=iter([AIMessage("hi")]))
    >>> model.invoke("hello", config={"callbacks": [TollgateCallbackHandler()],
    ...                               "metadata": {"feature": "greet"}}).content
    'hi'
    >>> [(row["tags"], row["calls"]) for row in tollgate.report(group_by=["feature"])]
    [({'feature': 'greet'}, 1)]

    ``on_action``: what to do when a budget's action would edit the call (downgrade, clamp,
    truncate), which a callback cannot: ``"block"`` (default) or ``"proceed"`` unedited.
    ``tags``: map LangChain ``metadata`` (and ``"name=value"`` tags) to tollgate tags.
    """

    raise_error = True  # a BudgetExceeded from pre-flight must stop the call
    run_inline = True  # under ainvoke, run in the loop's context, not a worker thread

    def __init__(self, *, on_action: OnAction = "block", tags: bool = True) -> None:
        self._core = _Core(on_action, tags, self)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._core.begin(run_id, self):
            return
        request = functools.partial(
            chat_request,
            serialized,
            messages[0] if messages else [],
            kwargs.get("invocation_params"),
            metadata,
        )
        self._start(run_id, request, metadata, tags)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._core.begin(run_id, self):
            return
        request = functools.partial(
            text_request, serialized, prompts[:1], kwargs.get("invocation_params"), metadata
        )
        self._start(run_id, request, metadata, tags)

    def _start(
        self,
        run_id: UUID,
        request: gate.Reader,
        metadata: Mapping[str, Any] | None,
        tags: Sequence[str] | None,
    ) -> None:
        try:
            with self._core.scope(metadata, tags):
                call = gate.preflight(request)
        except BaseException:
            _unclaim(run_id, self)
            raise
        reason = self._core.edits(call)
        if reason is not None:
            _unclaim(run_id, self)
            raise call.refuse(reason)
        self._core.hold(run_id, call)

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        call = self._core.calls.get(run_id)
        if call is not None:
            call.streaming()

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._core.calls.pop(run_id, None)
        _unclaim(run_id, self)
        if call is None:
            return
        call.finish(self._core.outcome(response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._core.calls.pop(run_id, None)
        _unclaim(run_id, self)
        if call is not None:
            call.fail(error)


class AsyncTollgateCallbackHandler(AsyncCallbackHandler):
    """The async twin of :class:`TollgateCallbackHandler`: the store is awaited.

    Under ``ainvoke`` / ``astream`` it blocks like the sync handler. Under a sync ``invoke``
    LangChain runs its coroutines apart and ignores what they raise: a refused call is
    recorded as blocked and goes ahead anyway, and its usage is recorded in a second record
    (decision ``block_ignored``). A warning is logged once per handler.
    """

    raise_error = True
    run_inline = True

    def __init__(self, *, on_action: OnAction = "block", tags: bool = True) -> None:
        self._core = _Core(on_action, tags, self)
        self._warned = False

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._core.begin(run_id, self):
            return
        request = functools.partial(
            chat_request,
            serialized,
            messages[0] if messages else [],
            kwargs.get("invocation_params"),
            metadata,
        )
        await self._start(run_id, request, metadata, tags)

    async def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._core.begin(run_id, self):
            return
        request = functools.partial(
            text_request, serialized, prompts[:1], kwargs.get("invocation_params"), metadata
        )
        await self._start(run_id, request, metadata, tags)

    async def _start(
        self,
        run_id: UUID,
        request: gate.Reader,
        metadata: Mapping[str, Any] | None,
        tags: Sequence[str] | None,
    ) -> None:
        with self._core.scope(metadata, tags):
            try:
                call = await gate.apreflight(request)
            except BudgetExceeded:
                # Under a sync invoke LangChain swallows this and runs the call: remember the
                # run, so its end is recorded all the same (see on_llm_end).
                _unclaim(run_id, self)
                self._core.ignore(run_id, request)
                raise
            except BaseException:
                _unclaim(run_id, self)
                raise
            reason = self._core.edits(call)
            if reason is not None:
                _unclaim(run_id, self)
                exc = await call.arefuse(reason)
                self._core.ignore(run_id, call.request)
                raise exc
        self._core.hold(run_id, call)

    async def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        call = self._core.calls.get(run_id)
        if call is not None:
            call.streaming()

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._core.calls.pop(run_id, None)
        ignored = self._core.ignored.pop(run_id, None)
        _unclaim(run_id, self)
        if call is None and ignored is not None:
            if not self._warned:
                self._warned = True
                log.warning(
                    "tollgate: a budget refused a LangChain call that ran anyway: an async callback "
                    "handler cannot stop a sync invoke(); use TollgateCallbackHandler or guard()"
                )
            request, tags = ignored
            call = gate.observe(request, note="block_ignored", tags=tags)
        if call is None:
            return
        await call.afinish(self._core.outcome(response))

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._core.calls.pop(run_id, None)
        self._core.ignored.pop(run_id, None)
        _unclaim(run_id, self)
        if call is not None:
            await call.afail(error)
