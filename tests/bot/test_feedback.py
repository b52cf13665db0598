"""Correct it, and learn from it (issue 15, item 7), end to end: the real bot (discord.py) against the stand-in,
a real redis-server and a real worker. Buttons on each description: Edit (the image's poster or a moderator) and
👍 / 👎; corrections follow the picture when it is posted again; ``captionbot feedback export`` writes a dataset
the training reader loads.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from bot_story import BotUnderTest, answered, quiet, replies, turn_on
from captionbot.bot.corrections import FeedbackStore
from captionbot.bot.feedback import DOWN_ID, EDIT_ID, MODAL_PREFIX, UP_ID
from captionbot.bot.feedback_export import export_dataset
from captionbot.bot.standin import NotPossible, StandIn
from captionbot.bot.standin.record import Sent
from captionbot.bot.standin.server import FileToPost
from captionbot.bot.standin.world import Message
from PIL import Image
from redis.asyncio import Redis

from captionbot.settings import Settings

FIX = "A brown dog leaps over a fallen log in the woods."


@pytest.fixture
async def store(settings: Settings, redis_url: str) -> AsyncIterator[FeedbackStore]:
    """The feedback records, read straight from Redis as another process would."""
    redis = Redis.from_url(redis_url)
    yield FeedbackStore(redis, settings.redis_keys.jobs)
    await redis.aclose()


def resized(photo: FileToPost, factor: float, fmt: str = "PNG") -> FileToPost:
    """The same picture as someone else would post it: another size, another encoding, another name."""
    img = Image.open(io.BytesIO(photo.data)).convert("RGB")
    img = img.resize((round(img.width * factor), round(img.height * factor)))
    buf = io.BytesIO()
    img.save(buf, fmt)
    ext = "png" if fmt == "PNG" else "jpg"
    return FileToPost(f"again.{ext}", buf.getvalue(), f"image/{'png' if fmt == 'PNG' else 'jpeg'}")


def button_ids(message: Message) -> list[str]:
    return [b["custom_id"] for row in message.components for b in row["components"]]


async def described(standin: StandIn, poster: str, photo: FileToPost,
                    channel: str = "alt-text") -> tuple[Message, Message]:
    """``poster`` posts ``photo`` in an alt-text channel; returns the post and the bot's description of it."""
    posted = await standin.post_message(channel, poster, files=[photo])
    [reply] = await replies(standin, posted)
    assert reply.message is not None
    return posted, reply.message


async def modal_of(standin: StandIn, pressed_by: str, reply: Message) -> Sent:
    """``pressed_by`` presses Edit on ``reply``; returns the modal the bot showed them."""
    state = await standin.press_button("alt-text", pressed_by, reply, EDIT_ID)
    await standin.wait_for(lambda sent: any(s.kind == "modal" and s.interaction_id == state.id for s in sent))
    [modal] = [s for s in standin.sent if s.kind == "modal" and s.interaction_id == state.id]
    assert modal.ok, modal.payload
    return modal


async def private_answer(standin: StandIn, state_id: str) -> Sent:
    await standin.wait_for(lambda _: bool(standin.answers_to(state_id)))
    [said] = standin.answers_to(state_id)
    assert said.ephemeral, "feedback answers are seen only by the person who pressed"
    return said


async def edit(standin: StandIn, who: str, reply: Message, text: str) -> None:
    """``who`` presses Edit, types ``text`` and submits; waits until the description says it."""
    modal = await modal_of(standin, who, reply)
    state = await standin.submit_modal("alt-text", who, modal.payload["custom_id"], {"image:0": text})
    await standin.wait_for(lambda _: text in standin.world.messages[reply.id].content)
    await standin.wait_for(lambda _: any(s.kind == "followup" for s in standin.answers_to(state.id)))


