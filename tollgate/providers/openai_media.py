"""OpenAI's audio and image endpoints, through the same gate as chat.

Translation only, one surface per endpoint (budget logic stays in the gate):

- ``audio.transcriptions.create`` (operation ``transcription``) and
  ``audio.translations.create`` (``translation``): per-second models (whisper-1) are billed
  from the response's ``usage`` of type ``duration`` or its ``duration`` (verbose_json), in
  ``Usage.units["audio_seconds"]``; per-token models (gpt-4o-transcribe,
  gpt-4o-mini-transcribe) from ``usage`` of type ``tokens`` (audio input tokens in
  ``Usage.audio_input_tokens``). A response without usage (``text``, ``srt``, ``vtt``, a plain
  translation) is settled from the duration estimated before the call, flagged ``estimated``.
  ``stream=True`` (``transcript.text.delta`` / ``transcript.text.done`` events) is gated like
  any stream.
- ``audio.speech.create`` (``speech``): per-character models (tts-1, tts-1-hd) are billed
  ``len(input)`` in ``units["characters"]`` (exact). Per-token models (gpt-4o-mini-tts) are
  billed from the ``usage`` of the final ``speech.audio.done`` event when
  ``stream_format="sse"``; otherwise the text tokens are counted and the generated audio is
  estimated in ``units["audio_output_seconds"]`` (priced at the model's ``output_per_second``):
  exactly from the bytes for ``pcm`` (24 kHz, 16-bit mono) and ``wav``, else at
  :data:`SPOKEN_CHARACTERS_PER_SECOND`; flagged ``estimated``. A body read by the caller
  (``with_streaming_response``) is never read by tollgate: that call is settled with the
  estimate as the response opens.
- ``images.generate`` (``image_generation``) and ``images.edit`` (``image_edit``): gpt-image
  models report ``usage``; its image tokens go in ``units["image_input_tokens"]`` /
  ``units["image_output_tokens"]`` (parts of the input and output tokens, billed at the
  image rates). Models without usage (dall-e, per-image models) are billed
  ``units["images"]``. ``stream=True`` (``image_generation.completed`` /
  ``image_edit.completed`` events with usage) is gated like any stream.

Every request carries ``fixed={"clamp", "truncate"}`` (no output cap or messages to cut):
a budget asking for them blocks, saying so. Downgrade applies (the ``model`` sent changes).

Before the call, an upload's duration is unknown: it is read exactly from a WAV header, and
otherwise taken as the file's size over :data:`ASSUMED_BYTES_PER_SECOND`. The file is read
only when that leaves it as it was (bytes, a path, a seekable file put back where it was).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

from tollgate import gate
from tollgate.pricing.tokens import count_text
from tollgate.providers.base import (
    Accountant,
    Found,
    Server,
    Surface,
    abegin,
    as_int,
    begin,
    count_of,
    field,
    outcome,
    routes_for,
    sse_data,
)
from tollgate.request import LLMRequest, Usage

#: Bytes per second assumed for an upload whose duration cannot be read exactly (anything but
#: WAV): 16,000 B/s is 128 kbit/s, a common MP3 / M4A bitrate. A file encoded at a lower
#: bitrate runs longer than estimated (64 kbit/s: twice as long), a higher one shorter.
ASSUMED_BYTES_PER_SECOND = 16_000
#: Characters of input text spoken per second, to estimate a speech's length before (and,
#: for compressed formats, after) the call: about 150 words a minute at ~6 characters a word,
#: scaled by the request's ``speed``.
SPOKEN_CHARACTERS_PER_SECOND = 15.0
#: Bytes per second of ``pcm`` speech: 24 kHz, 16-bit, mono (OpenAI's documented format).
PCM_BYTES_PER_SECOND = 48_000
#: Output image tokens of gpt-image-1 per image, by quality and size (OpenAI's image
#: generation guide); used for image models without a per-image price for that quality/size.
IMAGE_TOKENS = {
    ("low", "1024x1024"): 272,
    ("low", "1024x1536"): 408,
    ("low", "1536x1024"): 400,
    ("medium", "1024x1024"): 1056,
    ("medium", "1024x1536"): 1584,
    ("medium", "1536x1024"): 1568,
    ("high", "1024x1024"): 4160,
    ("high", "1024x1536"): 6240,
    ("high", "1536x1024"): 6208,
}
_HEAD_BYTES = 4096
_FIXED = frozenset({"clamp", "truncate"})


# -- audio durations ---------------------------------------------------------------------------


def wav_seconds(head: bytes, size: int) -> float | None:
    """The duration of a WAV file from its first bytes ``head`` and total ``size`` (None when
    ``head`` is not a WAV header). A ``data`` chunk of unknown length (streamed WAV) runs to
    the end of the file.

    >>> import io, wave
    >>> buf = io.BytesIO()
    >>> with wave.open(buf, "wb") as w:
    ...     w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(bytes(24000))
    >>> wav_seconds(buf.getvalue()[:4096], len(buf.getvalue()))
    1.5
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk, length = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 20 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16 : pos + 20], "little")
        elif chunk == b"data":
            if byte_rate <= 0:
                return None
            available = size - pos - 8
            data = length if 0 < length <= available else available
            return max(data, 0) / byte_rate
        pos += 8 + length + (length & 1)
    return None


