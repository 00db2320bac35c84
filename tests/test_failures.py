"""tollgate.failures: a failed call's record keeps the error's type, HTTP status and provider code,
never the message unless content capture is on, and never a credential.

The SDK exceptions are the real ones, raised by real clients talking to an httpx mock transport
(the SDK builds them from the response as it would from the provider's), or constructed the way
the SDK constructs them. Fake credentials are assembled at run time so no scanner mistakes this
file for a leak.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tollgate.failures import MASK, MAX_MESSAGE, MIN_SECRET, Failure, failure_of, mask, secrets_of

httpx = pytest.importorskip("httpx")

OPENAI_KEY = "sk-proj-" + "Tq3vR8xZ" * 6
ANTHROPIC_KEY = "sk-ant-api03-" + "Zr7Kp2Qw" * 8
GOOGLE_KEY = "AIza" + "SyB3x9Kq" * 4 + "a1c"
PROMPT = "Dear diary, I buried the treasure under the old oak tree"
CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def pieces(secret: str) -> Iterator[str]:
    """Every run of MIN_SECRET characters of ``secret``: none may survive masking."""
    return (secret[i : i + MIN_SECRET] for i in range(len(secret) - MIN_SECRET + 1))


def leaks(text: str, secret: str) -> bool:
    return any(piece in text for piece in pieces(secret))


# -- Real SDK exceptions -----------------------------------------------------------------------------


def openai_failure(status: int, error: Mapping[str, Any]) -> tuple[Exception, Any]:
    """The exception an OpenAI client raises for ``status`` with body ``{"error": error}``."""
    openai = pytest.importorskip("openai")

    def answer(request: Any) -> Any:
        return httpx.Response(status, json={"error": error})

    http = httpx.Client(transport=httpx.MockTransport(answer))
    client = openai.OpenAI(api_key=OPENAI_KEY, max_retries=0, http_client=http)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}])
    return raised.value, client


def test_openai_401_keeps_type_status_and_code_only() -> None:
    exc, client = openai_failure(
        401,
        {
            "message": f"Incorrect API key provided: {OPENAI_KEY}. You asked: {PROMPT}",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    )
    assert OPENAI_KEY in str(exc) and PROMPT in str(exc)  # what describe_error used to record

    failure = failure_of(exc, capture_content=False)
    assert failure == Failure("AuthenticationError", 401, "invalid_api_key", None)
    assert failure.describe() == "AuthenticationError: HTTP 401: invalid_api_key"

    captured = failure_of(exc, capture_content=True, secrets=secrets_of(client)).describe()
    assert captured.startswith("AuthenticationError: HTTP 401: invalid_api_key: Error code: 401")
    assert "Incorrect API key provided: ***" in captured and PROMPT in captured
    assert not leaks(captured, OPENAI_KEY)


def test_openai_400_quoting_the_prompt_keeps_no_prompt_by_default() -> None:
    exc, _ = openai_failure(
        400,
        {
            "message": f"This model's maximum context length is 8 tokens. Your messages: {PROMPT!r}",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        },
    )
    assert failure_of(exc, capture_content=False).describe() == (
        "BadRequestError: HTTP 400: context_length_exceeded"
    )
    assert PROMPT in (failure_of(exc, capture_content=True).message or "")


def test_openai_error_without_code_falls_back_to_its_type() -> None:
    exc, _ = openai_failure(500, {"message": PROMPT, "type": "server_error", "param": None, "code": None})
    assert failure_of(exc, capture_content=False) == Failure("InternalServerError", 500, "server_error", None)


def test_openai_own_partial_echo_of_the_key_is_masked() -> None:
    echoed = "sk-proj-" + "*" * 20 + OPENAI_KEY[-4:]
    exc, _ = openai_failure(
        401, {"message": f"Incorrect API key provided: {echoed}.", "code": "invalid_api_key"}
    )
    message = failure_of(exc, capture_content=True).message or ""
    assert echoed not in message and OPENAI_KEY[-4:] not in message


def test_openai_timeout_and_connection_errors() -> None:
    openai = pytest.importorskip("openai")
    request = httpx.Request("POST", "https://api.openai.com/v1/chat/completions")
    assert failure_of(openai.APITimeoutError(request), capture_content=False).describe() == "APITimeoutError"
    assert failure_of(openai.APIConnectionError(request=request), capture_content=True).describe() == (
        "APIConnectionError: Connection error."
    )


def anthropic_failure(status: int, body: Mapping[str, Any], **client: Any) -> tuple[Exception, Any]:
    anthropic = pytest.importorskip("anthropic")
    httpx2 = pytest.importorskip("httpx2")

    def answer(request: Any) -> Any:
        return httpx2.Response(status, json=body)

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    raw = anthropic.Anthropic(max_retries=0, http_client=http, **client)
    with pytest.raises(anthropic.APIStatusError) as raised:
        raw.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": PROMPT}]
        )
    return raised.value, raw


def test_anthropic_401_from_a_proxy_echoing_the_header() -> None:
    message = f"invalid x-api-key; got Authorization: Bearer {ANTHROPIC_KEY} for {PROMPT}"
    exc, client = anthropic_failure(
        401,
        {
            "type": "error",
            "error": {"type": "authentication_error", "message": message},
            "request_id": "req_1",
        },
        api_key=ANTHROPIC_KEY,
    )
    assert ANTHROPIC_KEY in str(exc)
    assert failure_of(exc, capture_content=False) == Failure(
        "AuthenticationError", 401, "authentication_error", None
    )

    captured = failure_of(exc, capture_content=True, secrets=secrets_of(client)).describe()
    assert "Authorization: Bearer ***" in captured and PROMPT in captured
    assert not leaks(captured, ANTHROPIC_KEY)


def test_anthropic_specific_error_code_wins_over_the_broad_type() -> None:
    exc, _ = anthropic_failure(
        429,
        {
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": "slow down",
                "details": {"error_code": "ramp_limit_exceeded"},
            },
        },
        api_key=ANTHROPIC_KEY,
    )
    assert (
        failure_of(exc, capture_content=False).describe()
        == "RampLimitExceededError: HTTP 429: ramp_limit_exceeded"
    )


def test_anthropic_error_event_inside_a_streamed_200() -> None:
    anthropic = pytest.importorskip("anthropic")
    httpx2 = pytest.importorskip("httpx2")
    event = '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'

    def answer(request: Any) -> Any:
        sse = f"event: error\ndata: {event}\n\n"
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse.encode())

    raw = anthropic.Anthropic(
        api_key=ANTHROPIC_KEY,
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )
    with pytest.raises(anthropic.APIStatusError) as raised:
        for _ in raw.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass
    assert getattr(raised.value, "status_code", None) == 200  # the stream's status, not the failure's
    assert failure_of(raised.value, capture_content=False).describe() == "APIStatusError: overloaded_error"


def test_anthropic_body_that_is_not_json() -> None:
    anthropic = pytest.importorskip("anthropic")
    httpx2 = pytest.importorskip("httpx2")

    def answer(request: Any) -> Any:
        return httpx2.Response(502, text=f"<html>bad gateway, x-api-key={ANTHROPIC_KEY}</html>")

    raw = anthropic.Anthropic(
        api_key=ANTHROPIC_KEY,
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )
    with pytest.raises(anthropic.APIStatusError) as raised:
        raw.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert failure_of(raised.value, capture_content=False).describe() == "InternalServerError: HTTP 502"
    captured = failure_of(raised.value, capture_content=True).describe()  # no secrets given: by shape
    assert "x-api-key=***" in captured and not leaks(captured, ANTHROPIC_KEY)


def gemini_failure(status: int, body: Any) -> tuple[Exception, Any]:
    genai = pytest.importorskip("google.genai")
    from google.genai import errors, types

    def answer(request: Any) -> Any:
        return httpx.Response(status, json=body)

    options = types.HttpOptions(httpx_client=httpx.Client(transport=httpx.MockTransport(answer)))
    client = genai.Client(api_key=GOOGLE_KEY, http_options=options)
    with pytest.raises(errors.APIError) as raised:
        client.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    return raised.value, client


def test_gemini_invalid_argument() -> None:
    exc, client = gemini_failure(
        400,
        {
            "error": {
                "code": 400,
                "message": f"API key not valid: key={GOOGLE_KEY}; request was {PROMPT}",
                "status": "INVALID_ARGUMENT",
            }
        },
    )
    assert type(exc).__name__ == "ClientError" and GOOGLE_KEY in str(exc)
    assert failure_of(exc, capture_content=False).describe() == "ClientError: HTTP 400: INVALID_ARGUMENT"
    for secrets in ((), secrets_of(client)):  # by shape alone, and as the client's key
        captured = failure_of(exc, capture_content=True, secrets=secrets).describe()
        assert PROMPT in captured and not leaks(captured, GOOGLE_KEY)


def test_gemini_server_error_built_by_the_sdk() -> None:
    pytest.importorskip("google.genai")
    from google.genai import errors

    response = httpx.Response(
        503,
        json={"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
        request=httpx.Request("POST", "https://generativelanguage.googleapis.com/v1beta/models/x"),
    )
    with pytest.raises(errors.ServerError) as raised:
        errors.APIError.raise_for_response(response)
    assert failure_of(raised.value, capture_content=False) == Failure("ServerError", 503, "UNAVAILABLE", None)


@pytest.fixture
def litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of LiteLLM's price map
    return pytest.importorskip("litellm")


def test_litellm_exceptions(litellm: Any) -> None:
    auth = litellm.AuthenticationError(
        message=f"OpenAIException - Incorrect API key provided: {OPENAI_KEY}",
        llm_provider="openai",
        model="gpt-4o",
    )
    assert failure_of(auth, capture_content=False).describe() == "AuthenticationError: HTTP 401"
    captured = failure_of(auth, capture_content=True).describe()
    assert "litellm.AuthenticationError" in captured and not leaks(captured, OPENAI_KEY)

    window = litellm.ContextWindowExceededError(
        message=PROMPT, llm_provider="anthropic", model="claude-haiku-4-5"
    )
    assert failure_of(window, capture_content=False).describe() == "ContextWindowExceededError: HTTP 400"

    bad = litellm.BadRequestError(
        message=PROMPT,
        llm_provider="openai",
        model="gpt-4o",
        body={"message": PROMPT, "type": "invalid_request_error", "code": "context_length_exceeded"},
    )
    assert (
        failure_of(bad, capture_content=False).describe()
        == "BadRequestError: HTTP 400: context_length_exceeded"
    )

    limited = litellm.RateLimitError(message=PROMPT, llm_provider="openai", model="gpt-4o")
    assert (
        failure_of(limited, capture_content=False).describe() == "RateLimitError: HTTP 429"
    )  # code "429" dropped


def test_httpx_errors_and_keys_in_urls() -> None:
    url = f"https://generativelanguage.googleapis.com/v1beta/models/x:generateContent?key={GOOGLE_KEY}"
    response = httpx.Response(403, request=httpx.Request("POST", url))
    with pytest.raises(httpx.HTTPStatusError) as raised:
        response.raise_for_status()
    assert failure_of(raised.value, capture_content=False).describe() == "HTTPStatusError: HTTP 403"
    captured = failure_of(raised.value, capture_content=True).describe()
    assert "?key=***" in captured and not leaks(captured, GOOGLE_KEY)

    connect = httpx.ConnectError("[Errno 111] Connection refused", request=httpx.Request("GET", url))
    assert failure_of(connect, capture_content=False).describe() == "ConnectError"


def test_plain_python_errors() -> None:
    assert failure_of(ValueError(PROMPT), capture_content=False) == Failure("ValueError", None, None, None)
    assert failure_of(KeyError(PROMPT), capture_content=False).describe() == "KeyError"
    assert failure_of(ValueError(PROMPT), capture_content=True).describe() == f"ValueError: {PROMPT}"
    assert failure_of(ValueError(), capture_content=True).describe() == "ValueError"  # no empty message
    assert failure_of(ValueError("two\nlines\t here"), capture_content=True).message == "two lines here"


def test_a_long_message_is_cut() -> None:
    message = failure_of(ValueError("x" * (MAX_MESSAGE * 10)), capture_content=True).message or ""
    assert message == "x" * MAX_MESSAGE + "…"


# -- Masking ------------------------------------------------------------------------------------------

AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "a1B2c3D4e5" * 4
JWT = (
    "eyJhbGciOiJIUzI1NiJ9"
    + "."
    + "eyJzdWIiOiIxMjM0NTY3ODkwIn0"
    + "."
    + "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

SHAPES = [
    # (text, what must not survive, what must)
    (f"Incorrect API key provided: {OPENAI_KEY}.", OPENAI_KEY, "Incorrect API key provided: "),
    (f"key {ANTHROPIC_KEY} is disabled", ANTHROPIC_KEY, "is disabled"),
    (f"API key not valid {GOOGLE_KEY}", GOOGLE_KEY, "API key not valid"),
    ("Authorization: Bearer abc.def-123_XYZ was rejected", "abc.def-123_XYZ", "Authorization: Bearer ***"),
    ("got bearer tok_0123456789abcdef", "tok_0123456789abcdef", "bearer ***"),
    ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "Authorization: Basic ***"),
    ("headers={'x-api-key': 'short1', 'accept': 'json'}", "short1", "'x-api-key': '***'"),
    ('{"api_key": "hunter22"}', "hunter22", '"api_key": "***"'),
    ('{\\"api-key\\": \\"hunter22\\"}', "hunter22", "api-key"),
    ("POST /v1?api_key=s3cr3tv4lue&model=x", "s3cr3tv4lue", "&model=x"),
    ("password=pa55 user=bob", "pa55", "user=bob"),
    (f"jwt {JWT} expired", JWT.split(".")[1], "expired"),
    (f"aws {AWS} denied", AWS, "denied"),
    (f"token {GITHUB} revoked", GITHUB, "revoked"),
    (f"client_secret: {HEX}", HEX, "client_secret: ***"),
    (f"invalid token {HEX}", HEX, "invalid token ***"),
    (f"signing key={HEX[:40]}", HEX[:40], "signing key=***"),
    ("redis://default:hunter22@cache:6379/0", "hunter22", "redis://***cache:6379/0"),
]


@pytest.mark.parametrize(("text", "secret", "kept"), SHAPES, ids=[s[2][:20] for s in SHAPES])
def test_every_credential_shape_is_masked(text: str, secret: str, kept: str) -> None:
    masked = mask(text)
    assert secret not in masked and MASK in masked
    assert kept in masked


def test_ordinary_text_is_left_alone() -> None:
    text = (
        "This model's maximum context length is 8192 tokens; max_tokens: 4096; task-runner sk-learn KeyError"
    )
    assert mask(text) == text


def test_known_secrets_are_masked_in_part_too() -> None:
    secret = "s3cret-" + "0123456789abcdef"
    assert mask(f"key ...{secret[-8:]} revoked", [secret]) == f"key ...{MASK} revoked"
    assert mask(f"key {secret[:10]}... revoked", [secret]) == f"key {MASK}... revoked"
    assert mask(f"prefix{secret}suffix", [secret]) == f"prefix{MASK}suffix"
    assert mask(f"ends in {secret[-4:]}", [secret]) == f"ends in {secret[-4:]}"  # 4 chars say nothing
    assert mask(f"a bare {secret}", secret) == f"a bare {MASK}"  # one secret passed as a str
    assert mask("xxxxxxxx", ["short", "", "x"]) == "xxxxxxxx"  # secrets under MIN_SECRET are ignored


def test_mask_never_raises() -> None:
    assert mask(None) == ""  # type: ignore[arg-type]
    assert mask("abc", [None, 3, b"bytes-secret"]) == "abc"  # type: ignore[list-item]


@settings(max_examples=300, deadline=None)
@given(
    before=st.text(),
    after=st.text(),
    secret=st.text(min_size=MIN_SECRET, max_size=80),
    others=st.lists(st.text(max_size=30), max_size=3),
)
def test_an_inserted_secret_never_gets_out(before: str, after: str, secret: str, others: list[str]) -> None:
    masked = mask(before + secret + after, [*others, secret])
    assert not leaks(masked, secret)


@settings(max_examples=300, deadline=None)
@given(
    before=st.text(),
    after=st.text(),
    secret=st.text(min_size=MIN_SECRET, max_size=80),
    cut=st.integers(min_value=0, max_value=40),
)
def test_a_partly_echoed_secret_never_gets_out(before: str, after: str, secret: str, cut: int) -> None:
    echoed = secret[min(cut, len(secret) - MIN_SECRET) :]  # "sk-...<the last n characters>"
    assert not leaks(mask(f"{before} ...{echoed} {after}", [secret]), secret)


ALNUM = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=24, max_size=60
)
UPPER = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=16, max_size=16)
SHAPED = st.one_of(
    ALNUM.map(lambda s: ("sk-", s)),
    ALNUM.map(lambda s: ("sk-proj-", s)),
    ALNUM.map(lambda s: ("sk-ant-api03-", s)),
    ALNUM.map(lambda s: ("AIza", s)),
    ALNUM.map(lambda s: ("ghp_", s)),
    ALNUM.map(lambda s: ("Bearer ", s)),
    ALNUM.map(lambda s: ("Authorization: ", s)),
    ALNUM.map(lambda s: ("x-api-key=", s)),
    ALNUM.map(lambda s: ("secret_token: ", s)),
    ALNUM.map(lambda s: ("eyJ" + s[:8] + ".eyJ", s)),
    UPPER.map(lambda s: ("AKIA", s)),
)


@settings(max_examples=300, deadline=None)
@given(before=st.text(), after=st.text(), shaped=SHAPED)
def test_credential_shapes_never_get_out_of_any_text(
    before: str, after: str, shaped: tuple[str, str]
) -> None:
    prefix, body = shaped
    assume(body not in before and body not in after)  # hypothesis likes to repeat a value
    assert body not in mask(f"{before} {prefix}{body} {after}")


# -- Hostile exception objects ------------------------------------------------------------------------


class Boom(Exception):
    pass


def _raise(*_: object) -> Any:
    raise Boom("no")


class BrokenStr(Exception):
    __str__ = _raise


class NotAStr(Exception):
    def __str__(self) -> Any:
        return 42


class RaisingAttributes(Exception):
    code = property(_raise)
    status_code = property(_raise)
    status = property(_raise)
    body = property(_raise)
    response = property(_raise)
    error_code = property(_raise)
    type = property(_raise)
    message = property(_raise)
    __str__ = _raise


class EverythingRaises(Exception):
    def __getattribute__(self, name: str) -> Any:
        raise Boom(name)


class HostileMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise Boom(key)

    def __iter__(self) -> Iterator[str]:
        raise Boom("iter")

    def __len__(self) -> int:
        raise Boom("len")

    def get(self, key: str, default: Any = None) -> Any:
        raise Boom(key)


class SneakyStr(str):
    def __str__(self) -> str:
        raise Boom("str")

    def __eq__(self, other: object) -> bool:
        raise Boom("eq")

    __hash__ = str.__hash__


class SneakyInt(int):
    def __int__(self) -> int:
        raise Boom("int")


class ClassRaises:
    """isinstance() itself raises on this (it falls back to reading ``__class__``)."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise Boom("class")


