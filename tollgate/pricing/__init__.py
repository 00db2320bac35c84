"""Model prices and what calls cost.

The price table is bundled data generated from litellm's cost map
(``scripts/update_prices.py``); it is read on the first :func:`default_table` call, never
at import.

>>> from tollgate.pricing import cost, default_table
>>> from tollgate.request import Usage
>>> price = default_table().lookup("gpt-4o-mini")
>>> cost(price, Usage(input_tokens=1000, output_tokens=200)) > 0
True
"""

from tollgate.pricing.cost import cost, estimate_cost
from tollgate.pricing.table import (
    ModelPrice,
    PriceTable,
    PriceTier,
    ServiceTierPrice,
    default_table,
    has_price,
)

__all__ = [
    "ModelPrice",
    "PriceTable",
    "PriceTier",
    "ServiceTierPrice",
    "cost",
    "default_table",
    "estimate_cost",
    "has_price",
]