async def test_the_poster_edits_the_description_and_the_reply_says_it(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    await turn_on(standin)
    posted, reply = await described(standin, "alice", photos[0])
    assert button_ids(reply) == [EDIT_ID, UP_ID, DOWN_ID]
    model_words = reply.content.removeprefix("Image description: ")
    assert model_words != reply.content

    modal = await modal_of(standin, "alice", reply)
    [row] = modal.payload["components"]
    box = row["components"][0]
    assert box["value"] == model_words, "the box is prefilled with what the description says"
    assert box["max_length"] == 1024 and modal.payload["custom_id"] == MODAL_PREFIX + reply.id

    state = await standin.submit_modal("alt-text", "alice", modal.payload["custom_id"], {"image:0": FIX})
    await standin.wait_for(lambda _: any(s.kind == "update" for s in standin.answers_to(state.id)))
    now = standin.world.messages[reply.id]
    assert now.content == f"Image description (corrected by a person): {FIX}"
    assert now.edited_timestamp is not None and button_ids(now) == [EDIT_ID, UP_ID, DOWN_ID]
    assert [s.message.id for s in standin.replies_to(posted) if s.message] == [reply.id], "edited, not re-posted"
    await standin.wait_for(lambda _: any(s.kind == "followup" for s in standin.answers_to(state.id)))
    [thanks] = [s for s in standin.answers_to(state.id) if s.kind == "followup"]
    assert thanks.ephemeral and "updated" in thanks.content


async def test_a_stranger_is_refused_and_a_moderator_may_edit(standin: StandIn, bot: BotUnderTest,
                                                              photos: list[FileToPost]) -> None:
    await turn_on(standin)
    _, reply = await described(standin, "alice", photos[1])
    before = reply.content

    state = await standin.press_button("alt-text", "bob", reply, EDIT_ID)
    refusal = await private_answer(standin, state.id)
    assert "Only the person who posted the image" in refusal.content
    assert standin.open_modals("bob") == [], "no edit box for a stranger"
    with pytest.raises(NotPossible):
        await standin.submit_modal("alt-text", "bob", MODAL_PREFIX + reply.id, {"image:0": "rude words"})

    # A submit the Discord client would never send (forged for a stranger, for another message, with an input the
    # modal never had) changes nothing.
    channel = standin.world.channel("alt-text")
    forged = [
        ("bob", MODAL_PREFIX + reply.id, "image:0"),
        ("alice", MODAL_PREFIX + "1234", "image:0"),
        ("alice", MODAL_PREFIX + reply.id, "image:7"),
        ("alice", MODAL_PREFIX + reply.id + "x", "image:0"),
    ]
    for who, custom_id, input_id in forged:
        data = {"custom_id": custom_id, "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": input_id, "value": "forged"}]}]}
        forged_state = await standin._interact(channel, standin.world.user(who), data, kind=5,
                                               message=standin.world.messages[reply.id])
        said = await private_answer(standin, forged_state.id)
        assert "forged" not in said.content
    assert standin.world.messages[reply.id].content == before

    await edit(standin, "mod", reply, FIX)  # Manage Messages
    assert standin.world.messages[reply.id].content.endswith(FIX)


async def test_votes_count_once_per_person_and_can_change(standin: StandIn, bot: BotUnderTest,
                                                          photos: list[FileToPost], store: FeedbackStore) -> None:
    await turn_on(standin)
    _, reply = await described(standin, "alice", photos[2])
    said = []
    for who, button in (("alice", UP_ID), ("alice", UP_ID), ("bob", DOWN_ID), ("bob", UP_ID), ("mod", DOWN_ID)):
        state = await standin.press_button("alt-text", who, reply, button)
        said.append((await private_answer(standin, state.id)).content)
    assert "recorded" in said[0] and "counts once" in said[1] and "Changed" in said[3]
    assert await store.votes(reply.id) == {"up": 2, "down": 1}
    assert standin.world.messages[reply.id].content == reply.content, "votes do not change the description"


async def test_a_correction_follows_the_picture_reposted_at_another_size_even_after_a_restart(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost], store: FeedbackStore) -> None:
    await turn_on(standin)
    _, reply = await described(standin, "alice", photos[3])
    _, other = await described(standin, "alice", photos[4])
    await edit(standin, "alice", reply, FIX)
    [kept] = await store.corrections(standin.world.guild_id)
    assert kept.text == FIX and kept.model_text == reply.content.removeprefix("Image description: ")

    await bot.restart()  # buttons and corrections live in Redis, not in the process
    _, again = await described(standin, "bob", resized(photos[3], 0.5, "PNG"))
    assert again.content == f"Image description (corrected by a person): {FIX}"
    assert button_ids(again) == [EDIT_ID, UP_ID, DOWN_ID]
    _, smaller = await described(standin, "bob", resized(photos[3], 0.3, "JPEG"))
    assert smaller.content.endswith(FIX)
    _, different = await described(standin, "bob", resized(photos[5], 0.5, "PNG"))
    assert FIX not in different.content and "corrected" not in different.content

    # Buttons on a description posted before the restart still work.
    state = await standin.press_button("alt-text", "bob", other, UP_ID)
    assert "recorded" in (await private_answer(standin, state.id)).content
    # The server can forget it all; then the model describes the picture again.
    wiped = await standin.slash("general", "mod", "feedback wipe")
    assert "Forgot 1 correction" in (await answered(standin, wiped)).content
    _, after = await described(standin, "bob", resized(photos[3], 0.5, "PNG"))
    assert FIX not in after.content


@pytest.mark.usefixtures("worker")
async def test_corrections_are_bounded_per_server(standin: StandIn, make_bot: Callable[..., BotUnderTest],
                                                  photos: list[FileToPost], store: FeedbackStore) -> None:
    b = make_bot(max_corrections=2)
    await b.start()
    await turn_on(standin)
    for i in range(3):
        _, reply = await described(standin, "alice", photos[6 + i])
        await edit(standin, "alice", reply, f"Correction number {i}.")
    kept = await store.corrections(standin.world.guild_id)
    assert [c.text for c in kept] == ["Correction number 1.", "Correction number 2."], "the oldest went first"