class Odd(Exception):
    def __init__(self, **attributes: Any) -> None:
        super().__init__("odd")
        self.__dict__.update(attributes)


class Meta(type):
    @property
    def __name__(cls) -> str:  # type: ignore[override]
        raise Boom("name")


class Nameless(Exception, metaclass=Meta):
    pass


def hostile() -> list[BaseException]:
    """Made per test: pytest itself cannot look at some of these at collection."""
    return [
        BrokenStr(),
        NotAStr(),
        RaisingAttributes(),
        EverythingRaises(),
        Nameless("x"),
        Odd(body="not a dict", code=["a list"], status_code="401"),
        Odd(body=HostileMapping(), response=HostileMapping()),
        Odd(body={"error": HostileMapping()}),
        Odd(body={"error": "a string"}, code=SneakyStr("invalid_api_key"), status_code=SneakyInt(401)),
        Odd(code=True, status_code=True),
        Odd(status_code=10**100, code="x" * 500),
        Odd(code="has spaces in it", status="a sentence, with a prompt"),
        Odd(code=OPENAI_KEY),
        Odd(response=type("R", (), {"status_code": property(_raise)})()),
        Odd(body=ClassRaises(), code=ClassRaises(), status_code=ClassRaises(), response=ClassRaises()),
        Odd(body={"error": ClassRaises(), "code": "still_read"}, status_code=429),
    ]


