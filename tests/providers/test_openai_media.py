"""OpenAI's audio and image endpoints through ``tollgate.instrument(client)``: transcriptions,
translations, speech, image generation and edits; sync and async, streams and raw responses,
budgets on the wire.

Real openai SDK, HTTP replayed by vcrpy from constructed cassettes in cassettes/openai/
(``audio_*.yaml``, ``images_*.yaml``). Expected costs are the price table's own numbers, applied
by hand.
"""

from __future__ import annotations

import io
import json
import re
import wave
from typing import Any

import pytest

import tollgate
from tollgate.pricing import default_table
from tollgate.pricing.tokens import count_text
from tollgate.providers.openai_media import (
    ASSUMED_BYTES_PER_SECOND,
    SPOKEN_CHARACTERS_PER_SECOND,
    audio_seconds,
    wav_seconds,
)

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

TEXT = "The quick brown fox jumps over the lazy dog."
HELLO = "Hello from tollgate."
PROMPT = "A lighthouse at dusk"


class Wire(list):  # type: ignore[type-arg]
    """The fields of each request the SDK sent: a JSON body, or a multipart form's text fields."""

    def hook(self, request: Any) -> None:
        body = request.read()
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            fields = re.findall(
                rb'name="([^"]+)"\r\n(?:Content-Type: [^\r]*\r\n)?\r\n(.*?)\r\n--', body, re.S
            )
            self.append({k.decode(): v.decode("utf-8", "replace") for k, v in fields})
        else:
            self.append(json.loads(body))

    async def ahook(self, request: Any) -> None:
        await request.aread()
        self.hook(request)


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def mclient(wire: Wire) -> Any:
    http = httpx.Client(event_hooks={"request": [wire.hook]})
    return tollgate.instrument(openai.OpenAI(api_key="sk-test", max_retries=0, http_client=http))


@pytest.fixture
def amclient(wire: Wire) -> Any:
    http = httpx.AsyncClient(event_hooks={"request": [wire.ahook]})
    return tollgate.instrument(openai.AsyncOpenAI(api_key="sk-test", max_retries=0, http_client=http))


def wav(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(int(seconds * rate) * 2))
    return buf.getvalue()


CLIP = ("clip.wav", wav(2.0), "audio/wav")  # 2.0 s, read exactly from the WAV header


def only_record() -> tollgate.CallRecord:
    (record,) = tollgate.config.settings().ledger.records()
    return record


def price(model: str) -> Any:
    found = default_table().lookup(model)
    assert found is not None, model
    return found


# -- transcriptions -----------------------------------------------------------------------------


