"""What a failed call's record and span may say about the error: no secrets, no prompt text.

An SDK exception's message can quote the API key (a proxy that echoes the ``Authorization``
header back in a 401) or the input (a 400 that repeats the offending prompt). So by default
a failure is described by what identifies it and nothing else::

    AuthenticationError: HTTP 401: invalid_api_key

the exception's type, the HTTP status and the provider's error code (OpenAI's
``error.code``, Anthropic's ``error.details.error_code`` or ``error.type``, google-genai's
``status``). The message is kept only when content capture is on, and even then every
credential-shaped string in it, and any run of 8 or more characters of the client's own
keys, is replaced by ``***``::

    >>> exc = PermissionError("proxy said: Authorization: Bearer abc.def.ghi is not allowed")
    >>> failure_of(exc, capture_content=False).describe()
    'PermissionError'
    >>> failure_of(exc, capture_content=True).describe()
    'PermissionError: proxy said: Authorization: Bearer *** is not allowed'

Nothing here imports an SDK: status and code are read by attribute, defensively, so an
exception object of any shape (a ``__str__`` that raises, a ``code`` property that raises,
a body that is not a dict) gives a :class:`Failure` rather than a second error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

__all__ = ["MASK", "MAX_MESSAGE", "MIN_SECRET", "Failure", "failure_of", "mask", "secrets_of"]

MASK: Final = "***"
"""What a masked credential is replaced by."""

MIN_SECRET: Final = 8
"""A known secret is masked wherever any run of this many of its characters occurs (so a
key echoed as ``sk-...`` plus its last 8 characters is caught); shorter secrets are ignored."""

MAX_MESSAGE: Final = 1000
"""A captured message is cut to this many characters (records and span statuses are one line)."""

_T = TypeVar("_T")

_MAX_DEPTH: Final = 2  # how far secrets_of follows a client's inner clients
_MAX_OBJECTS: Final = 16  # and how many objects it looks at (a mock makes new ones on every read)

# A provider error code is an identifier ("invalid_api_key", "INVALID_ARGUMENT"), never prose.
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}")

_VALUE = r"[^\s\\\"',;&)}\]]+"  # a header or parameter value: up to a space, quote or separator
_SEPARATOR = r"[\\\"']*\s*[:=]\s*[\\\"']*"  # `name: value`, `name=value`, `'name': 'value'`

# Credential shapes, each masked where it occurs. A pattern's group "keep" survives (the header
# name, "Bearer "), the rest of the match becomes MASK.
_PATTERNS: Final = tuple(
    re.compile(p)
    for p in (
        # Header- or parameter-like `name: value` whose name says it is a credential: any value.
        r"(?i)(?P<keep>(?<![A-Za-z0-9])(?:proxy-)?authorization"
        + _SEPARATOR
        + r"(?:(?:bearer|basic|token)\s+)?)"
        + _VALUE,
        r"(?i)(?P<keep>(?<![A-Za-z0-9])(?:x-(?:goog-)?api-key|api[-_ ]?key|apikey|x-auth-token"
        r"|(?:access|auth|refresh|id|session|bearer|api)[-_]?token|client[-_]?secret"
        r"|secret[-_]?(?:access[-_]?)?key|private[-_]?key|passw(?:or)?d|pwd)" + _SEPARATOR + ")" + _VALUE,
        # A long hex/base64-ish value after a word like key, token, secret, password.
        r"(?i)(?P<keep>(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]*(?:key|token|secret|password|credential|signature)s?"
        r"[\"']?[\s:=\"']+)[A-Za-z0-9+/_\-.~=]{20,}",
        r"(?i)(?P<keep>\bbearer\s+)[A-Za-z0-9._~+/=\-]{8,}",  # a bearer token anywhere
        r"(?<![A-Za-z0-9])sk[-_][A-Za-z0-9_\-*.]{6,}",  # OpenAI sk-, sk-proj-; Anthropic sk-ant-
        r"AIza[0-9A-Za-z_\-]{10,}",  # Google API keys
        r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*)?",  # JWTs
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{12,}",  # AWS access key ids
        r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})",  # GitHub
        r"(?<![A-Za-z0-9])xox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
        r"(?P<keep>://)[^/\s:@]+:[^/\s@]+@",  # user:password@ in a URL
    )
)

# Client attributes that hold a credential (openai, anthropic, google-genai; LangChain's
# ChatOpenAI/ChatAnthropic/ChatGoogleGenerativeAI hold pydantic SecretStr values).
_KEY_ATTRIBUTES: Final = (
    "api_key",
    "auth_token",
    "admin_api_key",
    "webhook_secret",
    "webhook_key",
    "openai_api_key",
    "anthropic_api_key",
    "google_api_key",
    "token",  # google.auth credentials (Vertex AI): the current OAuth access token
)
_HEADER_ATTRIBUTES: Final = ("default_headers", "_custom_headers", "headers")
_SECRET_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "x-auth-token"}
)
# Where a client keeps the client that holds the key: an SDK resource's `_client`, google-genai's
# `_api_client` (and its `_http_options`, `_credentials`), LangChain's `root_client`/`client`.
_INNER_ATTRIBUTES: Final = (
    "_client",
    "_api_client",
    "_http_options",
    "_credentials",
    "root_client",
    "root_async_client",
    "client",
    "async_client",
)


@dataclass(frozen=True, slots=True)
class Failure:
    """What may be recorded about an exception.

    ``message`` is ``None`` unless content capture was on, and masked when it is set.
    """

    type: str
    """The exception's class name, e.g. ``"AuthenticationError"``."""
    status: int | None
    """The HTTP status (300-599), when the exception carries one."""
    code: str | None
    """The provider's error code, e.g. ``"invalid_api_key"``, ``"INVALID_ARGUMENT"``."""
    message: str | None
    """The masked one-line message (content capture only)."""

    def describe(self) -> str:
        """The one line for ``CallRecord.error`` and the span status: ``"Type[: HTTP status][:
        code][: message]"``, so the text before the first colon is always the type.

        >>> Failure("AuthenticationError", 401, "invalid_api_key", None).describe()
        'AuthenticationError: HTTP 401: invalid_api_key'
        >>> Failure("ValueError", None, None, "bad input").describe()
        'ValueError: bad input'
        """
        parts = [self.type]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(self.code)
        if self.message:
            parts.append(self.message)
        return ": ".join(parts)


