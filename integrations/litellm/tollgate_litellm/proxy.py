"""A ready-made handler for the LiteLLM proxy's ``config.yaml``.

.. code-block:: yaml

    litellm_settings:
      callbacks: tollgate_litellm.proxy.handler

Importing this module configures tollgate from the environment (``TOLLGATE_STORE``, e.g.
``redis://host:6379/0`` so every proxy worker shares budgets and standing limits;
``TOLLGATE_LEDGER``, e.g. ``sqlite:///tollgate.db``; ``TOLLGATE_ON_UNPRICED``: warn / raise /
ignore) and creates ``handler``, a :class:`~tollgate_litellm.TollgateLogger`. Give every API key
its own standing limit from anywhere that shares the store::

    tollgate.configure(store="redis://host:6379/0")
    tollgate.set_limit(usd=5, per="day", key="api_key")          # $5 a day for every key
    tollgate.set_limit(usd=50, per="month", team="research")     # and a team cap
"""

from __future__ import annotations

import os
from typing import Any

import tollgate
from tollgate_litellm.logger import TollgateLogger


def configure_from_env(environ: Any = os.environ) -> None:
    """``tollgate.configure`` with ``TOLLGATE_STORE`` / ``TOLLGATE_LEDGER`` / ``TOLLGATE_ON_UNPRICED``."""
    options: dict[str, Any] = {}
    for name, option in (
        ("TOLLGATE_STORE", "store"),
        ("TOLLGATE_LEDGER", "ledger"),
        ("TOLLGATE_ON_UNPRICED", "on_unpriced"),
    ):
        value = environ.get(name)
        if value:
            options[option] = value
    if options:
        tollgate.configure(**options)


configure_from_env()
handler = TollgateLogger()