def test_whisper_json_billed_from_duration_usage(mclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_whisper_json.yaml"):
        result = mclient.audio.transcriptions.create(model="whisper-1", file=CLIP)
    assert result.text == TEXT
    record = only_record()
    assert (record.provider, record.operation, record.request_model) == (
        "openai",
        "transcription",
        "whisper-1",
    )
    assert record.status == "ok" and not record.estimated and record.priced
    assert record.usage.units == {"audio_seconds": 9.0}
    assert record.usd == pytest.approx(9 * price("whisper-1").input_per_second)
    assert wire[0]["model"] == "whisper-1"


async def test_whisper_json_async(amclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_whisper_json.yaml"):
        result = await amclient.audio.transcriptions.create(model="whisper-1", file=CLIP)
    assert result.text == TEXT
    record = only_record()
    assert record.operation == "transcription" and not record.estimated
    assert record.usd == pytest.approx(9 * 0.0001) == pytest.approx(9 * price("whisper-1").input_per_second)
    assert wire[0]["model"] == "whisper-1"


def test_whisper_verbose_json_billed_from_duration(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_whisper_verbose.yaml"):
        result = mclient.audio.transcriptions.create(
            model="whisper-1", file=CLIP, response_format="verbose_json"
        )
    assert result.duration == 12.5
    record = only_record()
    assert record.usage.units == {"audio_seconds": 12.5} and not record.estimated
    assert record.usd == pytest.approx(12.5 * price("whisper-1").input_per_second)


def test_transcription_billed_per_token(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_tokens.yaml"):
        mclient.audio.transcriptions.create(model="gpt-4o-transcribe", file=CLIP)
    record = only_record()
    u = record.usage
    assert (u.input_tokens, u.audio_input_tokens, u.output_tokens) == (172, 160, 10)
    assert not record.estimated and not u.units
    p = price("gpt-4o-transcribe")
    assert record.usd == pytest.approx(12 * p.input + 160 * p.audio_input + 10 * p.output)


async def test_transcription_billed_per_token_async(amclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_tokens.yaml"):
        await amclient.audio.transcriptions.create(model="gpt-4o-transcribe", file=CLIP)
    record = only_record()
    p = price("gpt-4o-transcribe")
    assert record.usage.audio_input_tokens == 160
    assert record.usd == pytest.approx(12 * p.input + 160 * p.audio_input + 10 * p.output)


def test_transcription_text_format_is_estimated_from_the_file(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_text.yaml"):
        result = mclient.audio.transcriptions.create(model="whisper-1", file=CLIP, response_format="text")
    assert isinstance(result, str) and result.strip() == TEXT
    record = only_record()
    assert record.status == "ok" and record.estimated
    assert record.usage.units == {"audio_seconds": pytest.approx(2.0)}  # from the WAV header
    assert record.usd == pytest.approx(2.0 * price("whisper-1").input_per_second)


def test_transcription_raw_response(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_whisper_json.yaml"):
        raw = mclient.audio.transcriptions.with_raw_response.create(model="whisper-1", file=CLIP)
    assert raw.parse().text == TEXT
    record = only_record()
    assert record.usage.units == {"audio_seconds": 9.0} and not record.estimated


async def test_transcription_raw_response_async(amclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_tokens.yaml"):
        raw = await amclient.audio.transcriptions.with_raw_response.create(
            model="gpt-4o-transcribe", file=CLIP
        )
    assert raw.parse().text == TEXT
    assert only_record().usage.output_tokens == 10


def test_transcription_stream(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_stream.yaml"):
        stream = mclient.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=CLIP, stream=True)
        text = "".join(e.delta for e in stream if e.type == "transcript.text.delta")
    assert text == TEXT
    record = only_record()
    assert record.stream and record.status == "ok" and not record.estimated
    assert (record.usage.input_tokens, record.usage.audio_input_tokens, record.usage.output_tokens) == (
        172,
        160,
        10,
    )
    p = price("gpt-4o-mini-transcribe")
    assert record.usd == pytest.approx(12 * p.input + 160 * p.audio_input + 10 * p.output)


def test_transcription_stream_left_early_still_bills_the_audio_sent(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_stream.yaml"):
        stream = mclient.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=CLIP, stream=True)
        next(stream), next(stream)  # "The", " quick": no usage event yet
        stream.close()
    record = only_record()
    assert record.status == "abandoned" and record.estimated
    assert record.usage.units == {"audio_seconds": 2.0}  # the upload's length, read pre-flight
    p = price("gpt-4o-mini-transcribe")
    words = count_text("The quick", "gpt-4o-mini-transcribe", "openai")
    # The text it may have written before it saw the close: the model's maximum output, as
    # pre-flight reserved; what was read is counted in the record.
    step = record.decisions[-1]
    assert (step["output_tokens_counted"], step["output_tokens_charged"]) == (words, p.max_output_tokens)
    assert record.usd == pytest.approx(2.0 * p.input_per_second + p.max_output_tokens * p.output)


async def test_transcription_stream_async(amclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_stream.yaml"):
        stream = await amclient.audio.transcriptions.create(
            model="gpt-4o-mini-transcribe", file=CLIP, stream=True
        )
        events = [e async for e in stream]
    assert events[-1].type == "transcript.text.done"
    record = only_record()
    assert record.stream and not record.estimated and record.usage.output_tokens == 10


def test_transcription_malformed_usage_is_estimated(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_malformed_usage.yaml"):
        result = mclient.audio.transcriptions.create(model="gpt-4o-transcribe", file=CLIP)
    assert result.text == TEXT  # the caller's response is untouched
    record = only_record()
    assert record.status == "ok" and record.estimated
    assert record.usage.units == {"audio_seconds": pytest.approx(2.0)}
    assert record.usage.output_tokens == count_text(TEXT, "gpt-4o-transcribe", "openai")
    p = price("gpt-4o-transcribe")
    assert record.usd == pytest.approx(2.0 * p.input_per_second + record.usage.output_tokens * p.output)


# -- translations -------------------------------------------------------------------------------


def test_translation_verbose(mclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_translation_verbose.yaml"):
        result = mclient.audio.translations.create(
            model="whisper-1", file=CLIP, response_format="verbose_json"
        )
    assert result.text == TEXT
    record = only_record()
    assert (record.operation, record.usage.units, record.estimated) == (
        "translation",
        {"audio_seconds": 7.25},
        False,
    )
    assert record.usd == pytest.approx(7.25 * price("whisper-1").input_per_second)
    assert wire[0]["model"] == "whisper-1"


async def test_translation_json_async_is_estimated(amclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_translation_json.yaml"):
        await amclient.audio.translations.create(model="whisper-1", file=CLIP)
    record = only_record()
    assert record.operation == "translation" and record.estimated
    assert record.usd == pytest.approx(2.0 * price("whisper-1").input_per_second)


# -- speech -------------------------------------------------------------------------------------


def test_speech_per_character(mclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_speech_mp3.yaml"):
        audio = mclient.audio.speech.create(model="tts-1", voice="alloy", input=HELLO)
    assert audio.content.startswith(b"ID3")
    record = only_record()
    assert (record.operation, record.request_model, record.estimated) == ("speech", "tts-1", False)
    assert record.usage.units == {"characters": len(HELLO)}
    assert record.usd == pytest.approx(len(HELLO) * price("tts-1").input_per_character)
    assert wire[0] == {"input": HELLO, "model": "tts-1", "voice": "alloy"}


async def test_speech_per_character_async(amclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_speech_mp3.yaml"):
        audio = await amclient.audio.speech.create(model="tts-1", voice="alloy", input=HELLO)
    assert audio.content.startswith(b"ID3")
    assert only_record().usd == pytest.approx(len(HELLO) * 1.5e-05)


def test_speech_sse_usage(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_speech_sse.yaml"):
        mclient.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input=HELLO, stream_format="sse")
    record = only_record()
    u = record.usage
    assert (u.input_tokens, u.output_tokens, u.audio_output_tokens) == (14, 101, 101) and not record.estimated
    p = price("gpt-4o-mini-tts")
    assert record.usd == pytest.approx(14 * p.input + 101 * p.audio_output)


async def test_speech_sse_usage_async(amclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_speech_sse.yaml"):
        await amclient.audio.speech.create(
            model="gpt-4o-mini-tts", voice="alloy", input=HELLO, stream_format="sse"
        )
    assert only_record().usage.audio_output_tokens == 101


def test_speech_per_token_model_without_usage_is_estimated(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_speech_mini_mp3.yaml"):
        mclient.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input=HELLO)
    record = only_record()
    seconds = len(HELLO) / SPOKEN_CHARACTERS_PER_SECOND
    tokens = count_text(HELLO, "gpt-4o-mini-tts", "openai")
    assert record.estimated and record.usage.input_tokens == tokens
    assert record.usage.units == {"characters": len(HELLO), "audio_output_seconds": pytest.approx(seconds)}
    p = price("gpt-4o-mini-tts")
    assert record.usd == pytest.approx(tokens * p.input + seconds * p.output_per_second)


def test_speech_pcm_duration_from_the_bytes(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_speech_pcm.yaml"):
        audio = mclient.audio.speech.create(
            model="gpt-4o-mini-tts", voice="alloy", input="Hi.", response_format="pcm"
        )
    assert len(audio.content) == 9600
    record = only_record()
    assert record.estimated and record.usage.units["audio_output_seconds"] == pytest.approx(0.2)
    p = price("gpt-4o-mini-tts")
    tokens = count_text("Hi.", "gpt-4o-mini-tts", "openai")
    assert record.usd == pytest.approx(tokens * p.input + 0.2 * p.output_per_second)


def test_speech_raw_response(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_speech_mp3.yaml"):
        raw = mclient.audio.speech.with_raw_response.create(model="tts-1", voice="alloy", input=HELLO)
    assert raw.headers["content-type"] == "audio/mpeg"
    assert raw.parse().content.startswith(b"ID3")
    assert only_record().usage.units == {"characters": len(HELLO)}


def test_speech_streaming_response_is_not_read_by_tollgate(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/audio_speech_mp3.yaml"),
        mclient.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=HELLO
        ) as response,
    ):
        record = only_record()  # settled as it opened, from the request
        assert record.usage.units == {"characters": len(HELLO)} and not record.estimated
        body = b"".join(response.iter_bytes())
    assert body.startswith(b"ID3")
    assert len(tollgate.config.settings().ledger.records()) == 1


async def test_speech_streaming_response_async(amclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_speech_mini_mp3.yaml"):
        async with amclient.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input=HELLO
        ) as response:
            body = b"".join([chunk async for chunk in response.iter_bytes()])
    assert body.startswith(b"ID3")
    record = only_record()
    assert record.estimated and record.usage.units["characters"] == len(HELLO)


def test_speech_per_character_estimate_preflight(mclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    text = "x" * 1000
    with (
        replay("openai/audio_speech_mp3.yaml") as cassette,
        tollgate.budget(usd=0.01),
        pytest.raises(tollgate.BudgetExceeded) as raised,
    ):
        mclient.audio.speech.create(model="tts-1-hd", voice="alloy", input=text)
    assert cassette.play_count == 0 and wire == []
    assert raised.value.requested == pytest.approx(1000 * price("tts-1-hd").input_per_character)  # $0.03
    assert only_record().status == "blocked"


# -- images -------------------------------------------------------------------------------------


def _gen(client: Any, **kwargs: Any) -> Any:
    return client.images.generate(prompt=PROMPT, **kwargs)


def test_image_generation_usage(mclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/images_generate_gpt_image.yaml"):
        result = _gen(mclient, model="gpt-image-1", quality="high", size="1024x1024")
    assert result.data[0].b64_json
    record = only_record()
    assert (record.operation, record.request_model, record.estimated) == (
        "image_generation",
        "gpt-image-1",
        False,
    )
    u = record.usage
    assert (u.input_tokens, u.output_tokens) == (50, 4160)
    assert u.units == {"image_input_tokens": 0, "image_output_tokens": 4160}
    p = price("gpt-image-1")
    assert record.usd == pytest.approx(50 * p.input + 4160 * p.image_output)  # $0.16665
    assert wire[0]["model"] == "gpt-image-1"


async def test_image_generation_usage_async(amclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/images_generate_gpt_image.yaml"):
        await _gen(amclient, model="gpt-image-1", quality="high", size="1024x1024")
    p = price("gpt-image-1")
    assert only_record().usd == pytest.approx(50 * p.input + 4160 * p.image_output)


def test_image_generation_output_details(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/images_generate_gpt_image_details.yaml"):
        _gen(mclient, model="gpt-image-1-mini", n=2, quality="medium", size="1024x1024")
    record = only_record()
    assert record.usage.units["image_output_tokens"] == 2112
    p = price("gpt-image-1-mini")
    assert record.usd == pytest.approx(50 * p.input + 2112 * p.image_output)


def test_image_generation_per_image_model_without_usage(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/images_generate_dalle.yaml"),
        pytest.warns(tollgate.UnpricedModelWarning, match="dall-e-3"),
    ):
        _gen(mclient, model="dall-e-3")
    record = only_record()
    assert record.usage.units == {"images": 1} and not record.estimated
    assert (record.priced, record.usd) == (False, 0.0)  # dall-e-3 is not in the bundled table


def test_image_generation_malformed_usage_is_estimated(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/images_generate_malformed_usage.yaml"):
        result = _gen(mclient, model="gpt-image-1", quality="low", size="1024x1024")
    assert result.data[0].b64_json  # the caller's response is untouched
    record = only_record()
    assert record.status == "ok" and record.estimated
    assert record.usage.units == {"images": 1, "image_output_tokens": 272}
    p = price("gpt-image-1")
    prompt = count_text(PROMPT, "gpt-image-1", "openai")
    assert record.usage.input_tokens == prompt
    assert record.usd == pytest.approx(prompt * p.input + 272 * p.image_output)


def test_image_generation_raw_response(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/images_generate_gpt_image.yaml"):
        raw = mclient.images.with_raw_response.generate(prompt=PROMPT, model="gpt-image-1", quality="high")
    assert raw.parse().usage.output_tokens == 4160
    assert only_record().usage.output_tokens == 4160


def test_image_generation_stream(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/images_generate_stream.yaml"):
        stream = _gen(
            mclient, model="gpt-image-1", quality="low", size="1024x1024", stream=True, partial_images=1
        )
        kinds = [e.type for e in stream]
    assert kinds == ["image_generation.partial_image", "image_generation.completed"]
    record = only_record()
    assert record.stream and not record.estimated
    assert record.usage.units == {"image_input_tokens": 0, "image_output_tokens": 372}
    p = price("gpt-image-1")
    assert record.usd == pytest.approx(50 * p.input + 372 * p.image_output)


async def test_image_generation_stream_async(amclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/images_generate_stream.yaml"):
        stream = await _gen(amclient, model="gpt-image-1", quality="low", stream=True, partial_images=1)
        events = [e async for e in stream]
    assert events[-1].type == "image_generation.completed"
    assert only_record().usage.output_tokens == 372


def test_image_edit(mclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/images_edit_gpt_image.yaml"):
        mclient.images.edit(
            model="gpt-image-1", image=("door.png", b"\x89PNG tiny", "image/png"), prompt="Add a red door"
        )
    record = only_record()
    assert (record.operation, record.estimated) == ("image_edit", False)
    assert record.usage.units == {"image_input_tokens": 323, "image_output_tokens": 272}
    p = price("gpt-image-1")
    assert record.usd == pytest.approx(50 * p.input + 323 * p.image_input + 272 * p.image_output)
    assert wire[0]["model"] == "gpt-image-1" and wire[0]["prompt"] == "Add a red door"


async def test_image_edit_async(amclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/images_edit_gpt_image.yaml"):
        await amclient.images.edit(
            model="gpt-image-1", image=("door.png", b"\x89PNG tiny", "image/png"), prompt="Add a red door"
        )
    p = price("gpt-image-1")
    assert only_record().usd == pytest.approx(50 * p.input + 323 * p.image_input + 272 * p.image_output)
    assert wire[0]["model"] == "gpt-image-1"


# -- budgets ------------------------------------------------------------------------------------


def test_image_preflight_uses_the_per_image_price(mclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/images_generate_gpt_image.yaml") as cassette,
        tollgate.budget(usd=0.1),
        pytest.raises(tollgate.BudgetExceeded) as raised,
    ):
        _gen(mclient, model="gpt-image-1", quality="high", size="1024x1024")
    assert cassette.play_count == 0 and wire == []
    p = price("gpt-image-1")
    listed = price("high/1024-x-1024/gpt-image-1").input_per_image  # $0.167
    prompt = count_text(PROMPT, "gpt-image-1", "openai")
    assert raised.value.requested == pytest.approx(listed + prompt * p.input)
    assert only_record().status == "blocked"


def test_image_preflight_auto_is_the_dearest(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/images_generate_gpt_image.yaml"),
        tollgate.budget(usd=0.01),
        pytest.raises(tollgate.BudgetExceeded) as raised,
    ):
        _gen(mclient, model="gpt-image-1", n=2)  # quality and size unset: auto
    listed = price("high/1024-x-1536/gpt-image-1").input_per_image  # $0.25
    prompt = count_text(PROMPT, "gpt-image-1", "openai")
    assert raised.value.requested == pytest.approx(2 * listed + prompt * price("gpt-image-1").input)


def test_image_preflight_from_image_tokens_without_a_listed_price(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    # gpt-image-1-mini lists no high-quality per-image price: the documented token count prices it.
    with (
        replay("openai/images_generate_gpt_image.yaml"),
        tollgate.budget(usd=0.001),
        pytest.raises(tollgate.BudgetExceeded) as raised,
    ):
        _gen(mclient, model="gpt-image-1-mini", quality="high", size="1536x1024")
    p = price("gpt-image-1-mini")
    prompt = count_text(PROMPT, "gpt-image-1-mini", "openai")
    assert raised.value.requested == pytest.approx(6208 * p.image_output + prompt * p.input)


async def test_image_block_async_sends_nothing(amclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/images_generate_gpt_image.yaml") as cassette, tollgate.budget(usd=0.01):
        with pytest.raises(tollgate.BudgetExceeded):
            await _gen(amclient, model="gpt-image-1", quality="high", size="1024x1024")
        assert cassette.play_count == 0 and wire == []
    assert only_record().status == "blocked"


def test_image_downgrade(mclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/images_generate_gpt_image.yaml"),
        tollgate.budget(usd=0.1, on_exceed="downgrade", downgrade={"gpt-image-1": "gpt-image-1-mini"}),
    ):
        _gen(mclient, model="gpt-image-1", quality="high", size="1024x1024")  # $0.167, mini: ~$0.033
    assert wire[0]["model"] == "gpt-image-1-mini"
    record = only_record()
    assert record.request_model == "gpt-image-1" and record.decisions[0]["to"] == "gpt-image-1-mini"
    p = price("gpt-image-1-mini")  # the reply is billed at the model that answered
    assert record.usd == pytest.approx(50 * p.input + 4160 * p.image_output)


def test_transcription_downgrade_on_the_wire(mclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    long_clip = ("clip.wav", wav(60.0), "audio/wav")  # 60 s: $0.006 at gpt-4o-transcribe's per-minute rate
    with (
        replay("openai/audio_transcription_tokens.yaml"),
        tollgate.budget(
            usd=0.02, on_exceed="downgrade", downgrade={"gpt-4o-transcribe": "gpt-4o-mini-transcribe"}
        ),
    ):
        mclient.audio.transcriptions.create(model="gpt-4o-transcribe", file=long_clip)
    assert wire[0]["model"] == "gpt-4o-mini-transcribe"
    record = only_record()
    assert record.decisions[0] == {
        "action": "downgrade",
        "from": "gpt-4o-transcribe",
        "to": "gpt-4o-mini-transcribe",
    }
    p = price("gpt-4o-mini-transcribe")
    assert record.usd == pytest.approx(12 * p.input + 160 * p.audio_input + 10 * p.output)


async def test_speech_downgrade_async(amclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    text = "y" * 500  # tts-1-hd: $0.015, tts-1: $0.0075
    with (
        replay("openai/audio_speech_mp3.yaml"),
        tollgate.budget(usd=0.01, on_exceed="downgrade", downgrade={"tts-1-hd": "tts-1"}),
    ):
        await amclient.audio.speech.create(model="tts-1-hd", voice="alloy", input=text)
    assert wire[0]["model"] == "tts-1"
    record = only_record()
    assert record.usd == pytest.approx(500 * price("tts-1").input_per_character)


def test_transcription_block_sends_nothing(mclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/audio_transcription_whisper_json.yaml") as cassette, tollgate.budget(usd=0.0001):
        with pytest.raises(tollgate.BudgetExceeded):
            mclient.audio.transcriptions.create(model="whisper-1", file=CLIP)  # 2 s: $0.0002
        assert cassette.play_count == 0 and wire == []
    assert only_record().status == "blocked"


@pytest.mark.parametrize("action", ["clamp", "truncate"])
def test_clamp_and_truncate_do_not_apply(mclient, replay, wire, action) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/audio_speech_mp3.yaml") as cassette,
        tollgate.budget(usd=0.0001, on_exceed=action),
        pytest.raises(tollgate.BudgetExceeded) as raised,
    ):
        mclient.audio.speech.create(model="tts-1", voice="alloy", input=HELLO * 3)
    assert cassette.play_count == 0 and wire == []
    assert f"{action} does not apply to openai speech (tts-1)" in str(raised.value)
    record = only_record()
    assert record.status == "blocked"
    assert record.decisions[0] == {
        "action": "skip",
        "skipped": action,
        "reason": f"{action} does not apply to openai speech (tts-1)",
    }


async def test_clamp_does_not_apply_to_images_async(amclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/images_generate_gpt_image.yaml"),
        tollgate.budget(tokens=100, on_exceed="clamp"),
        pytest.raises(tollgate.BudgetExceeded, match="clamp does not apply"),
    ):
        await _gen(amclient, model="gpt-image-1", quality="low", size="1024x1024")
    assert wire == []


# -- telemetry ----------------------------------------------------------------------------------


def test_spans_name_the_operation(mclient, replay, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    export = pytest.importorskip("opentelemetry.sdk.trace.export")
    memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    from tollgate import telemetry

    exporter = memory.InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer("test"))
    monkeypatch.setattr(telemetry, "_no_sdk", lambda module, name: False)
    with replay("openai/audio_transcription_whisper_json.yaml"):
        mclient.audio.transcriptions.create(model="whisper-1", file=CLIP)
    with replay("openai/audio_speech_mp3.yaml"):
        mclient.audio.speech.create(model="tts-1", voice="alloy", input=HELLO)
    with replay("openai/images_generate_gpt_image.yaml"):
        _gen(mclient, model="gpt-image-1", quality="high", size="1024x1024")
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        "transcription whisper-1",
        "speech tts-1",
        "image_generation gpt-image-1",
    ]
    assert [s.attributes["gen_ai.operation.name"] for s in spans] == [
        "transcription",
        "speech",
        "image_generation",
    ]
    assert spans[2].attributes["gen_ai.usage.output_tokens"] == 4160


# -- reading uploads ----------------------------------------------------------------------------


def test_audio_seconds_reads_a_wav_header_exactly() -> None:
    assert audio_seconds(wav(3.25)) == pytest.approx(3.25)
    assert audio_seconds(("a.wav", wav(1.0, rate=16000))) == pytest.approx(1.0)
    data = wav(2.0)
    assert wav_seconds(data[:4096], len(data)) == pytest.approx(2.0)


def test_audio_seconds_leaves_a_file_where_it_was(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = io.BytesIO(b"junk" + wav(1.5))
    f.seek(4)
    assert audio_seconds(f) == pytest.approx(1.5)
    assert f.tell() == 4
    path = tmp_path / "clip.mp3"
    path.write_bytes(bytes(48_000))
    assert audio_seconds(path) == pytest.approx(48_000 / ASSUMED_BYTES_PER_SECOND)
    with path.open("rb") as opened:
        assert audio_seconds(opened) == pytest.approx(3.0) and opened.tell() == 0


def test_audio_seconds_unreadable_is_none() -> None:
    class Pipe:
        def read(self, n: int = -1) -> bytes:
            raise AssertionError("tollgate must not consume a stream the SDK will read")

        def seekable(self) -> bool:
            return False

    assert audio_seconds(Pipe()) is None
    assert audio_seconds(None) is None


def test_transcription_of_a_file_object_sends_all_of_it(mclient, replay, wire) -> None:  # type: ignore[no-untyped-def]
    f = io.BytesIO(wav(2.0))
    f.name = "clip.wav"
    with replay("openai/audio_transcription_whisper_json.yaml"):
        mclient.audio.transcriptions.create(model="whisper-1", file=f)
    assert only_record().status == "ok"
    assert wire[0]["model"] == "whisper-1"


# -- with_streaming_response (the caller reads the body; tollgate reads it through the proxy) ---


def test_transcription_streaming_response(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/audio_transcription_whisper_json.yaml"),
        mclient.audio.transcriptions.with_streaming_response.create(model="whisper-1", file=CLIP) as response,
    ):
        assert response.parse().text == TEXT
    record = only_record()
    assert record.usage.units == {"audio_seconds": 9.0} and not record.estimated
    assert record.usd == pytest.approx(9 * price("whisper-1").input_per_second)


def test_transcription_streaming_response_left_unread_still_bills_the_audio(mclient, replay) -> None:  # type: ignore[no-untyped-def]
    with (
        replay("openai/audio_transcription_whisper_json.yaml"),
        mclient.audio.transcriptions.with_streaming_response.create(model="whisper-1", file=CLIP),
    ):
        pass  # the body is never read
    record = only_record()
    assert record.status == "abandoned" and record.estimated
    assert record.usage.units == {"audio_seconds": 2.0}  # the upload's length, read pre-flight
    assert record.usd == pytest.approx(2.0 * price("whisper-1").input_per_second)


async def test_image_streaming_response_async(amclient, replay) -> None:  # type: ignore[no-untyped-def]
    with replay("openai/images_generate_gpt_image.yaml"):
        async with amclient.images.with_streaming_response.generate(
            prompt=PROMPT, model="gpt-image-1", quality="high", size="1024x1024"
        ) as response:
            body = await response.json()
    assert body["usage"]["output_tokens"] == 4160
    record = only_record()
    assert record.usage.units == {"image_input_tokens": 0, "image_output_tokens": 4160}
    p = price("gpt-image-1")
    assert record.usd == pytest.approx(50 * p.input + 4160 * p.image_output)
