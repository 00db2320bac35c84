"""Usage fields tollgate does not know: the drift alarm's eyes.

Each adapter lists the usage fields it reads or knows to carry no charge (:data:`Known`);
:func:`unknown_fields` returns every other field a response's usage carries with a value, as
sent, keyed by its dotted path (``server_tool_use.code_execution_requests``). A field whose
known values are listed (``service_tier``: standard, priority, batch) is unknown when it
carries another value: a new tier is a new price. The gate warns once per (provider, field),
keeps them in the record (``usage.unknown``), counts them in the report and names them on the
span, so a new billing dimension is seen the day it appears, not when the invoice arrives.

>>> known = {"input_tokens": None, "details": {"cached_tokens": None}, "tier": frozenset({"std"})}
>>> unknown_fields({"input_tokens": 3, "details": {"cached_tokens": 1, "new_tokens": 4},
...                 "tier": "fast", "empty": 0}, known)
{'details.new_tokens': 4, 'tier': 'fast'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Union

from tollgate.failures import mask

__all__ = ["Known", "items_of", "unknown_fields"]

#: A field's spec: ``None`` (known, any value), a frozenset of known values, or the spec of
#: an object's own fields (walked).
Known = Mapping[str, Union[frozenset[Any], "Known", None]]

_MAX_DEPTH = 4
_MAX_FIELDS = 32  # a runaway usage object cannot bloat a record


def items_of(obj: Any) -> Iterable[tuple[str, Any]]:
    """The fields of a JSON dict or an SDK (pydantic) object, extras included."""
    if type(obj) is dict:
        return obj.items()
    own = getattr(obj, "__dict__", None)
    if not isinstance(own, dict):
        return ()
    extras = getattr(obj, "__pydantic_extra__", None)
    if isinstance(extras, dict) and extras:
        return [*own.items(), *extras.items()]
    return own.items()


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data (an SDK object becomes a dict; text is cut short and
    anything credential-shaped in it masked: a usage field is no place for text)."""
    if isinstance(value, str):
        return mask(value[:200])
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth > _MAX_DEPTH:
        return str(value)[:200]
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value[:_MAX_FIELDS]]
    pairs = list(items_of(value))
    if pairs or isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in pairs[:_MAX_FIELDS]}
    return str(value)[:200]


def unknown_fields(raw: Any, known: Known, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """The fields of ``raw`` (a usage object or dict) that ``known`` does not cover and that
    carry a value, by dotted path, as JSON-ready data; empty when there are none (the usual
    case, which costs one pass over the fields)."""
    found: dict[str, Any] = {}
    try:
        for name, value in items_of(raw):
            if not value:  # None, 0, "", False, an empty dict or list: nothing billed
                continue
            spec: Any = known.get(name, _UNKNOWN) if type(name) is str else _UNKNOWN
            if spec is None:
                continue
            path = f"{prefix}{name}"
            if spec is _UNKNOWN:
                found[path] = _plain(value)
            elif isinstance(spec, frozenset):
                if not isinstance(value, str) or value.lower() not in spec:
                    found[path] = _plain(value)
            elif depth < _MAX_DEPTH:
                found.update(unknown_fields(value, spec, f"{path}.", depth + 1))
            if len(found) >= _MAX_FIELDS:
                break
    except Exception:  # an odd object must never cost the record
        return found
    return found


_UNKNOWN: Any = object()