def _head_and_size(content: Any) -> tuple[bytes, int] | None:
    """The first bytes and the size of an upload, leaving it as it was (None when unreadable)."""
    if isinstance(content, bytes | bytearray | memoryview):
        data = bytes(content[:_HEAD_BYTES])
        return data, len(content)
    if isinstance(content, os.PathLike):
        path = os.fspath(content)
        with open(path, "rb") as f:
            return f.read(_HEAD_BYTES), os.path.getsize(path)
    seekable = getattr(content, "seekable", None)
    if callable(seekable) and seekable() and hasattr(content, "read"):
        position = content.tell()
        try:
            end = content.seek(0, os.SEEK_END)
            content.seek(position)
            head = content.read(_HEAD_BYTES)
        finally:
            content.seek(position)  # the SDK reads it from here
        if isinstance(head, bytes):
            return head, end - position
    return None


def audio_seconds(file: Any) -> float | None:
    """The duration of an upload (``bytes``, a path, a file object or an SDK ``(name, content,
    ...)`` tuple): exact for WAV, else its size over :data:`ASSUMED_BYTES_PER_SECOND`; None
    when it cannot be read without consuming it.

    >>> audio_seconds(bytes(32_000))
    2.0
    """
    content = file[1] if isinstance(file, tuple) and len(file) >= 2 else file
    try:
        found = _head_and_size(content)
    except (OSError, ValueError, TypeError):
        return None
    if found is None:
        return None
    head, size = found
    seconds = wav_seconds(head, size)
    return seconds if seconds is not None else size / ASSUMED_BYTES_PER_SECOND


# -- usage -------------------------------------------------------------------------------------


def transcription_usage(raw: Any) -> Usage | None:
    """A transcription's ``usage``: ``{"type": "tokens", ...}`` or ``{"type": "duration",
    "seconds": ...}`` (None when missing or malformed).

    >>> transcription_usage({"type": "duration", "seconds": 12.5}).units
    {'audio_seconds': 12.5}
    >>> u = transcription_usage({"type": "tokens", "input_tokens": 70, "output_tokens": 12,
    ...     "total_tokens": 82, "input_token_details": {"audio_tokens": 60, "text_tokens": 10}})
    >>> u.input_tokens, u.audio_input_tokens, u.output_tokens
    (70, 60, 12)
    """
    if raw is None:
        return None
    kind = field(raw, "type")
    if kind == "duration":
        seconds = _seconds(field(raw, "seconds"))
        return Usage(units={"audio_seconds": seconds}) if seconds is not None else None
    input_tokens, output_tokens = count_of(field(raw, "input_tokens")), count_of(field(raw, "output_tokens"))
    if input_tokens is None or output_tokens is None:
        return None
    audio = as_int(field(field(raw, "input_token_details"), "audio_tokens"))
    return Usage(
        input_tokens=input_tokens, output_tokens=output_tokens, audio_input_tokens=min(audio, input_tokens)
    )


