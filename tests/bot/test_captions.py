"""People ask for descriptions with /caption and "Describe image"; bad files get a clear, private answer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from bot_story import BotUnderTest, answered, quiet, replies, turn_on
from captionbot.bot.config import BotConfig
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost
from captionbot.bot.standin.world import ATTACH_FILES, SEND_MESSAGES
from queue_harness import running_worker
from redis.asyncio import Redis

from captionbot.formats import USER_MESSAGES, ErrorCode
from captionbot.settings import Settings

if TYPE_CHECKING:
    from captionbot.queue.worker import CaptionModel, Worker

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def test_caption_with_heatmap_is_deferred_then_answered_with_a_png(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    asked = await standin.slash("general", "alice", "caption", image=photos[0], heatmap=True)
    answer = await answered(standin, asked)

    first = next(s for s in standin.sent if s.interaction_id == asked.id)
    assert first.kind == "defer", "the interaction is acknowledged before any slow work"
    assert answer.kind == "followup" and not answer.ephemeral
    assert answer.content.startswith("Image description: ")
    [png] = answer.files
    assert png.filename == "heatmap.png" and png.data.startswith(PNG_SIGNATURE)
    assert answer.payload["allowed_mentions"]["parse"] == []


async def test_describe_image_on_a_message_with_three_photos_gives_three_captions_in_one_answer(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    posted = await standin.post_message("general", "bob", "our trip", files=photos[:3])
    asked = await standin.context_menu("general", "alice", "Describe image", posted)
    answer = await answered(standin, asked)

    lines = answer.content.splitlines()
    assert lines[0] == "Image descriptions:"
    assert [line[:3] for line in lines[1:]] == ["1. ", "2. ", "3. "]
    assert all(len(line) > 5 for line in lines[1:])
    assert len(standin.answers_to(asked.id)) == 1


async def test_bad_files_get_a_clear_private_message_and_the_bot_keeps_serving(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost], oversized_photo: FileToPost) -> None:
    truncated = FileToPost("cut.jpg", photos[1].data[: len(photos[1].data) // 2], "image/jpeg")
    renamed_pdf = FileToPost("photo.png", b"%PDF-1.4\n" + b"0" * 2000, "image/png")
    text_file = FileToPost("notes.txt", b"just some words", "text/plain")
    cases = [(oversized_photo, ErrorCode.TOO_LARGE), (renamed_pdf, ErrorCode.NOT_AN_IMAGE),
             (text_file, ErrorCode.NOT_AN_IMAGE), (truncated, ErrorCode.TRUNCATED)]
    for bad, code in cases:
        answer = await answered(standin, await standin.slash("general", "alice", "caption", image=bad))
        assert answer.ephemeral, f"{bad.filename}: errors go only to the person who asked"
        assert answer.content == USER_MESSAGES[code], bad.filename

    good = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[2]))
    assert good.content.startswith("Image description: ")


async def test_a_broken_photo_in_an_alt_text_channel_gets_a_clear_reply(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await turn_on(standin, "alt-text")
    truncated = FileToPost("cut.jpg", photos[1].data[: len(photos[1].data) // 3], "image/jpeg")
    posted = await standin.post_message("alt-text", "alice", files=[truncated])
    [reply] = await replies(standin, posted)
    assert reply.content == USER_MESSAGES[ErrorCode.TRUNCATED]


async def test_files_are_only_fetched_from_discords_cdn(standin: StandIn, bot: BotUnderTest,
                                                        photos: list[FileToPost]) -> None:
    elsewhere = FileToPost("dog.jpg", photos[0].data, "image/jpeg", url="http://198.51.100.7/dog.jpg")
    answer = await answered(standin, await standin.slash("general", "alice", "caption", image=elsewhere))
    assert answer.content == USER_MESSAGES[ErrorCode.DOWNLOAD_FAILED] and answer.ephemeral


async def test_a_download_that_crawls_is_given_up_with_a_message(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], worker: Worker, photos: list[FileToPost]) -> None:
    await make_bot(download_timeout_s=0.5).start()
    standin.faults.slow_cdn(0.4)  # 16 KiB every 0.4 s
    answer = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[0]))
    assert answer.content == USER_MESSAGES[ErrorCode.DOWNLOAD_FAILED]
    standin.faults.clear()
    again = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[0]))
    assert again.content.startswith("Image description: ")


async def test_someone_asking_too_fast_is_told_to_wait(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], worker: Worker, photos: list[FileToPost]) -> None:
    await make_bot(user_limit=2).start()
    answers = [await answered(standin, await standin.slash("general", "alice", "caption", image=p))
               for p in photos[:3]]
    assert [a.content.startswith("Image description: ") for a in answers] == [True, True, False]
    assert answers[2].content == ("You're asking a bit too fast: at most 2 images a minute per person. "
                                  "Please wait a moment.") and answers[2].ephemeral
    other = await answered(standin, await standin.slash("general", "bob", "caption", image=photos[3]))
    assert other.content.startswith("Image description: "), "the limit is per person"


async def test_missing_permissions_are_logged_not_fatal(standin: StandIn, bot: BotUnderTest, photos: list[FileToPost],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    await turn_on(standin, "alt-text", heatmap=True)
    await turn_on(standin, "gallery")
    standin.world.channel("alt-text").bot_denied = ATTACH_FILES
    standin.world.channel("gallery").bot_denied = SEND_MESSAGES

    no_attach = await standin.post_message("alt-text", "alice", files=[photos[0]])
    [reply] = await replies(standin, no_attach)
    assert reply.content.startswith("Image description: ") and reply.message.attachments == []

    no_send = await standin.post_message("gallery", "alice", files=[photos[1]])
    await quiet(standin)
    assert standin.replies_to(no_send) == []
    assert any(s.status == 403 for s in standin.sent)
    assert "cannot reply in channel" in caplog.text

    standin.world.channel("alt-text").bot_denied = 0
    later = await standin.post_message("alt-text", "bob", files=[photos[2]])
    [reply] = await replies(standin, later)
    assert reply.message.attachments and reply.message.attachments[0].filename == "heatmap.png"


async def test_without_the_message_content_intent_posted_photos_are_invisible(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], worker: Worker, photos: list[FileToPost]) -> None:
    """Why alt-text automation needs the privileged intent (docs/bot.md): Discord strips the attachments."""
    await make_bot().start(alt_text=False)
    await turn_on(standin, "alt-text")
    posted = await standin.post_message("alt-text", "alice", files=[photos[0]])
    await quiet(standin)
    assert standin.replies_to(posted) == []
    answer = await answered(standin, await standin.context_menu("alt-text", "alice", "Describe image", posted))
    assert answer.content.startswith("Image description: "), "commands still work without the intent"


async def test_when_the_queue_is_full_the_asker_is_told_the_bot_is_busy(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], bot_config: BotConfig, settings: Settings,
        captioner: CaptionModel, redis_url: str, photos: list[FileToPost]) -> None:
    full_at_one = bot_config.settings.model_copy(update={"queue_maxlen": 1})
    await make_bot(settings=full_at_one).start()  # no worker serving yet: the first job waits in the queue
    queue = Redis.from_url(redis_url)
    seconds, micros = await queue.time()  # a worker that is alive but busy elsewhere (its heartbeat is fresh)
    await queue.hset(settings.redis_keys.workers, "busy-worker", json.dumps({"seen": seconds + micros / 1e6}))
    waiting = await standin.slash("general", "alice", "caption", image=photos[0])
    try:
        async with asyncio.timeout(10):
            while await queue.xlen(settings.redis_keys.commands) < 1:  # the first photo is in the commands lane
                await asyncio.sleep(0.02)
    finally:
        await queue.aclose()
    busy = await answered(standin, await standin.slash("general", "bob", "caption", image=photos[1]))
    assert busy.content == USER_MESSAGES[ErrorCode.BUSY] and busy.ephemeral

    async with running_worker(settings, captioner, name="late-worker"):
        first = await answered(standin, waiting)
        assert first.content.startswith("Image description: "), "the queued job was kept and answered"


async def test_caption_follows_the_channels_heatmap_setting_unless_told(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await turn_on(standin, "gallery", heatmap=True)
    default_there = await answered(standin, await standin.slash("gallery", "alice", "caption", image=photos[0]))
    told_not_to = await answered(standin, await standin.slash("gallery", "alice", "caption", image=photos[0],
                                                              heatmap=False))
    default_elsewhere = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[0]))
    assert [len(a.files) for a in (default_there, told_not_to, default_elsewhere)] == [1, 0, 0]


async def test_with_no_worker_alive_a_caption_command_is_told_so_at_once_and_automation_waits_for_one(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], settings: Settings, captioner: CaptionModel,
        photos: list[FileToPost]) -> None:
    await make_bot().start()  # and no worker
    asked = time.monotonic()
    answer = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[0]))
    assert "no captioning worker is running" in answer.content, answer.content
    assert time.monotonic() - asked < settings.result_timeout_s / 3, "told at once, not after the result timeout"

    await turn_on(standin, "alt-text")
    posted = await standin.post_message("alt-text", "bob", files=[photos[1]])
    await quiet(standin, 2)
    assert standin.replies_to(posted) == [], "nobody is waiting: no apology under the photo"
    async with running_worker(settings, captioner, name="late-worker"):
        [reply] = await replies(standin, posted)
        assert reply.content.startswith("Image description: "), "the queued job is answered once a worker comes"


async def test_caption_with_voice_attaches_the_description_as_playable_speech(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed here (.ci/run installs it)")
    answer = await answered(standin, await standin.slash("general", "alice", "caption", image=photos[0], voice=True))
    assert answer.content.startswith("Image description: ")
    [audio] = answer.files
    assert audio.filename == "description.ogg" and audio.data.startswith(b"OggS") and b"OpusHead" in audio.data[:200]
