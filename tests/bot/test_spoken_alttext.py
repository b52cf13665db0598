"""A channel whose automatic alt text is spoken: real discord.py, the stand-in, real Redis, a real worker and a real
espeak-ng. The reply carries the description as a playable OGG/Opus file as long as its words."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import soundfile as sf
from bot_story import BotUnderTest, answered, replies, turn_on
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.record import SentFile
from captionbot.bot.standin.server import FileToPost

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed here (.ci/run installs it)")


def seconds_of(audio: SentFile) -> float:
    """How long the attached file plays, as a player decodes it; it must be OGG/Opus."""
    assert audio.filename == "description.ogg" and audio.data.startswith(b"OggS")
    info = sf.info(io.BytesIO(audio.data))
    assert (info.format, info.subtype) == ("OGG", "OPUS")
    samples, rate = sf.read(io.BytesIO(audio.data), dtype="float32")
    return float(samples.size / rate)


def said(content: str) -> str:
    return content.removeprefix("Image description: ").split("\n")[0]


@needs_espeak
async def test_a_channel_with_voice_on_attaches_the_spoken_description_and_others_do_not(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    confirmation = await turn_on(standin, "alt-text", voice=True, heatmap=True)
    assert "also spoken" in confirmation.content, confirmation.content
    await turn_on(standin, "gallery")

    spoken = await standin.post_message("alt-text", "alice", files=[photos[0]])
    [reply] = await replies(standin, spoken)
    assert reply.content.startswith("Image description: ")
    assert [f.filename for f in reply.files] == ["heatmap.png", "description.ogg"]
    words = len(said(reply.content).split())
    duration = seconds_of(reply.files[1])
    assert 1.5 <= words / duration <= 5, f"{duration:.1f} s of speech for {words} words"

    silent = await standin.post_message("gallery", "alice", files=[photos[1]])
    [plain] = await replies(standin, silent)
    assert plain.content.startswith("Image description: ") and plain.files == [], "voice is per channel"

    status = await answered(standin, await standin.slash("alt-text", "bob", "alttext status"))
    assert "also spoken" in status.content
    status = await answered(standin, await standin.slash("gallery", "bob", "alttext status"))
    assert "spoken" not in status.content


@needs_espeak
async def test_several_images_are_spoken_in_one_file_in_order(standin: StandIn, bot: BotUnderTest,
                                                              photos: list[FileToPost]) -> None:
    await turn_on(standin, "alt-text", voice=True)
    one = await standin.post_message("alt-text", "alice", files=[photos[2]])
    [single] = await replies(standin, one)
    three = await standin.post_message("alt-text", "alice", files=photos[2:5])
    [reply] = await replies(standin, three)

    assert reply.content.startswith("Image descriptions:\n1. ")
    [audio] = reply.files
    lines = reply.content.split("\n")[1:]
    words = sum(len(line.split()) for line in lines)  # "1. A dog …": the number is spoken as "Image 1:"
    duration = seconds_of(audio)
    assert 1.5 <= words / duration <= 5, f"{duration:.1f} s of speech for {words} words"
    assert duration > 2 * seconds_of(single.files[0]), "all three images are spoken, not only the first"


async def test_without_espeak_ng_voice_is_switched_on_with_a_warning_and_replies_carry_text(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on this PATH
    confirmation = await turn_on(standin, "alt-text", voice=True)
    assert "**on**" in confirmation.content and "not available" in confirmation.content
    assert "espeak-ng" in confirmation.content

    posted = await standin.post_message("alt-text", "alice", files=[photos[0]])
    [reply] = await replies(standin, posted)
    assert reply.content.startswith("Image description: ") and reply.files == []
    assert "spoken description not made" in caplog.text