def failure_of(exc: BaseException, *, capture_content: bool, secrets: Sequence[str] = ()) -> Failure:
    """The :class:`Failure` to record for ``exc``; never raises.

    ``capture_content`` keeps the message (masked with :func:`mask` and ``secrets``, typically
    :func:`secrets_of` the client that made the call).

    >>> failure_of(ValueError("the prompt was: my diary"), capture_content=False)
    Failure(type='ValueError', status=None, code=None, message=None)
    """
    name = _plain_str(_get(type(exc), "__name__")) or "Exception"
    status = _guard(_status_of, exc)
    code = _guard(_code_of, exc)
    if code is not None and (code.isdigit() or mask(code, secrets) != code):
        code = None  # a number repeats the status (LiteLLM); a credential-shaped code is no code
    message = _guard(_message_of, exc, secrets) if capture_content else None
    return Failure(type=name, status=status, code=code, message=message)


def mask(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with every credential-shaped string and every run of :data:`MIN_SECRET` or
    more characters of ``secrets`` replaced by :data:`MASK`; never raises.

    >>> mask("401: Incorrect API key provided: sk-proj-abc1********************wxyz.")
    '401: Incorrect API key provided: ***'
    >>> mask("x-api-key: 1234 rejected")
    'x-api-key: *** rejected'
    >>> mask("key ...89abcdef is revoked", secrets=["0123456789abcdef"])
    'key ...*** is revoked'
    """
    try:
        if not isinstance(text, str):
            return ""
        text = _plain_str(text) or ""
        for pattern in _PATTERNS:
            text = pattern.sub(_masked_match, text)
        return _mask_secrets(text, _secret_list(secrets))
    except Exception:  # a bug here must not turn into a leak: give nothing rather than the text
        return MASK


def secrets_of(client: object) -> tuple[str, ...]:
    """The credentials ``client`` holds: an openai/anthropic client's (or resource's) ``api_key``
    and ``auth_token``, a google-genai client's ``_api_client.api_key`` (and OAuth token), a
    LangChain chat model's key, and the ``Authorization``/``x-api-key``-like values of its
    default headers. Reads attributes only (imports no SDK) and never raises.

    >>> class Client:
    ...     api_key = "sk-test-0123456789"
    ...     default_headers = {"Authorization": "Bearer tok-0123456789"}
    >>> secrets_of(Client())
    ('sk-test-0123456789', 'Bearer tok-0123456789', 'tok-0123456789')
    """
    found: dict[str, None] = {}  # insertion-ordered set
    try:
        for value in _walk_secrets(client, _MAX_DEPTH, {}):
            if len(value) >= MIN_SECRET:
                found.setdefault(value)
    except Exception:
        pass
    return tuple(found)


# -- Reading an exception -------------------------------------------------------------------------


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status: ``status_code`` (openai, anthropic, LiteLLM), google-genai's int ``code``,
    an int ``status`` (aiohttp), or the ``response``'s (httpx.HTTPStatusError, requests).

    Only 3xx-5xx: an error event inside a streamed 200 (Anthropic raises it with the stream's
    response) did not fail with that status, and its code says what did."""
    for holder, names in (
        (exc, ("status_code", "code", "status")),
        (_get(exc, "response"), ("status_code", "status")),
    ):
        if holder is None:
            continue
        for name in names:
            status = _http_status(_get(holder, name))
            if status is not None:
                return status
    return None


