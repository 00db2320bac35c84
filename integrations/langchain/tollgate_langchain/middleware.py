"""``TollgateMiddleware``: tollgate in a LangChain v1 agent (``create_agent(..., middleware=[...])``).

Each model call of the agent loop goes through the gate (``wrap_model_call`` /
``awrap_model_call``): a block raises ``BudgetExceeded`` out of the agent (or, with
``exit_behavior="end"``, ends the run with a final ``AIMessage`` naming the budget, as
LangChain's own ``ModelCallLimitMiddleware`` does), and the other actions edit the request
with ``request.override(...)``: ``model=`` (downgrade, a copy of the agent's model with its
name swapped, or the object given in ``models=``), ``model_settings=`` (clamp:
``max_tokens``, which ``ChatOpenAI`` sends as ``max_completion_tokens``) and ``messages=``
(truncate; the system message is kept by the agent, apart from the list).
Needs ``langchain>=1.0`` (``pip install tollgate-langchain[agents]``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse, hook_config
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from tollgate import gate
from tollgate.errors import BudgetExceeded
from tollgate.failures import secrets_of
from tollgate.providers.base import NATIVE, native_items
from tollgate.request import LLMRequest
from tollgate.tags import track
from tollgate_langchain import _translate as tr
from tollgate_langchain.guard import Guard

ExitBehavior = Literal["error", "end"]
"""What :class:`TollgateMiddleware` does when tollgate refuses a model call (see its docstring)."""

EXIT_BEHAVIORS: tuple[ExitBehavior, ...] = ("error", "end")


def _last_ai(response: Any) -> Any:
    try:
        result = getattr(response, "result", None)
        if result is None:  # ExtendedModelResponse
            result = getattr(getattr(response, "model_response", None), "result", None)
        for message in reversed(result or []):
            if getattr(message, "type", None) == "ai":
                return message
    except Exception:  # a response of a shape tollgate does not know: the gate estimates
        pass
    return None


def _system(request: ModelRequest) -> list[Any]:
    """The agent's system message, kept apart from the message list: ``system_message`` since
    langchain 1.1, a ``system_prompt`` string before."""
    message = getattr(request, "system_message", None)
    if message is None and getattr(request, "system_prompt", None):
        from langchain_core.messages import SystemMessage

        message = SystemMessage(request.system_prompt)
    return [message] if message is not None else []


def _amount(value: float, unit: str, *, singular: bool | None = None) -> str:
    """``$0.0000183``, ``1,200 tokens``, ``3 calls``: an amount of a budget's unit, for people."""
    if unit == "usd":
        return f"${float(value):.8f}".rstrip("0").rstrip(".") if value else "$0"
    count = round(float(value))
    noun = unit.replace("_", " ")
    if (count == 1 if singular is None else singular) and noun.endswith("s"):
        noun = noun[:-1]
    return f"{count:,} {noun}"


def _used(exc: BudgetExceeded) -> str:
    """``$0.0000183 of $0.00005 used``, ``3 of 3 calls used``."""
    unit = exc.unit
    if unit == "usd":
        used = f"{_amount(exc.spent, unit)} of {_amount(exc.limit, unit)} used"
    else:  # the unit named once: "2 of 2 calls", "1 of 1 tool call", "2 of 1 tool calls"
        one = round(exc.limit) == 1 and round(exc.spent) <= 1
        used = f"{round(exc.spent):,} of {_amount(exc.limit, unit, singular=one)} used"
    if exc.reserved:
        used += f", {_amount(exc.reserved, unit)} reserved by calls in flight"
    return used


def stop_text(exc: BudgetExceeded) -> str:
    """The final message of a run that a budget ended: which budget, how much of it was used.

    >>> stop_text(BudgetExceeded("calls=3", limit=3, spent=3, requested=1, unit="calls"))
    "Stopped: budget 'calls=3' reached (3 of 3 calls used)."
    >>> print(stop_text(BudgetExceeded("usd=5e-05", limit=5e-5, spent=1.83e-5, requested=4.2e-5)))
    ... # doctest: +NORMALIZE_WHITESPACE
    Stopped: budget 'usd=5e-05' has too little left for the next model call
    ($0.0000183 of $0.00005 used; the call needs $0.000042).
    """
    if exc.budget == "unknown":  # refused without a deciding budget (an edit it could not apply)
        return "Stopped: tollgate refused the next model call."
    if exc.action == "raise":  # the call ran and crossed the cap: it is the run's last
        return f"Stopped: budget {exc.budget!r} exceeded ({_used(exc)})."
    if exc.spent + exc.reserved >= exc.limit:
        return f"Stopped: budget {exc.budget!r} reached ({_used(exc)})."
    return (
        f"Stopped: budget {exc.budget!r} has too little left for the next model call "
        f"({_used(exc)}; the call needs {_amount(exc.requested, exc.unit)})."
    )


