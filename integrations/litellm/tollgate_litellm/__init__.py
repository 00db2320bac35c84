"""tollgate for LiteLLM: budgets, cost attribution and telemetry for the SDK, the Router and the proxy.

>>> from tollgate_litellm import TollgateLogger
>>> import litellm
>>> litellm.callbacks = [TollgateLogger()]   # doctest: +SKIP

- :class:`TollgateLogger`: a LiteLLM ``CustomLogger``; gates async SDK calls (``acompletion``,
  ``aembedding``, ``aresponses``, streams), Router calls and proxy requests; records plain sync
  ``completion`` calls (observe-only: no LiteLLM hook can edit or stop them);
- :func:`completion` / :func:`acompletion`: thin wrappers that gate a call themselves (every
  action, sync included; ``router=`` for a ``litellm.Router``).

All budget logic stays in tollgate's gate; this package only translates.
"""

from __future__ import annotations

from tollgate_litellm.logger import TollgateLogger
from tollgate_litellm.wrappers import acompletion, completion

__all__ = ["TollgateLogger", "acompletion", "completion"]