def _code_of(exc: BaseException) -> str | None:
    """The provider's error code: Anthropic's ``error_code``, OpenAI's ``code``, google-genai's
    ``status``, then the body's ``error.code``/``status``/``type``, then the ``type`` attribute."""
    for value in (_get(exc, "error_code"), _get(exc, "code"), _get(exc, "status")):
        code = _identifier(value)
        if code:
            return code
    body = _mapping(_get(exc, "body"))
    if body is not None:
        error = _mapping(_item(body, "error"))
        error = body if error is None else error
        for key in ("code", "status", "type"):
            code = _identifier(_item(error, key))
            if code:
                return code
    return _identifier(_get(exc, "type"))


def _message_of(exc: BaseException, secrets: Sequence[str]) -> str | None:
    try:
        text = _plain_str(str(exc))
    except Exception:  # a broken __str__: the SDKs' own attribute, if it is a str
        text = _plain_str(_get(exc, "message"))
    if not text:
        return None
    line = " ".join(text[: MAX_MESSAGE * 4].split())  # one line
    cut = len(line) > MAX_MESSAGE or len(text) > MAX_MESSAGE * 4
    line = mask(line[:MAX_MESSAGE], secrets)
    return (line + "…" if cut else line) or None


def _guard(read: Callable[..., _T | None], *args: Any) -> _T | None:
    """``read(*args)``, or None if it raises (whatever the exception object does)."""
    try:
        return read(*args)
    except Exception:
        return None


def _get(obj: object, name: str) -> object:
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _item(mapping: Mapping[object, object], key: str) -> object:
    try:
        return mapping.get(key)
    except Exception:
        return None


def _mapping(value: object) -> Mapping[object, object] | None:
    try:
        return value if isinstance(value, Mapping) else None
    except Exception:  # isinstance() reads __class__, which an object may make raise
        return None