def image_usage(raw: Any) -> Usage | None:
    """An images response's ``usage``: text and image tokens in and out (None when missing or
    malformed). Without ``output_tokens_details`` every output token is an image token.

    >>> u = image_usage({"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210,
    ...     "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}})
    >>> u.units
    {'image_input_tokens': 0, 'image_output_tokens': 4160}
    """
    if raw is None:
        return None
    input_tokens, output_tokens = count_of(field(raw, "input_tokens")), count_of(field(raw, "output_tokens"))
    if input_tokens is None or output_tokens is None:
        return None
    details = field(raw, "input_tokens_details")
    image_in = min(as_int(field(details, "image_tokens")), input_tokens)
    cached = min(as_int(field(details, "cached_tokens")), input_tokens)
    out_details = field(raw, "output_tokens_details")
    image_out = output_tokens if out_details is None else as_int(field(out_details, "image_tokens"))
    units = {"image_input_tokens": image_in, "image_output_tokens": min(image_out, output_tokens)}
    return Usage(
        input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached, units=units
    )


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != value:
        return None
    return float(value)


def _sse_events(body: bytes) -> list[Any]:
    """The JSON events of a server-sent-events body."""
    events = (sse_data(line) for line in body.decode("utf-8", "replace").splitlines())
    return [e for e in events if e is not None]


# -- surfaces ----------------------------------------------------------------------------------


class MediaSurface(Surface):
    """What the audio and image surfaces share: exact usage from a response when it has one
    (:meth:`usage_of`), else one made from the request and what the response shows
    (:meth:`fallback`), flagged estimated unless it is how the call is billed."""

    def new_request(self, model: str, **fields: Any) -> LLMRequest:
        return super().new_request(model, fixed=_FIXED, **fields)

    def usage_of(self, response: Any) -> Usage | None:
        """The usage a response reports (None when it reports none, or it is malformed)."""
        return None

    def fallback(self, call: gate.Call, response: Any) -> tuple[Usage, bool]:
        """Usage without a reported one, and whether it is an estimate."""
        units = {k: v for k, v in call.request.units.items() if "@" not in k and v}
        output = int(units.get("image_output_tokens", 0))  # image tokens are part of the output
        return Usage(input_tokens=call.estimate.input_tokens, output_tokens=output, units=units), True

    def settled(self, call: gate.Call, response: Any) -> tuple[Usage, bool]:
        """The usage to settle ``call`` with, and whether it is estimated; never raises."""
        try:
            usage = self.usage_of(response)
            if usage is not None:
                return usage, False
            return self.fallback(call, response)
        except Exception:  # a malformed response: settle the pre-flight estimate
            return MediaSurface.fallback(self, call, response)

    def found(self, response: Any) -> Found:
        return Found(self.usage_of(response))

    def outcome(self, call: gate.Call, response: Any) -> gate.Outcome:
        usage, estimated = self.settled(call, response)
        return outcome(call, self, response, read=lambda _: gate.Outcome(usage, estimated=estimated))