def _facts(exc: BudgetExceeded) -> dict[str, Any]:
    """The budget facts of the final message's ``response_metadata["tollgate"]``."""
    return {
        "budget": exc.budget,
        "unit": exc.unit,
        "limit": exc.limit,
        "spent": exc.spent,
        "reserved": exc.reserved,
        "requested": exc.requested,
        "action": exc.action,
        "error": str(exc),
    }


def _result(response: Any) -> tuple[list[BaseMessage], Any]:
    """The messages and structured response of what the inner handler returned."""
    if isinstance(response, AIMessage):
        return [response], None
    response = getattr(response, "model_response", response)  # an ExtendedModelResponse
    return list(getattr(response, "result", None) or []), getattr(response, "structured_response", None)


def _is_stop(message: Any) -> bool:
    """The final message :func:`_ended` writes."""
    return (
        isinstance(message, AIMessage) and "tollgate" in message.response_metadata and not message.tool_calls
    )


def _ended(
    exc: BudgetExceeded, answered: Sequence[BaseMessage] = (), structured: Any = None
) -> ModelResponse:
    """The model node's result for a run a budget ends: the messages of a call that ran
    (``answered``: an ``on_exceed="raise"`` overrun), an error ``ToolMessage`` for each tool call
    they asked for (so no tool runs and the thread's history stays valid for its next turn, as
    LangChain's ``ToolCallLimitMiddleware`` leaves it), then the final ``AIMessage``, which the
    ``after_model`` hook of :class:`_EndingMiddleware` turns into a jump to the end."""
    messages = list(answered)
    last = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    if last is not None:
        done = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
        messages += [
            ToolMessage(
                content=f"Not run: tollgate budget {exc.budget!r} exceeded; the agent stopped.",
                tool_call_id=tool_call["id"],
                name=tool_call["name"],
                status="error",
            )
            for tool_call in last.tool_calls
            if tool_call["id"] not in done
        ]
    messages.append(AIMessage(content=stop_text(exc), response_metadata={"tollgate": _facts(exc)}))
    return ModelResponse(result=messages, structured_response=structured)