@pytest.mark.parametrize("index", range(len(hostile())))
@pytest.mark.parametrize("capture", [False, True])
def test_hostile_exceptions_never_make_failure_of_raise(index: int, capture: bool) -> None:
    failure = failure_of(hostile()[index], capture_content=capture, secrets=[OPENAI_KEY])
    line = failure.describe()
    assert isinstance(line, str) and line.split(":", 1)[0] == failure.type
    assert failure.status is None or 300 <= failure.status < 600
    assert failure.code is None or (CODE.fullmatch(failure.code) and len(failure.code) <= 80)
    assert not leaks(line, OPENAI_KEY)


def test_hostile_values_are_read_as_plain_values() -> None:
    failure = failure_of(hostile()[8], capture_content=False)
    assert failure == Failure("Odd", 401, "invalid_api_key", None)
    assert type(failure.code) is str and type(failure.status) is int
    assert failure_of(hostile()[4], capture_content=False).type == "Exception"  # its name raised
    assert failure_of(hostile()[11], capture_content=False).code is None  # prose is not a code
    assert failure_of(hostile()[12], capture_content=False).code is None  # nor is a key
    with pytest.raises(Boom):
        isinstance(ClassRaises(), str)
    assert failure_of(hostile()[15], capture_content=False) == Failure("Odd", 429, "still_read", None)


