"""Stream wrappers: account for a streamed response as it is read, settle when it ends.

A provider adapter supplies a :class:`StreamAccountant` that reads each chunk (usage, model,
text) and says whether the caller should see it. The wrappers here are provider-neutral and
settle exactly once, whichever way the stream ends:

- read to the end: the provider's usage (or, if it sent none, an estimate flagged as such);
- raised mid-way: status ``error``, usage estimated from what streamed;
- closed early, left by an exception, or dropped: status ``abandoned``. Its provider bills what
  it generated before it saw the connection close, which can be far more than the reader read
  (it keeps generating while the reader works; what it sent waits in buffers). So the wrapper
  reads what has already arrived, without waiting for more (below), then closes, and the call
  is charged by :mod:`tollgate.abandoned`: the provider's final usage if that had arrived,
  else the output cap pre-flight reserved (the most the provider can have generated);
- cut off: when a budget applies and the output streamed so far passes what the budget can
  still pay for (:attr:`tollgate.gate.Call.output_room`: a provider ignoring a clamp, or an
  ``on_exceed="raise"`` budget), tollgate closes the stream, settles the partial usage and
  raises :class:`~tollgate.BudgetExceeded` (action ``"cutoff"``) to the reader.

Reading what has arrived without waiting: when the SDK's stream reads an HTTP/1.1 response
from a socket of its own (httpx and httpx2 say which, through the response's
``network_stream``), the socket is shut for reading (``shutdown(SHUT_RD)``): what the kernel
holds stays readable, then reads end at once instead of waiting, so the SDK's own parser can be
run over what arrived (its buffers included) and the accountant reads the chunks; no transport
library is imported. Without such a socket (an in-memory transport, aiohttp, HTTP/2, Gemini's
generators, a metered generator) nothing more is read and the reservation is charged. A stream
dropped unclosed is drained the same way by a sync wrapper's finaliser; an async one cannot
await there, and is charged the reservation.

SDK stream helpers that read the stream themselves (``until_done()``,
``get_final_message()``, ``text_stream``, ...) are routed through the wrapper, so what they
read is accounted too.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, Protocol

from tollgate import gate, telemetry
from tollgate.abandoned import charge
from tollgate.budgets.room import Room
from tollgate.decisions import CutOff
from tollgate.errors import BudgetExceeded
from tollgate.pricing import cost
from tollgate.pricing.tokens import RunningCount
from tollgate.request import Usage

_NOTHING = gate.Outcome(Usage())

# How many chunks past the last finish_reason close() reads to pick up a trailing usage chunk.
_TRAILING_CHUNKS = 4
# The longest a closing stream spends reading what had arrived (parsing, never waiting): a
# provider still sending keeps the buffer from running dry; past this, the reservation is charged.
_DRAIN_SECONDS = 0.2
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
    tool_calls: int  # the tool calls the chunks so far asked for

    def observe(self, chunk: Any) -> bool:
        """Take note of ``chunk``; return False to keep it from the caller (e.g. an injected usage chunk)."""
        ...

    def text_of(self, chunk: Any) -> str | None:
        """The text ``chunk`` adds for a ``text_stream`` reader (None when it adds none)."""
        ...


def accounted(
    call: gate.Call,
    acc: StreamAccountant,
    *,
    abandoned: bool,
    failed: bool = False,
    read: int | None = None,
    drained: int = 0,
) -> gate.Outcome:
    """What a stream's accountant read, as the call's outcome: a stream that ``failed`` is
    estimated from what streamed (the gate estimates a missing usage); one ``abandoned`` is
    charged by :func:`tollgate.abandoned.charge` (``read``, ``drained``: the chunks the caller
    read, and that tollgate read after it)."""
    usage = None if failed else acc.usage
    text: str | None = None
    if usage is None or abandoned:
        text = "".join(t for t in acc.text if type(t) is str)
    messages: tuple[dict[str, str], ...] = ()
    if telemetry.capture_content(call.span, call.settings):
        text = text if text is not None else "".join(t for t in acc.text if type(t) is str)
        messages = ({"role": "assistant", "content": text},)
    outcome = gate.Outcome(
        usage,
        acc.response_model,
        acc.response_id,
        usd=acc.usd,
        text=text,
        finish_reasons=tuple(acc.finish_reasons),
        status="abandoned" if abandoned else "ok",
        estimated=usage is None,
        output_messages=messages,
        tool_calls=acc.tool_calls,
    )
    if abandoned:
        return charge(call, outcome, ended=bool(acc.done), read=read, drained=drained)
    return outcome


def _final(acc: StreamAccountant) -> bool:
    """The provider's final usage has been read: the stream is billed as reported."""
    return acc.done and acc.usage is not None


