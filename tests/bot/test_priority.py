"""A person waiting on a command comes before automatic alt text (issue 15, fault 1): while a channel's burst of
photos is still being described, a `/caption` is answered before most of the burst, not after all of it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bot_story import BotUnderTest, answered, turn_on
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost
from captionbot.inference.null_captioner import NullCaptioner
from queue_harness import running_worker

from captionbot.settings import Settings

BURST = 20


class SlowModel(NullCaptioner):
    """The null model at 0.1 s an image, as a CPU does (a batch of 4 takes 0.4 s)."""

    def caption_images(self, images: Sequence[bytes], beam_size: int = 3, heatmap: bool = False) -> list[Any]:
        out = super().caption_images(images, beam_size, heatmap)
        time.sleep(0.1 * len(images))
        return out


async def test_a_caption_asked_during_an_alt_text_burst_is_answered_before_the_burst(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], settings: Settings,
        photos: list[FileToPost]) -> None:
    small_batches = settings.model_copy(update={"batch_size": 4})
    async with running_worker(small_batches, SlowModel()):
        await make_bot(settings=small_batches).start()
        await turn_on(standin, "alt-text")
        posted = [await standin.post_message("alt-text", ("alice", "bob")[i % 2], files=[photos[i]])
                  for i in range(BURST)]
        await standin.wait_for(lambda _: any(standin.replies_to(m) for m in posted), 30)  # the burst is queued

        asked = await standin.slash("general", "keeper", "caption", image=photos[BURST])  # posted none of them
        answer = await answered(standin, asked, 30)
        described_first = sum(bool(standin.replies_to(m)) for m in posted)
        await standin.wait_for(lambda _: all(standin.replies_to(m) for m in posted), 60)

    assert answer.content.startswith("Image description: ") and not answer.ephemeral
    # Without the lane the command's job would queue behind all 20 (it was: 20 of 20 described first).
    assert described_first <= BURST // 2, described_first
