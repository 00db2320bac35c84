"""Stream wrappers: account for a streamed response as it is read, settle when it ends.

A provider adapter supplies a :class:`StreamAccountant` that reads each chunk (usage, model,
text) and says whether the caller should see it. The wrappers here are provider-neutral and
settle exactly once, whichever way the stream ends:

- read to the end: the provider's usage (or, if it sent none, an estimate flagged as such);
- raised mid-way: status ``error``, usage estimated from what streamed;
- closed early, or dropped unread: status ``abandoned``, usage estimated from what streamed;
- cut off: when a budget applies and the output streamed so far passes what the budget can
  still pay for (:attr:`tollgate.gate.Call.output_room`: a provider ignoring a clamp, or an
  ``on_exceed="raise"`` budget), tollgate closes the stream, settles the partial usage and
  raises :class:`~tollgate.BudgetExceeded` (action ``"cutoff"``) to the reader.

SDK stream helpers that read the stream themselves (``until_done()``,
``get_final_message()``, ``text_stream``, ...) are routed through the wrapper, so what they
read is accounted too.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, Protocol

from tollgate import gate, telemetry
from tollgate.budgets.room import Room
from tollgate.decisions import CutOff
from tollgate.errors import BudgetExceeded
from tollgate.pricing import cost
from tollgate.pricing.tokens import RunningCount, count_text
from tollgate.request import Usage

_NOTHING = gate.Outcome(Usage())

# How many chunks past the last finish_reason close() reads to pick up a trailing usage chunk.
_TRAILING_CHUNKS = 4
# SDK stream methods that consume the stream: the wrapper reads it through itself first.
_DRAINING = frozenset(
    {"until_done", "get_final_completion", "get_final_response", "get_final_message", "get_final_text"}
)


class StreamAccountant(Protocol):
    """Reads a provider's stream chunks; one per stream, written by the provider adapter."""

    usage: Usage | None  # the provider's own figures, once a chunk carried them
    usd: float | None  # a cost the provider reported itself (OpenRouter), else None
    response_model: str | None
    response_id: str | None
    done: bool  # every choice has finished; only trailing chunks (usage, end marker) may follow
    text: list[str]  # the generated text so far, in the pieces it arrived in
    finish_reasons: list[str]  # why each choice finished, as the provider says it

    def observe(self, chunk: Any) -> bool:
        """Take note of ``chunk``; return False to keep it from the caller (e.g. an injected usage chunk)."""
        ...

    def text_of(self, chunk: Any) -> str | None:
        """The text ``chunk`` adds for a ``text_stream`` reader (None when it adds none)."""
        ...


def accounted(
    call: gate.Call, acc: StreamAccountant, *, abandoned: bool, failed: bool = False
) -> gate.Outcome:
    """What a stream's accountant read, as the call's outcome (a stream that ``failed`` or was
    ``abandoned`` is estimated from what streamed; the gate estimates a missing usage)."""
    usage = None if failed else acc.usage
    text: str | None = None
    if usage is None or abandoned:
        text = "".join(t for t in acc.text if type(t) is str)
    if usage is not None and abandoned and text:  # a running count (Anthropic, Gemini) may lag the text
        streamed = count_text(text, call.decision.model, call.request.provider)
        if type(usage.output_tokens) is int and usage.output_tokens < streamed:
            usage = dataclasses.replace(usage, output_tokens=streamed)
    messages: tuple[dict[str, str], ...] = ()
    if telemetry.capture_content(call.span, call.settings):
        text = text if text is not None else "".join(t for t in acc.text if type(t) is str)
        messages = ({"role": "assistant", "content": text},)
    return gate.Outcome(
        usage,
        acc.response_model,
        acc.response_id,
        usd=acc.usd,
        text=text,
        finish_reasons=tuple(acc.finish_reasons),
        status="abandoned" if abandoned else "ok",
        estimated=usage is None or abandoned,
        output_messages=messages,
    )