async def test_export_writes_a_dataset_the_training_reader_loads(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost], store: FeedbackStore, settings: Settings,
        redis_url: str, tmp_path: Path) -> None:
    from captionbot.training.sources import DataSource

    await turn_on(standin)
    guild = standin.world.guild_id
    _, first = await described(standin, "alice", photos[9])
    await edit(standin, "alice", first, "A man rides a red bicycle.\nText in image: SALE")  # before opting in
    state = await standin.slash("general", "alice", "feedback images", keep=True)
    assert "Manage Server" in (await answered(standin, state)).content, "members cannot opt the server in"
    state = await standin.slash("general", "mod", "feedback images", keep=True)
    assert "keep a small copy" in (await answered(standin, state)).content
    _, second = await described(standin, "bob", photos[10])
    await edit(standin, "bob", second, "Two children play in a fountain.")

    async def image_kept() -> bool:
        return any(c.has_image for c in await store.corrections(guild))

    for _ in range(100):
        if await image_kept():
            break
        await asyncio.sleep(0.1)
    assert await image_kept()

    out = tmp_path / "dataset"
    summary = await export_dataset(store, guild, out)
    assert (summary.corrections, summary.images) == (2, 1)
    items = DataSource("coco", (out / "captions.json", out / "images")).read()  # what `captionbot train --coco` reads
    assert [(i.captions, i.split) for i in items] == [(["Two children play in a fountain."], "train")]
    with Image.open(items[0].path) as img:
        assert max(img.size) <= 512
    doc = json.loads((out / "captions.json").read_text())
    assert doc["info"]["captions_only"] == 1
    assert doc["annotations"][0]["caption"] == "A man rides a red bicycle.", "the read text is not a caption"
    assert all(len(im["phash"]) == 16 for im in doc["images"])

    # The command itself, as a person runs it.
    env = {**os.environ, "CAPTIONBOT_REDIS_URL": redis_url, "CAPTIONBOT_STREAM": settings.stream}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "captionbot.cli", "feedback", "export", "--guild", guild, "--out", str(tmp_path / "cli"),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    assert "2 correction(s)" in stdout.decode() and "captions and image hashes only" in stdout.decode()
    assert len(DataSource("coco", (tmp_path / "cli" / "captions.json", tmp_path / "cli" / "images")).read()) == 1

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "captionbot.cli", "feedback", "wipe", "--guild", guild, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0 and "Forgot 2 correction(s)" in stdout.decode(), stderr.decode()
    assert await store.corrections(guild) == [] and await store.image(guild, doc["images"][1]["phash"]) is None
    await quiet(standin, 0.1)


def test_the_feedback_command_explains_what_it_cannot_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from captionbot.cli import main

    monkeypatch.delenv("CAPTIONBOT_REDIS_URL", raising=False)
    assert main(["feedback", "export", "--guild", "12345", "--out", str(tmp_path)]) == 2
    assert "CAPTIONBOT_REDIS_URL" in capsys.readouterr().err
    assert main(["feedback", "export", "--guild", "../etc", "--out", str(tmp_path)]) == 2
    assert "--guild must be a server id" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [], "nothing written"


async def test_a_caption_command_answer_has_the_buttons_and_its_asker_may_edit(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    asked = await standin.slash("general", "alice", "caption", image=photos[11])
    answer = await answered(standin, asked)
    assert answer.message is not None and button_ids(answer.message) == [EDIT_ID, UP_ID, DOWN_ID]
    state = await standin.press_button("general", "bob", answer.message, EDIT_ID)
    assert "Only the person who posted the image" in (await private_answer(standin, state.id)).content
    state = await standin.press_button("general", "alice", answer.message, EDIT_ID)
    await standin.wait_for(lambda sent: any(s.kind == "modal" and s.interaction_id == state.id for s in sent))
    submit = await standin.submit_modal("general", "alice", MODAL_PREFIX + answer.message.id, {"image:0": FIX})
    await standin.wait_for(lambda _: any(s.kind == "update" for s in standin.answers_to(submit.id)))
    assert standin.world.messages[answer.message.id].content.endswith(f"(corrected by a person): {FIX}")


async def test_describe_image_is_edited_by_the_images_poster_not_by_whoever_asked(
        standin: StandIn, bot: BotUnderTest, photos: list[FileToPost]) -> None:
    photo = await standin.post_message("general", "bob", files=[photos[12]])
    answer = await answered(standin, await standin.context_menu("general", "alice", "Describe image", photo))
    assert answer.message is not None and button_ids(answer.message) == [EDIT_ID, UP_ID, DOWN_ID]
    state = await standin.press_button("general", "alice", answer.message, EDIT_ID)
    assert "Only the person who posted the image" in (await private_answer(standin, state.id)).content
    state = await standin.press_button("general", "bob", answer.message, EDIT_ID)
    await standin.wait_for(lambda sent: any(s.kind == "modal" and s.interaction_id == state.id for s in sent))
    assert standin.open_modals("bob") == [MODAL_PREFIX + answer.message.id]
