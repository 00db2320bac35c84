"""Cost assertions in a pytest test: fail the build when a feature gets more expensive.

Run: python -m pytest examples/test_cost_assertion.py     (offline: no API key, no network)

``tollgate.report().assert_under(usd=..., **tags)`` raises AssertionError with the numbers
when the matching calls spent more. Offline, the OpenAI SDK talks to ``tollgate.demo.StandIn``.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

import tollgate
from tollgate.demo import StandIn, http_library


@pytest.fixture
def client() -> Iterator[openai.OpenAI]:
    tollgate.reset()  # an empty in-memory ledger for each test
    http = http_library("openai")  # httpx, or httpx2 for openai 3.x
    client = http.Client(transport=http.MockTransport(StandIn()))
    yield tollgate.instrument(openai.OpenAI(api_key="sk-offline", http_client=client))
    tollgate.reset()


def answer_question(client: openai.OpenAI, question: str) -> str:
    """The code under test: a feature that makes two LLM calls."""
    with tollgate.track(feature="search"):
        plan = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"Plan: {question}"}], max_tokens=200
        )
        final = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Answer using {plan.choices[0].message.content}"}],
            max_tokens=200,
        )
    return final.choices[0].message.content or ""


def test_search_stays_under_a_tenth_of_a_cent(client: openai.OpenAI) -> None:
    answer_question(client, "Which contracts expire this year?")
    tollgate.report().assert_under(usd=0.001, calls=2, feature="search")


def test_assert_under_says_what_went_over(client: openai.OpenAI) -> None:
    answer_question(client, "Which contracts expire this year?")
    with pytest.raises(AssertionError, match=r"spend over limit for feature='search': usd \$"):
        tollgate.report().assert_under(usd=0.00001, feature="search")