class _Settling:
    __slots__ = ("_tg_acc", "_tg_call", "_tg_count", "_tg_started", "_tg_stream")

    def __init__(self, stream: Any, call: gate.Call, accountant: StreamAccountant) -> None:
        self._tg_stream = stream
        self._tg_call = call
        self._tg_acc = accountant
        self._tg_started = False  # a chunk has arrived
        self._tg_count: tuple[RunningCount, list[int]] | None = None
        call.room()  # how far the stream may run before a budget is crossed (see _overrun)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(s, openai.Stream) stays true for the caller
        return type(self._tg_stream)

    def __repr__(self) -> str:
        return f"<tollgate stream of {self._tg_stream!r}>"

    def _outcome(self, abandoned: bool, failed: bool = False) -> gate.Outcome:
        """What the stream said of itself, however it ended; the gate estimates what it did not."""
        if failed and not self._tg_started:  # failed before anything arrived (an HTTP error)
            return _NOTHING
        return accounted(self._tg_call, self._tg_acc, abandoned=abandoned, failed=failed)

    def _finish(
        self, exc: BaseException | None = None, *, abandoned: bool = False, ended: bool = False
    ) -> None:
        """Close the call however the stream ended; ``ended``: read to its end, when an
        ``on_exceed="raise"`` overrun is raised to the reader."""
        call = self._tg_call
        if call.settled:
            return
        if exc is not None:
            call.fail(exc, self._outcome(False, failed=True))
        else:
            call.finish(self._outcome(abandoned), raise_overrun=ended)

    async def _afinish(
        self, exc: BaseException | None = None, *, abandoned: bool = False, ended: bool = False
    ) -> None:
        call = self._tg_call
        if call.settled:
            return
        if exc is not None:
            await call.afail(exc, self._outcome(False, failed=True))
        else:
            await call.afinish(self._outcome(abandoned), raise_overrun=ended)

    def _observe(self, chunk: Any) -> bool:
        """Account for ``chunk``; whether the caller sees it. A chunk the accountant cannot read
        goes to the caller all the same: the stream is estimated, never broken by tollgate."""
        try:
            return self._tg_acc.observe(chunk)
        except Exception:
            return True

    def _text(self) -> str:
        return "".join(t for t in self._tg_acc.text if type(t) is str)

    def _overrun(self) -> BudgetExceeded | None:
        """Settle and return the cut-off error once the output passes the call's room (else None)."""
        call, acc = self._tg_call, self._tg_acc
        room = call.output_room
        if room is None or call.settled:
            return None
        if self._tg_count is None:
            self._tg_count = (RunningCount(call.decision.model, call.request.provider), [0])
        counter, seen = self._tg_count
        output = counter.add([t for t in acc.text[seen[0] :] if type(t) is str])
        seen[0] = len(acc.text)
        if output > room.tokens:  # piecewise counts run a little high: recount the whole text first
            output = counter.recount(self._text())
        reported = acc.usage
        if reported is not None and type(reported.output_tokens) is int:  # Anthropic's running count
            output = max(output, reported.output_tokens)
        if output <= room.tokens or self._within_own_cap(counter, reported):
            return None
        input_tokens = (
            reported.input_tokens if reported is not None and type(reported.input_tokens) is int else None
        )
        usage = Usage(input_tokens=input_tokens or call.estimate.input_tokens, output_tokens=output)
        return self._cut_off(room, usage)

    def _within_own_cap(self, counter: RunningCount, reported: Usage | None) -> bool:
        """The stream is still inside the output cap it asked for and reserved. The provider
        enforces that cap, so a running count past the room there is the estimate's margin
        (the provider factor, 1.15-1.2), not output the budget has not paid for: compare like
        with like, the tokenizer's own count with the cap, and the provider's own count when it
        sent one. A budget that reserved nothing (``on_exceed="raise"``) gets no such margin."""
        call, room = self._tg_call, self._tg_call.output_room
        cap = call.decision.max_output_tokens or call.request.max_output_tokens
        if cap is None or room is None or room.check.post_flight:
            return False
        own = cap * max(1, call.request.n)
        if reported is not None and type(reported.output_tokens) is int and reported.output_tokens > own:
            return False
        return counter.raw <= own

    def _cut_off(self, room: Room, usage: Usage) -> BudgetExceeded:
        """End the call of a stream tollgate stops mid-way because its output passed ``room``:
        the partial usage is billed (estimated) and the error returned is raised to the reader."""
        call, check, state = self._tg_call, room.check, room.state
        if check.unit == "tokens":
            used = float(usage.total_tokens)
        else:
            used = cost(call.price, usage) if call.price else 0.0
        exc = BudgetExceeded(
            check.spec.name,
            limit=check.limit,
            spent=state.spent,
            reserved=state.reserved,
            requested=used,
            action="cutoff",
            unit=check.unit,
            detail=f"the stream was closed after {usage.output_tokens} output tokens",
        )
        step = CutOff(check.spec.name, usage.output_tokens)
        call.fail(exc, self._outcome(False)._replace(usage=usage, estimated=True, steps=(step,)))
        return exc

    def __del__(self) -> None:
        # Dropped without being read to the end or closed: still recorded, never lost.
        with contextlib.suppress(Exception):  # nothing may escape a finaliser
            self._finish(abandoned=True)