ANYTHING = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    attributes=st.dictionaries(
        st.sampled_from(
            ["code", "status", "status_code", "error_code", "type", "body", "response", "message"]
        ),
        ANYTHING,
    ),
    capture=st.booleans(),
)
def test_any_attribute_values_give_a_failure(attributes: dict[str, Any], capture: bool) -> None:
    failure = failure_of(Odd(**attributes), capture_content=capture)
    assert failure.type == "Odd" and failure.describe().startswith("Odd")
    assert failure.status is None or (type(failure.status) is int and 300 <= failure.status < 600)
    assert failure.code is None or CODE.fullmatch(failure.code)


# -- secrets_of ----------------------------------------------------------------------------------------


def test_secrets_of_openai_clients_and_resources() -> None:
    openai = pytest.importorskip("openai")
    import tollgate

    client = openai.OpenAI(api_key=OPENAI_KEY, default_headers={"x-api-key": "proxy-key-0123456789"})
    assert secrets_of(client) == (OPENAI_KEY, "proxy-key-0123456789")
    assert secrets_of(client.chat.completions) == secrets_of(client)  # a resource reaches its client
    assert secrets_of(tollgate.instrument(client)) == secrets_of(client)
    assert secrets_of(openai.AsyncOpenAI(api_key=OPENAI_KEY)) == (OPENAI_KEY,)