def receiving_socket(stream: Any) -> Any:
    """The socket an SDK stream (or raw response) reads its HTTP/1.1 body from, or None.

    Read through what httpx and httpx2 expose (``response.extensions["network_stream"]``),
    without importing either. HTTP/2 is left alone: its connection carries other streams.
    """
    try:
        response = getattr(stream, "response", None)
        if response is None:  # openai's stream helpers (``.stream()``) keep it to themselves
            response = getattr(stream, "_response", stream)
        response = getattr(response, "http_response", response)  # an SDK's APIResponse
        extensions = getattr(response, "extensions", None)
        if not isinstance(extensions, dict) or getattr(response, "http_version", None) != "HTTP/1.1":
            return None
        network = extensions.get("network_stream")
        return network.get_extra_info("socket") if network is not None else None
    except Exception:
        return None


def stop_receiving(sock: Any) -> bool:
    """Shut ``sock`` for reading: what has arrived stays readable, and then a read returns at
    once (end of stream) instead of waiting. Whether it could be done."""
    try:
        if isinstance(sock, socket.socket):
            # socket.socket's own shutdown: SSLSocket.shutdown drops the TLS session and with it
            # what has been received but not yet decrypted.
            socket.socket.shutdown(sock, socket.SHUT_RD)
        else:
            sock.shutdown(socket.SHUT_RD)  # asyncio's TransportSocket
        return True
    except Exception:
        return False


