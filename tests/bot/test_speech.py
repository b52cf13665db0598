"""Spoken descriptions: a real espeak-ng makes a real OGG/Opus file that decodes, lasts as long as its words, and
stays within its bounds; without the engine the error says so."""

from __future__ import annotations

import asyncio
import io
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from captionbot.bot import speech

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)")

DESCRIPTION = "A brown dog is running through the grass with a red ball in its mouth"
SIGN = "STOP. Main Street Bakery, open every day"


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """The file's samples and rate, as a player would get them; it must be OGG/Opus."""
    info = sf.info(io.BytesIO(data))
    assert (info.format, info.subtype) == ("OGG", "OPUS")
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    return samples, rate


def words(text: str) -> int:
    return len(text.split())


def test_a_description_becomes_a_playable_ogg_opus_file_as_long_as_its_words() -> None:
    audio = speech.speak(DESCRIPTION)

    assert audio.data[:4] == b"OggS", "an Ogg page first"
    head = audio.data.index(b"OpusHead")
    assert head < 64 and audio.data[head + 9] == 1, "the first page holds a mono Opus header"
    assert (audio.mime, audio.filename) == ("audio/ogg", "description.ogg")
    assert audio.text == DESCRIPTION + "."

    samples, rate = decode(audio.data)
    assert abs(samples.size / rate - audio.duration_s) < 0.1
    assert 1.5 <= words(DESCRIPTION) / audio.duration_s <= 5, f"{audio.duration_s:.1f} s for {words(DESCRIPTION)} words"
    loud = np.abs(samples) > 0.05
    assert loud.mean() > 0.2, "mostly speech, not silence"
    assert np.sqrt(np.mean(samples**2)) < 0.5, "not clipped noise"
    assert 1_000 < len(audio.data) < 60_000, "a few seconds of speech at ~32 kbit/s"

    attachment = audio.discord_file(description="The description, spoken")
    assert attachment.filename == "description.ogg"
    assert attachment.fp.read() == audio.data


def test_text_in_the_image_is_spoken_after_the_description() -> None:
    alone = speech.speak(DESCRIPTION)
    both = speech.speak(DESCRIPTION, SIGN)

    assert both.text == f"{DESCRIPTION}. Text in image: {SIGN}"
    extra = words("Text in image:") + words(SIGN)
    assert both.duration_s - alone.duration_s >= extra / 5, "the text in the image adds its own words' time"
    assert 1.5 <= (words(DESCRIPTION) + extra) / both.duration_s <= 5

    # The audio starts with the description exactly as spoken alone: the text in the image comes after it.
    first, rate = decode(alone.data)
    second, _ = decode(both.data)
    span = first[: int((alone.duration_s - 0.3) * rate)]
    agreement = np.corrcoef(span, second[: span.size])[0, 1]
    assert agreement > 0.95, f"the spoken description differs ({agreement:.2f})"
    rest = second[first.size:]
    assert (np.abs(rest) > 0.05).mean() > 0.2, "and then more speech"


def test_bounds_hold_for_a_very_long_text() -> None:
    description = " ".join(f"A cat number {i} sits on a red sofa next to a window." for i in range(200))
    audio = speech.speak(description, SIGN * 50)

    assert len(audio.text) <= speech.MAX_CHARS
    assert audio.text.endswith("…")
    kept = audio.text[:-1].split()
    assert kept == description.split()[: len(kept)], "cut at a word boundary, the description first"
    assert audio.duration_s <= speech.MAX_SECONDS
    assert len(audio.data) <= speech.MAX_BYTES
    samples, rate = decode(audio.data)
    assert samples.size / rate <= speech.MAX_SECONDS + 0.1

    short = speech.speak(description, max_seconds=4.0)
    samples, rate = decode(short.data)
    assert short.duration_s == pytest.approx(4.0)
    assert samples.size / rate == pytest.approx(4.0, abs=0.1)

    with pytest.raises(speech.SpeechFailed, match="over the 2000-byte bound"):
        speech.speak(description, max_bytes=2_000)


def test_user_text_is_spoken_never_read_as_engine_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    text = "-w written.wav --version -v de --help"
    audio = speech.speak(text)

    assert list(tmp_path.iterdir()) == [], "no option took effect: nothing was written"
    assert audio.text == text + "."
    assert audio.duration_s >= words(text) / 5, "every word was spoken"
    decode(audio.data)


def test_control_characters_and_blank_input() -> None:
    assert speech.spoken_text("a\x00dog\n\n on\tgrass", "  ") == "a dog on grass."
    with pytest.raises(ValueError, match="nothing to speak"):
        speech.speak(" \n ", "\t")


def test_without_espeak_ng_the_error_says_speech_is_unavailable(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no espeak-ng on it
    with pytest.raises(speech.SpeechUnavailable, match=r"espeak-ng is not installed \(apt-get install espeak-ng\)"):
        speech.speak(DESCRIPTION)


def test_a_hung_engine_is_stopped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hung = tmp_path / "espeak-ng"
    hung.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 30\n")
    hung.chmod(hung.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(speech.SpeechFailed, match="did not finish in 1 s"):
        speech.synthesize_wav("hello", timeout_s=1.0)


async def test_speaking_leaves_the_event_loop_free() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    ticker = asyncio.create_task(tick())
    audio = await speech.speak_async(DESCRIPTION, SIGN)
    ticker.cancel()
    assert ticks >= 2, "the loop ran other tasks while espeak-ng spoke"
    assert audio.text.endswith(SIGN)


def test_the_speech_module_loads_neither_torch_nor_onnxruntime() -> None:
    code = ("import sys, captionbot.bot.speech as s; s.speak('a dog'); "
            "print(sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