class TranscriptionSurface(MediaSurface):
    """``audio.transcriptions.create``: an audio upload in, text out."""

    operation = "transcription"

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        prompt = kwargs.get("prompt")
        seconds = audio_seconds(kwargs.get("file"))
        return self.new_request(
            str(kwargs.get("model") or ""),
            prompt=[prompt] if isinstance(prompt, str) and prompt else (),
            stream=kwargs.get("stream") is True,
            units={"audio_seconds": seconds or 0.0},
        )

    def usage_of(self, response: Any) -> Usage | None:
        if isinstance(response, str):
            return None
        usage = transcription_usage(field(response, "usage"))
        if usage is None:  # verbose_json without usage: its duration is what is billed
            seconds = _seconds(field(response, "duration"))
            usage = Usage(units={"audio_seconds": seconds}) if seconds is not None else None
        return usage

    def fallback(self, call: gate.Call, response: Any) -> tuple[Usage, bool]:
        usage, _ = super().fallback(call, response)
        text = response if isinstance(response, str) else field(response, "text")
        if isinstance(text, str) and text:
            output = count_text(text, call.decision.model, call.request.provider)
            usage = dataclasses.replace(usage, output_tokens=output)
        return usage, True

    def content(self, response: Any) -> str | None:
        text = response if isinstance(response, str) else field(response, "text")
        return text if isinstance(text, str) else None

    def accountant(self, injected: bool) -> TranscriptionStreamAccountant:
        return TranscriptionStreamAccountant()


class TranslationSurface(TranscriptionSurface):
    """``audio.translations.create``: as a transcription (whisper-1 only: billed per second)."""

    operation = "translation"


class TranscriptionStreamAccountant(Accountant):
    """Reads ``transcript.text.delta`` / ``transcript.text.done`` events (usage on the latter)."""

    __slots__ = ()

    def observe(self, event: Any) -> bool:
        try:
            kind = field(event, "type")
            if kind == "transcript.text.delta":
                delta = field(event, "delta")
                if delta:
                    self.text.append(delta)
            elif kind == "transcript.text.done":
                self.usage = transcription_usage(field(event, "usage")) or self.usage
                if not self.text and field(event, "text"):
                    self.text.append(field(event, "text"))
                self.done = True
        except Exception:  # a malformed event must never break the caller's stream
            pass
        return True


class SpeechSurface(MediaSurface):
    """``audio.speech.create``: text in, audio bytes out."""

    operation = "speech"

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        text = kwargs.get("input")
        text = text if isinstance(text, str) else ""
        instructions = kwargs.get("instructions")
        speed = kwargs.get("speed")
        speed = (
            float(speed)
            if isinstance(speed, int | float) and not isinstance(speed, bool) and speed > 0
            else 1.0
        )
        seconds = len(text) / SPOKEN_CHARACTERS_PER_SECOND / speed
        prompt = [text] + ([instructions] if isinstance(instructions, str) and instructions else [])
        return self.new_request(
            str(kwargs.get("model") or ""),
            prompt=[p for p in prompt if p],
            units={"characters": len(text), "audio_output_seconds": seconds},
        )

    def usage_of(self, response: Any) -> Usage | None:
        body = getattr(response, "content", response)
        if not isinstance(body, bytes) or not body.lstrip().startswith((b"data:", b"event:")):
            return None
        for event in reversed(_sse_events(body)):
            if field(event, "type") == "speech.audio.done":
                raw = field(event, "usage")
                input_tokens = count_of(field(raw, "input_tokens"))
                output_tokens = count_of(field(raw, "output_tokens"))
                if input_tokens is None or output_tokens is None:
                    return None
                # The output of a speech model is audio: every output token is an audio token.
                return Usage(
                    input_tokens=input_tokens, output_tokens=output_tokens, audio_output_tokens=output_tokens
                )
        return None

    def settled(self, call: gate.Call, response: Any) -> tuple[Usage, bool]:
        usage, estimated = super().settled(call, response)
        characters = call.request.units.get("characters", 0)
        if not estimated:  # the SSE usage, with the characters for the record
            return dataclasses.replace(usage, units={"characters": characters}), False
        price = call.price
        if price is not None and price.input_per_character is not None:  # billed per character: exact
            return Usage(units={"characters": characters}), False
        seconds = call.request.units.get("audio_output_seconds", 0.0)
        with contextlib.suppress(Exception):  # an odd response: keep the estimate from the text
            seconds = _speech_seconds(response) or seconds
        units = {"characters": characters, "audio_output_seconds": seconds}
        return Usage(input_tokens=call.estimate.input_tokens, units=units), True