class GatedStream(_Settling):
    """A sync stream that settles its call when it ends, fails, is closed early, or is cut off."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name == "text_stream":
            return self._text_stream()
        value = getattr(self._tg_stream, name)
        if name in _DRAINING and callable(value):
            return self._draining(value)
        return value

    def _draining(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def drained(*args: Any, **kwargs: Any) -> Any:
            for _ in self:
                pass
            result = method(*args, **kwargs)
            return self if result is self._tg_stream else result

        return drained

    def _text_stream(self) -> Iterator[str]:
        for chunk in self:
            text = self._tg_acc.text_of(chunk)
            if text:
                yield text

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                chunk = next(self._tg_stream)
            except StopIteration:
                self._finish(ended=True)  # raises an on_exceed="raise" overrun
                raise
            except Exception as exc:
                self._finish(exc)
                raise
            except BaseException:  # cancelled, interrupted: the caller stopped reading
                self._finish(abandoned=True)
                raise
            self._tg_started = True
            show = self._observe(chunk)
            if self._tg_call.output_room is not None:
                cut = self._overrun()
                if cut is not None:
                    with contextlib.suppress(Exception):
                        self._tg_stream.close()
                    raise cut
            if show:
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
            self._finish(abandoned=not self._tg_acc.done or self._tg_acc.usage is None)

    def __enter__(self) -> GatedStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def _aclose(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is None:  # an async generator (google-genai's streams)
        close = stream.aclose
    result = close()
    if result is not None and hasattr(result, "__await__"):
        await result


class AsyncGatedStream(_Settling):
    """The async twin of :class:`GatedStream`."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name == "text_stream":
            return self._text_stream()
        value = getattr(self._tg_stream, name)
        if name in _DRAINING and callable(value):
            return self._draining(value)
        return value

    def _draining(self, method: Callable[..., Any]) -> Callable[..., Any]:
        async def drained(*args: Any, **kwargs: Any) -> Any:
            async for _ in self:
                pass
            result = await method(*args, **kwargs)
            return self if result is self._tg_stream else result

        return drained

    async def _text_stream(self) -> AsyncIterator[str]:
        async for chunk in self:
            text = self._tg_acc.text_of(chunk)
            if text:
                yield text

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                chunk = await self._tg_stream.__anext__()
            except StopAsyncIteration:
                await self._afinish(ended=True)  # raises an on_exceed="raise" overrun
                raise
            except Exception as exc:
                await self._afinish(exc)
                raise
            except BaseException:  # cancelled, interrupted: the caller stopped reading
                self._finish(abandoned=True)  # no awaiting while being cancelled
                raise
            self._tg_started = True
            show = self._observe(chunk)
            if self._tg_call.output_room is not None:
                cut = self._overrun()
                if cut is not None:
                    with contextlib.suppress(Exception):
                        await _aclose(self._tg_stream)
                    raise cut
            if show:
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
            await _aclose(self._tg_stream)
        finally:
            await self._afinish(abandoned=not self._tg_acc.done or self._tg_acc.usage is None)

    aclose = close

    async def __aenter__(self) -> AsyncGatedStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
