"""``TollgateMiddleware``: tollgate in a LangChain v1 agent (``create_agent(..., middleware=[...])``).

Each model call of the agent loop goes through the gate (``wrap_model_call`` /
``awrap_model_call``): a block raises ``BudgetExceeded`` out of the agent, and the other
actions edit the request with ``request.override(...)``: ``model=`` (downgrade, a copy of the
agent's model with its name swapped, or the object given in ``models=``), ``model_settings=``
(clamp: ``max_tokens``, which ``ChatOpenAI`` sends as ``max_completion_tokens``) and
``messages=`` (truncate; the system message is kept by the agent, apart from the list).
Needs ``langchain>=1.0`` (``pip install tollgate-langchain[agents]``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.language_models import BaseChatModel

from tollgate import gate
from tollgate.failures import secrets_of
from tollgate.providers.base import NATIVE, native_items
from tollgate.request import LLMRequest
from tollgate.tags import track
from tollgate_langchain import _translate as tr
from tollgate_langchain.guard import Guard


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


class TollgateMiddleware(AgentMiddleware):
    """Budget every model call of a LangChain v1 agent.

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
    """

    def __init__(
        self, *, models: Mapping[str, BaseChatModel] | None = None, provider: str | None = None
    ) -> None:
        super().__init__()
        self.models = dict(models or {})
        self.provider = provider

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
            call.finish(tr.outcome(_last_ai(response)))
        return response

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> Any:
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
            await call.afinish(tr.outcome(_last_ai(response)))
        return response