def _speech_seconds(response: Any) -> float | None:
    """The length of generated speech read from its bytes: a WAV header, or raw PCM (told by
    its ``content-type``); None for compressed formats and bodies not read yet."""
    body = getattr(response, "content", None)
    if not isinstance(body, bytes) or not body:
        return None
    if body.startswith(b"RIFF"):
        return wav_seconds(body[:_HEAD_BYTES], len(body))
    headers = getattr(getattr(response, "response", None), "headers", None)
    content_type = str(headers.get("content-type", "")) if headers is not None else ""
    if "pcm" in content_type.lower():
        return len(body) / PCM_BYTES_PER_SECOND
    return None


class ImagesSurface(MediaSurface):
    """``images.generate`` (and, as :class:`ImageEditSurface`, ``images.edit``)."""

    operation = "image_generation"

    def request(self, kwargs: dict[str, Any]) -> LLMRequest:
        model = str(kwargs.get("model") or "dall-e-2")  # the API's default model
        prompt = kwargs.get("prompt")
        n = as_int(kwargs.get("n")) or 1
        return self.new_request(
            model,
            prompt=[prompt] if isinstance(prompt, str) and prompt else (),
            stream=kwargs.get("stream") is True,
            units=image_units(model, n, kwargs.get("quality"), kwargs.get("size")),
        )

    def usage_of(self, response: Any) -> Usage | None:
        return image_usage(field(response, "usage"))

    def fallback(self, call: gate.Call, response: Any) -> tuple[Usage, bool]:
        data = field(response, "data")
        images = len(data) if isinstance(data, list) and data else int(call.request.units.get("images", 1))
        tokens = int(call.request.units.get("image_output_tokens", 0))
        if tokens:  # a token-billed model that reported no usage: the worst case, estimated
            per_image = tokens / max(1, int(call.request.units.get("images", 1)))
            out = int(per_image * images)
            units = {"images": images, "image_output_tokens": out}
            return Usage(input_tokens=call.estimate.input_tokens, output_tokens=out, units=units), True
        return Usage(units={"images": images}), False  # billed per image

    def accountant(self, injected: bool) -> ImageStreamAccountant:
        return ImageStreamAccountant()


class ImageEditSurface(ImagesSurface):
    """``images.edit``: input images (their tokens are not estimated pre-flight) and a prompt."""

    operation = "image_edit"


class ImageStreamAccountant(Accountant):
    """Reads image stream events: each ``*.completed`` event carries the usage of its image."""

    __slots__ = ()

    def observe(self, event: Any) -> bool:
        try:
            if field(event, "type") in ("image_generation.completed", "image_edit.completed"):
                usage = image_usage(field(event, "usage"))
                if usage is not None:
                    self.usage = usage if self.usage is None else self.usage + usage
                self.done = True
        except Exception:  # a malformed event must never break the caller's stream
            pass
        return True