class _Settling:
    __slots__ = ("_tg_acc", "_tg_call", "_tg_count", "_tg_read", "_tg_room", "_tg_stream")

    def __init__(self, stream: Any, call: gate.Call, accountant: StreamAccountant) -> None:
        self._tg_stream = stream
        self._tg_call = call
        self._tg_acc = accountant
        self._tg_read = 0  # chunks the caller has had from the SDK
        self._tg_count: tuple[RunningCount, list[int]] | None = None
        # How far the stream may run before a budget is crossed (see _overrun); fixed at pre-flight.
        self._tg_room = call.room()

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(s, openai.Stream) stays true for the caller
        return type(self._tg_stream)

    def __repr__(self) -> str:
        return f"<tollgate stream of {self._tg_stream!r}>"

    def _outcome(self, abandoned: bool, failed: bool = False, drained: int = 0) -> gate.Outcome:
        """What the stream said of itself, however it ended; the gate estimates what it did not."""
        if failed and not self._tg_read:  # failed before anything arrived (an HTTP error)
            return _NOTHING
        return accounted(
            self._tg_call,
            self._tg_acc,
            abandoned=abandoned,
            failed=failed,
            read=self._tg_read,
            drained=drained,
        )

    def _finish(
        self,
        exc: BaseException | None = None,
        *,
        abandoned: bool = False,
        ended: bool = False,
        drained: int = 0,
    ) -> None:
        """Close the call however the stream ended; ``ended``: read to its end, when an
        ``on_exceed="raise"`` overrun is raised to the reader; ``drained``: chunks read after
        the caller let go."""
        call = self._tg_call
        if call.settled:
            return
        if exc is not None:
            call.fail(exc, self._outcome(False, failed=True))
        else:
            call.finish(self._outcome(abandoned, drained=drained), raise_overrun=ended)

    async def _afinish(
        self,
        exc: BaseException | None = None,
        *,
        abandoned: bool = False,
        ended: bool = False,
        drained: int = 0,
    ) -> None:
        call = self._tg_call
        if call.settled:
            return
        if exc is not None:
            await call.afail(exc, self._outcome(False, failed=True))
        else:
            await call.afinish(self._outcome(abandoned, drained=drained), raise_overrun=ended)

    def _left(self) -> bool:
        """The caller let go of the stream before its end: it has to be drained and charged."""
        return not self._tg_call.settled and not _final(self._tg_acc)

    def _draining_socket(self) -> bool:
        """Shut the stream's socket for reading, so reading on never waits (False: it has none)."""
        sock = receiving_socket(self._tg_stream)
        return sock is not None and stop_receiving(sock)

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
        # Anthropic's running count, unless it is no call's count (then the tokenizer's stands).
        # Checked only when it would decide a cut-off: this runs on every chunk.
        if reported is not None and reported.output_tokens > room.tokens and call.implausible(reported):
            reported = None
        if reported is not None:
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
            if not self._tg_call.settled:
                self._dropped()

    def _dropped(self) -> None:
        self._finish(abandoned=not _final(self._tg_acc))


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
                self._finish(abandoned=not _final(self._tg_acc))
                raise
            self._tg_read += 1
            if self._tg_read == 1:
                telemetry.first_chunk(self._tg_call)
            show = self._observe(chunk)
            if self._tg_room is not None:
                cut = self._overrun()
                if cut is not None:
                    with contextlib.suppress(Exception):
                        self._tg_stream.close()
                    raise cut
            if show:
                return chunk

    def close(self) -> None:
        self._close(trailing=True)

    def _close(self, *, trailing: bool) -> None:
        """Close the stream; a stream the caller left before its final usage is first read on,
        as far as that needs no waiting (``trailing``: also wait for the chunks a finished
        stream still owes, as a caller closing the stream can; a finaliser cannot)."""
        acc, drained = self._tg_acc, 0
        if self._left():
            try:
                if acc.done:
                    if trailing:  # the caller stopped at the finish chunk; the usage chunk is right behind it
                        for _ in range(_TRAILING_CHUNKS):
                            acc.observe(next(self._tg_stream))
                            if acc.usage is not None:
                                break
                elif self._draining_socket():
                    drained = self._drain()
            except Exception:  # reading on is best effort; closing must go on
                pass
        try:
            self._tg_stream.close()
        finally:
            self._finish(abandoned=drained > 0 or not _final(acc), drained=drained)

    def _drain(self) -> int:
        """Read on, over a socket shut for reading, until the provider's final usage, the end of
        what had arrived, or :data:`_DRAIN_SECONDS`; how many chunks."""
        acc, stream, drained = self._tg_acc, self._tg_stream, 0
        deadline = time.monotonic() + _DRAIN_SECONDS
        with contextlib.suppress(Exception):  # the end of what arrived: the SDK's own error
            while not _final(acc) and time.monotonic() < deadline:
                self._observe(next(stream))
                drained += 1
        return drained

    def _dropped(self) -> None:
        self._close(trailing=False)  # the finaliser of a sync stream may read: nothing waits

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
                self._finish(abandoned=not _final(self._tg_acc))  # no awaiting while being cancelled
                raise
            self._tg_read += 1
            if self._tg_read == 1:
                telemetry.first_chunk(self._tg_call)
            show = self._observe(chunk)
            if self._tg_room is not None:
                cut = self._overrun()
                if cut is not None:
                    with contextlib.suppress(Exception):
                        await _aclose(self._tg_stream)
                    raise cut
            if show:
                return chunk

    async def close(self) -> None:
        acc, drained = self._tg_acc, 0
        if self._left():
            try:
                if acc.done:  # the caller stopped at the finish chunk; the usage chunk is right behind it
                    for _ in range(_TRAILING_CHUNKS):
                        acc.observe(await self._tg_stream.__anext__())
                        if acc.usage is not None:
                            break
                elif self._draining_socket():
                    drained = await self._drain()
            except Exception:  # reading on is best effort; closing must go on
                pass
            except BaseException:  # cancelled while closing: no awaiting while being cancelled
                self._finish(abandoned=not _final(acc))
                raise
        try:
            await _aclose(self._tg_stream)
        finally:
            await self._afinish(abandoned=drained > 0 or not _final(acc), drained=drained)

    async def _drain(self) -> int:
        """The async twin of :meth:`GatedStream._drain`."""
        acc, stream, drained = self._tg_acc, self._tg_stream, 0
        deadline = time.monotonic() + _DRAIN_SECONDS
        with contextlib.suppress(Exception):  # the end of what arrived: the SDK's own error
            while not _final(acc) and time.monotonic() < deadline:
                self._observe(await stream.__anext__())
                drained += 1
        return drained

    aclose = close

    async def __aenter__(self) -> AsyncGatedStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