def _http_status(value: object) -> int | None:
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            status = int.__int__(value)  # an int subclass's own methods are not called
            return status if 300 <= status < 600 else None
    except Exception:
        pass
    return None


def _identifier(value: object) -> str | None:
    text = _plain_str(value)
    return text if text is not None and _CODE.fullmatch(text) else None


def _plain_str(value: object) -> str | None:
    """``value`` as an exact ``str`` if it is one (a subclass's own methods are not called)."""
    try:
        return str.__getitem__(value, slice(None)) if isinstance(value, str) else None
    except Exception:
        return None


# -- Masking ----------------------------------------------------------------------------------------


def _masked_match(match: re.Match[str]) -> str:
    keep = match.groupdict().get("keep")
    return (keep or "") + MASK


def _secret_list(secrets: Sequence[str]) -> list[str]:
    if isinstance(secrets, str):  # a single secret passed bare: not its characters
        secrets = (secrets,)
    out = []
    for secret in secrets:
        text = _plain_str(secret)
        if text is not None and len(text) >= MIN_SECRET:
            out.append(text)
    return out


def _mask_secrets(text: str, secrets: list[str]) -> str:
    """Replace every stretch of ``text`` covered by a :data:`MIN_SECRET`-long piece of a secret.

    Repeats until nothing is left: each round shortens the text, and MASK next to what is left
    could (for a secret containing ``*``) form a new piece."""
    grams = {s[i : i + MIN_SECRET] for s in secrets for i in range(len(s) - MIN_SECRET + 1)}
    while grams:
        covered = [False] * len(text)
        for i in range(len(text) - MIN_SECRET + 1):
            if text[i : i + MIN_SECRET] in grams:
                covered[i : i + MIN_SECRET] = [True] * MIN_SECRET
        if not any(covered):
            break
        text = "".join(_runs(text, covered))
    return text


def _runs(text: str, covered: list[bool]) -> Iterator[str]:
    masking = False
    for char, hidden in zip(text, covered, strict=True):
        if hidden and not masking:
            yield MASK
        elif not hidden:
            yield char
        masking = hidden


# -- Reading a client -------------------------------------------------------------------------------


def _walk_secrets(obj: object, depth: int, seen: dict[int, object]) -> Iterator[str]:
    """Depth first; ``seen`` holds the objects looked at (and keeps them alive, so no id is reused)."""
    if depth < 0 or len(seen) >= _MAX_OBJECTS or id(obj) in seen:
        return
    try:
        if obj is None or isinstance(obj, str | bytes | int | float | Mapping):
            return
    except Exception:  # isinstance() reads __class__, which an object may make raise
        return
    seen[id(obj)] = obj
    for name in _KEY_ATTRIBUTES:
        value = _secret_value(_get(obj, name))
        if value:
            yield value
    for name in _HEADER_ATTRIBUTES:
        yield from _header_secrets(_get(obj, name))
    for name in _INNER_ATTRIBUTES:
        yield from _walk_secrets(_get(obj, name), depth - 1, seen)


def _secret_value(value: object) -> str | None:
    """A str, or a pydantic ``SecretStr``'s value."""
    text = _plain_str(value)
    if text is not None:
        return text
    reveal = _get(value, "get_secret_value")
    if callable(reveal):
        try:
            return _plain_str(reveal())
        except Exception:
            return None
    return None


def _header_secrets(headers: object) -> Iterator[str]:
    mapping = _mapping(headers)
    try:
        items = list(mapping.items()) if mapping is not None else []
    except Exception:
        return
    for name, value in items:
        key, text = _plain_str(name), _plain_str(value)
        if key is None or text is None or key.lower() not in _SECRET_HEADERS:
            continue
        yield text
        scheme, _, token = text.partition(" ")
        if token and scheme.lower() in ("bearer", "basic", "token"):
            yield token.strip()