def image_units(model: str, n: int, quality: Any, size: Any) -> dict[str, float]:
    """The expected units of ``n`` images: their worst-case output image tokens (gpt-image
    models: :data:`IMAGE_TOKENS`; ``auto`` or unset quality and size: the dearest) and the
    ``images@<quality>/<size>`` key of a per-image price (see ``LLMRequest.units``).

    >>> image_units("gpt-image-1", 2, "auto", None)
    {'images': 2, 'image_output_tokens': 12480, 'images@high/1024-x-1536': 2}
    """
    units: dict[str, float] = {"images": n}
    name = model.rsplit("/", 1)[-1].lower()
    if name.startswith("gpt-image"):
        q = quality if quality in ("low", "medium", "high") else "high"
        s = size if isinstance(size, str) and (q, size) in IMAGE_TOKENS else "1024x1536"
        units["image_output_tokens"] = n * IMAGE_TOKENS[(q, s)]
        units[f"images@{q}/{s.replace('x', '-x-')}"] = n
    elif name.startswith("dall-e-3"):
        q = "standard" if quality == "standard" else "hd"
        s = size if size in ("1024x1024", "1792x1024", "1024x1792") else "1792x1024"
        units[f"images@{q}/{s.replace('x', '-x-')}"] = n
    else:
        s = size if isinstance(size, str) and size not in ("", "auto") else "1024x1024"
        units[f"images@{s.replace('x', '-x-')}"] = n
    return units


# -- gating ------------------------------------------------------------------------------------


class _OpeningManager:
    """``audio.speech.with_streaming_response.create(...)``: gated when entered, and settled
    with the estimate as soon as the response opens (its body is the caller's to read)."""

    __slots__ = ("_tg_args", "_tg_kwargs", "_tg_manager", "_tg_method", "_tg_surface")

    def __init__(
        self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], surface: MediaSurface
    ) -> None:
        self._tg_method, self._tg_args, self._tg_kwargs, self._tg_surface = method, args, kwargs, surface
        self._tg_manager: Any = None

    def __enter__(self) -> Any:
        surface = self._tg_surface
        with begin(surface, self._tg_kwargs) as call:
            call.edit(surface.apply, call, self._tg_kwargs)
            with call.sending():
                self._tg_manager = self._tg_method(*self._tg_args, **self._tg_kwargs)
                entered = self._tg_manager.__enter__()
            call.finish(surface.outcome(call, None))
        return entered

    def __exit__(self, *exc: Any) -> Any:
        return self._tg_manager.__exit__(*exc) if self._tg_manager is not None else None

    async def __aenter__(self) -> Any:
        surface = self._tg_surface
        async with await abegin(surface, self._tg_kwargs) as call:
            call.edit(surface.apply, call, self._tg_kwargs)
            with call.sending():
                self._tg_manager = self._tg_method(*self._tg_args, **self._tg_kwargs)
                entered = await self._tg_manager.__aenter__()
            await call.afinish(surface.outcome(call, None))
        return entered

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._tg_manager.__aexit__(*exc) if self._tg_manager is not None else None


def _opening(method: Callable[..., Any], *, surface: MediaSurface) -> Callable[..., Any]:
    @functools.wraps(method)
    def opening(*args: Any, **kwargs: Any) -> Any:
        if gate.covered():
            return method(*args, **kwargs)
        return _OpeningManager(method, args, kwargs, surface)

    return opening


def media_routes(
    provider: str, server: Server, *, is_async: bool
) -> dict[tuple[str, ...], Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """The audio and image paths of an OpenAI client, each also under ``with_raw_response`` and
    ``with_streaming_response`` (merged into :func:`tollgate.providers.openai.routes`).

    They go through the same wrappers as every surface; only a speech body streamed to the
    caller (``audio.speech.with_streaming_response``) is settled as it opens, from the estimate.
    """
    speech = SpeechSurface(provider, server)
    surfaces: Mapping[tuple[str, ...], MediaSurface] = {
        ("audio", "transcriptions", "create"): TranscriptionSurface(provider, server),
        ("audio", "translations", "create"): TranslationSurface(provider, server),
        ("audio", "speech", "create"): speech,
        ("images", "generate"): ImagesSurface(provider, server),
        ("images", "edit"): ImageEditSurface(provider, server),
    }
    table = routes_for(surfaces, is_async=is_async, raw=list(surfaces))
    table[("audio", "speech", "with_streaming_response", "create")] = functools.partial(
        _opening, surface=speech
    )
    return table