class TollgateMiddleware(AgentMiddleware):
    """Budget every model call of a LangChain v1 agent.

    ``exit_behavior`` says what happens when tollgate refuses a model call
    (:class:`~tollgate.BudgetExceeded`: a ``usd`` / ``tokens`` budget, an agent-run limit such
    as ``calls=``, or an ``on_exceed="raise"`` budget the call just crossed), as in LangChain's
    ``ModelCallLimitMiddleware``:

    - ``"error"`` (default): ``BudgetExceeded`` propagates out of ``agent.invoke``;
    - ``"end"``: the run ends without an exception. Its last message is an ``AIMessage`` that
      names the budget (``"Stopped: budget 'calls=3' reached (3 of 3 calls used)."``), with the
      budget's facts in ``response_metadata["tollgate"]``; no tool runs and no model is called
      after it. The refused call is recorded (status ``"blocked"``) as under ``"error"``. A call
      that ran and crossed an ``on_exceed="raise"`` budget, or asked for tool calls past a
      ``tool_calls=`` limit, keeps its answer; the tool calls it asked for are answered with
      error ``ToolMessage`` s instead of being run.

    :class:`~tollgate.RateLimited` is raised under both: a rate limit is transient (it says when
    to retry), so ending the run would turn a wait of seconds into a final answer; the caller,
    or a retrying middleware placed before this one (``ModelRetryMiddleware(retry_on=...)``),
    can wait it out.
    Configuration and store errors (``UnpricedModelError``, ``StoreUnavailable``) are raised too.

    >>> from langchain.agents import create_agent
    >>> from langchain_core.language_models import GenericFakeChatModel
    >>> from langchain_core.messages import AIMessage
    >>> import tollgate
    >>> _ = tollgate.reset(), tollgate.configure(on_unpriced="ignore")
    >>> agent = create_agent(GenericFakeChatModel(messages=iter([AIMessage("done")])),
    ...                      middleware=[TollgateMiddleware()])
    >>> agent.invoke({"messages": [("user", "go")]})["messages"][-1].content
    'done'
    >>> [row["calls"] for row in tollgate.report()]
    [1]
    >>> agent = create_agent(GenericFakeChatModel(messages=iter([AIMessage("done")])),
    ...                      middleware=[TollgateMiddleware(exit_behavior="end")])
    >>> with tollgate.budget(tokens=1):
    ...     last = agent.invoke({"messages": [("user", "go")]})["messages"][-1]
    >>> last.content.startswith("Stopped: budget 'tokens=1'"), last.response_metadata["tollgate"]["unit"]
    (True, 'tokens')
    """

    def __new__(cls, *args: Any, exit_behavior: Any = "error", **kwargs: Any) -> TollgateMiddleware:
        # LangChain adds a graph node for each hook a middleware's class overrides: only the
        # "end" flavour needs one (its after_model), so "error" leaves the agent's graph as it was.
        if cls is TollgateMiddleware and exit_behavior == "end":
            cls = _EndingMiddleware
        return super().__new__(cls)

    def __init__(
        self,
        *,
        models: Mapping[str, BaseChatModel] | None = None,
        provider: str | None = None,
        exit_behavior: ExitBehavior = "error",
    ) -> None:
        super().__init__()
        if exit_behavior not in EXIT_BEHAVIORS:
            raise ValueError(
                f"exit_behavior must be one of {', '.join(map(repr, EXIT_BEHAVIORS))}, not {exit_behavior!r}"
            )
        self.models = dict(models or {})
        self.provider = provider
        self.exit_behavior: ExitBehavior = exit_behavior

    def _guard(self, request: ModelRequest) -> Guard:
        return Guard(request.model, models=self.models, provider=self.provider, tags=False)

    def _request(self, request: ModelRequest) -> LLMRequest:
        settings = dict(request.model_settings or {})
        model = request.model
        ls = tr.ls_params(model, settings)
        system = tr.neutral_messages(_system(request))
        for message in system:
            message[NATIVE] = ()  # kept by the agent apart from the message list
        cap = tr.output_cap(settings) or tr.output_cap(
            {k: getattr(model, k, None) for k in ("max_completion_tokens", "max_tokens", "max_output_tokens")}
        )
        return tr.request_for(
            provider=self.provider
            or tr.provider_name(ls.get("ls_provider"), type(model).__name__, tr.model_base_url(model)),
            model=tr.model_name(model, settings),
            messages=[*system, *tr.neutral_messages(request.messages)],
            max_output_tokens=cap or tr.output_cap(ls),
            tools=tr.tool_schemas(request.tools),
            base_url=tr.model_base_url(model),
        )

    def _edit(self, call: gate.Call, request: ModelRequest) -> ModelRequest:
        decision = call.decision
        overrides: dict[str, Any] = {}
        if decision.model != call.request.model:
            overrides["model"] = self._guard(request).model_for(decision.model)
        if decision.max_output_tokens is not None:
            settings = dict(request.model_settings or {})
            key = "max_completion_tokens" if "max_completion_tokens" in settings else "max_tokens"
            settings.pop("max_tokens", None)
            settings.pop("max_completion_tokens", None)
            settings[key] = decision.max_output_tokens
            overrides["model_settings"] = settings
        if decision.messages is not None:
            overrides["messages"] = list(native_items(decision.messages))
        return request.override(**overrides) if overrides else request

    @staticmethod
    def _scope() -> track:
        """The agent run's LangChain metadata and ``"name=value"`` tags, as tollgate tags."""
        try:
            from langgraph.config import get_config

            config = get_config()
        except Exception:  # outside a graph run
            return track()
        return track(**tr.tags_from(config.get("metadata"), config.get("tags")))

    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> Any:
        ending = self.exit_behavior == "end"
        try:
            with self._scope():
                call = gate.preflight(
                    lambda: self._request(request),
                    provider=self.provider or "unknown",
                    secrets=secrets_of(request.model),
                )
            with call:
                edited = call.edit(self._edit, call, request)
                with call.sending():
                    response = handler(edited)
                call.finish(tr.outcome(_last_ai(response)), raise_overrun=not ending)
        except BudgetExceeded as exc:
            if not ending:
                raise
            return _ended(exc)
        return self._answered(call, response)

    def _answered(self, call: gate.Call, response: Any) -> Any:
        """The model node's result for a call that ran: its response or, under "end", the end of
        the run when the call crossed an ``on_exceed="raise"`` cap or a ``tool_calls`` limit."""
        if self.exit_behavior == "end" and (stop := call.overrun or call.crossed("tool_calls")) is not None:
            return _ended(stop, *_result(response))
        return response

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> Any:
        ending = self.exit_behavior == "end"
        try:
            with self._scope():
                call = await gate.apreflight(
                    lambda: self._request(request),
                    provider=self.provider or "unknown",
                    secrets=secrets_of(request.model),
                )
            async with call:
                edited = call.edit(self._edit, call, request)
                with call.sending():
                    response = await handler(edited)
                await call.afinish(tr.outcome(_last_ai(response)), raise_overrun=not ending)
        except BudgetExceeded as exc:
            if not ending:
                raise
            return _ended(exc)
        return self._answered(call, response)


class _EndingMiddleware(TollgateMiddleware):
    """``TollgateMiddleware(exit_behavior="end")``: the same, with an ``after_model`` hook that
    jumps to the end of the run after the final message.

    A jump is what ends the loop whatever else the agent has: the model node's last message
    without tool calls ends it only when the agent has tools and no structured output, and a
    ``jump_to`` written by the model node itself (``ExtendedModelResponse``, which langchain 1.0
    lacks) is gone by the time another middleware's ``after_model`` hook has run.
    """

    @property
    def name(self) -> str:  # its nodes are TollgateMiddleware's: "TollgateMiddleware.after_model"
        return TollgateMiddleware.__name__

    @hook_config(can_jump_to=["end"])
    def after_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        messages = state.get("messages") or ()
        return {"jump_to": "end"} if messages and _is_stop(messages[-1]) else None

    @hook_config(can_jump_to=["end"])
    async def aafter_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return self.after_model(state, runtime)