def test_secrets_of_anthropic_clients() -> None:
    anthropic = pytest.importorskip("anthropic")
    assert ANTHROPIC_KEY in secrets_of(anthropic.Anthropic(api_key=ANTHROPIC_KEY))
    token = "oauth-" + "Kq9z" * 6
    assert token in secrets_of(anthropic.Anthropic(auth_token=token))


def test_secrets_of_google_genai_clients() -> None:
    genai = pytest.importorskip("google.genai")
    from google.oauth2.credentials import Credentials

    client = genai.Client(api_key=GOOGLE_KEY)
    assert secrets_of(client) == (GOOGLE_KEY,)
    assert secrets_of(client.models) == secrets_of(client.aio) == (GOOGLE_KEY,)
    token = "ya29." + "Xw3r" * 10
    credentials = Credentials(token=token)  # type: ignore[no-untyped-call]
    vertex = genai.Client(vertexai=True, project="p", location="us-central1", credentials=credentials)
    assert token in secrets_of(vertex)


def test_secrets_of_a_langchain_model() -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    model = langchain_openai.ChatOpenAI(model="gpt-4o-mini", api_key=OPENAI_KEY)  # a pydantic SecretStr
    assert OPENAI_KEY in secrets_of(model)


def test_secrets_of_never_raises() -> None:
    from unittest.mock import MagicMock

    assert secrets_of(None) == ()
    assert secrets_of(object()) == ()
    assert secrets_of(EverythingRaises()) == ()
    assert secrets_of(Odd(api_key=SneakyStr("sneaky-key-012345"), default_headers=HostileMapping())) == (
        "sneaky-key-012345",
    )
    assert secrets_of(Odd(api_key="short", default_headers={"Authorization": 3})) == ()
    assert secrets_of(MagicMock()) == ()
    loop = Odd(api_key="loop-key-0123456789")
    loop.__dict__["_client"] = loop
    assert secrets_of(loop) == ("loop-key-0123456789",)
