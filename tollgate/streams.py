"""Stream wrappers: account for a streamed response as it is read, settle when it ends.

A provider adapter supplies a :class:`StreamAccountant` that reads each chunk (usage, model,
text) and says whether the caller should see it. The wrappers here are provider-neutral and
settle exactly once, whichever way the stream ends:

- read to the end: the provider's usage (or, if it sent none, an estimate flagged as such);
- raised mid-way: status ``error``, usage estimated from what streamed;
- closed early, or dropped unread: status ``abandoned``, usage estimated from what streamed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Protocol

from tollgate import gate
from tollgate.pricing.tokens import count_text
from tollgate.request import Usage

# How many chunks past the last finish_reason close() reads to pick up a trailing usage chunk.
_TRAILING_CHUNKS = 4


class StreamAccountant(Protocol):
    """Reads a provider's stream chunks; one per stream, written by the provider adapter."""

    usage: Usage | None  # the provider's own figures, once a chunk carried them
    response_model: str | None
    response_id: str | None
    done: bool  # every choice has finished; only trailing chunks (usage, end marker) may follow

    def observe(self, chunk: Any) -> bool:
        """Take note of ``chunk``; return False to keep it from the caller (e.g. an injected usage chunk)."""
        ...

    def streamed_text(self) -> str:
        """Everything generated so far, for estimating output tokens when no usage arrives."""
        ...


def _estimated_usage(call: gate.Call, acc: StreamAccountant) -> Usage:
    text = acc.streamed_text()
    return Usage(
        input_tokens=call.estimate.input_tokens,
        output_tokens=count_text(text, call.request.model, call.request.provider),
    )


class _Settling:
    __slots__ = ("_tg_acc", "_tg_call", "_tg_stream")

    def __init__(self, stream: Any, call: gate.Call, accountant: StreamAccountant) -> None:
        self._tg_stream = stream
        self._tg_call = call
        self._tg_acc = accountant

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(s, openai.Stream) stays true for the caller
        return type(self._tg_stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tg_stream, name)

    def __repr__(self) -> str:
        return f"<tollgate stream of {self._tg_stream!r}>"

    def _closing(self, exc: BaseException | None, abandoned: bool) -> tuple[Usage, dict[str, Any]] | None:
        """The usage and settle arguments for however the stream ended (None if settled already)."""
        call, acc = self._tg_call, self._tg_acc
        if call.settled:
            return None
        if exc is not None:
            error = gate.describe_error(exc)
            return _estimated_usage(call, acc), {"status": "error", "error": error, "estimated": True}
        return acc.usage or _estimated_usage(call, acc), {
            "response_model": acc.response_model,
            "response_id": acc.response_id,
            "estimated": acc.usage is None,
            "status": "abandoned" if abandoned else "ok",
        }

    def _finish(self, exc: BaseException | None = None, *, abandoned: bool = False) -> None:
        closing = self._closing(exc, abandoned)
        if closing is not None:
            gate.settle(self._tg_call, closing[0], **closing[1])

    async def _afinish(self, exc: BaseException | None = None, *, abandoned: bool = False) -> None:
        closing = self._closing(exc, abandoned)
        if closing is not None:
            await gate.asettle(self._tg_call, closing[0], **closing[1])

    def __del__(self) -> None:
        # Dropped without being read to the end or closed: still recorded, never lost.
        with contextlib.suppress(Exception):  # nothing may escape a finaliser
            self._finish(abandoned=True)


class GatedStream(_Settling):
    """A sync stream that settles its call when it ends, fails, or is closed early."""

    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                chunk = next(self._tg_stream)
            except StopIteration:
                self._finish()
                gate.raise_if_overrun(self._tg_call)
                raise
            except Exception as exc:
                self._finish(exc)
                raise
            except BaseException:  # cancelled, interrupted: the caller stopped reading
                self._finish(abandoned=True)
                raise
            if self._tg_acc.observe(chunk):
                return chunk

    def close(self) -> None:
        try:
            if self._tg_acc.done and self._tg_acc.usage is None:
                # The caller stopped at the finish chunk; the usage chunk is right behind it.
                for _ in range(_TRAILING_CHUNKS):
                    self._tg_acc.observe(next(self._tg_stream))
                    if self._tg_acc.usage is not None:
                        break
        except Exception:  # draining is best effort; closing must go on
            pass
        try:
            self._tg_stream.close()
        finally:
            self._finish(abandoned=self._tg_acc.usage is None)

    def __enter__(self) -> GatedStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncGatedStream(_Settling):
    """The async twin of :class:`GatedStream`."""

    __slots__ = ()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                chunk = await self._tg_stream.__anext__()
            except StopAsyncIteration:
                await self._afinish()
                gate.raise_if_overrun(self._tg_call)
                raise
            except Exception as exc:
                await self._afinish(exc)
                raise
            except BaseException:  # cancelled, interrupted: the caller stopped reading
                self._finish(abandoned=True)  # no awaiting while being cancelled
                raise
            if self._tg_acc.observe(chunk):
                return chunk

    async def close(self) -> None:
        try:
            if self._tg_acc.done and self._tg_acc.usage is None:
                for _ in range(_TRAILING_CHUNKS):
                    self._tg_acc.observe(await self._tg_stream.__anext__())
                    if self._tg_acc.usage is not None:
                        break
        except Exception:  # draining is best effort; closing must go on
            pass
        try:
            await self._tg_stream.close()
        finally:
            await self._afinish(abandoned=self._tg_acc.usage is None)

    async def __aenter__(self) -> AsyncGatedStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
