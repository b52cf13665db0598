"""The bot sends the worker only the pixels its models read: a phone-sized photo is shrunk before it is queued and
still gets the caption the full-size file gets; a small image goes as it came; text stays readable."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from bot_story import BotUnderTest, answered
from captionbot.bot.image_shrink import shrink_for_models
from captionbot.bot.standin import StandIn
from captionbot.bot.standin.server import FileToPost
from PIL import Image, ImageDraw
from queue_harness import running_worker
from text_samples import font, word_recall

from captionbot.formats import MODEL_MAX_SIDE
from captionbot.queue.worker import CaptionModel
from captionbot.settings import Settings

PHONE_SIZE = (4032, 3024)  # a 12 MP phone camera
EXIF_ORIENTATION = 0x0112
BIG_FILES = 12 * 1024 * 1024


class Recording:
    """The real model, noting the bytes of every image the worker hands it."""

    def __init__(self, model: CaptionModel) -> None:
        self.model = model
        self.seen: list[bytes] = []

    @property
    def model_version(self) -> str:
        return self.model.model_version

    def caption_images(self, images: Sequence[bytes], beam_size: int = 3, heatmap: bool = False) -> list[Any]:
        self.seen.extend(images)
        return self.model.caption_images(images, beam_size, heatmap)


def phone_photo(path: Path) -> bytes:
    """A real COCO photo at a phone camera's size, stored as a phone stores it: sideways, with an EXIF orientation
    that turns it upright (6: rotate 90° clockwise), JPEG quality 95."""
    img = Image.open(path).convert("RGB").resize(PHONE_SIZE, Image.Resampling.LANCZOS)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    buf = io.BytesIO()
    img.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture
def coco_photo(data_dir: Path) -> Path:
    return sorted((data_dir / "coco" / "val2017").glob("*.jpg"))[0]


async def test_a_phone_photo_is_queued_at_the_models_size_and_gets_the_full_size_caption(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], settings: Settings, captioner: CaptionModel,
        coco_photo: Path) -> None:
    original = phone_photo(coco_photo)
    recording = Recording(captioner)
    worker_settings = settings.model_copy(update={"max_image_bytes": BIG_FILES})
    async with running_worker(worker_settings, recording):
        await make_bot(max_image_bytes=BIG_FILES).start()
        asked = await standin.slash("general", "alice", "caption", image=FileToPost("IMG_0001.jpg", original,
                                                                                     "image/jpeg"))
        answer = await answered(standin, asked, timeout=60)

    [sent] = recording.seen
    assert len(sent) * 4 < len(original), f"{len(original)} bytes queued as {len(sent)}"
    with Image.open(io.BytesIO(sent)) as img:
        assert img.size == (MODEL_MAX_SIDE, MODEL_MAX_SIDE * 3 // 4), "upright, long side at the models' size"
        assert EXIF_ORIENTATION not in img.getexif(), "turned upright, no EXIF left to turn it again"
    [full_size] = captioner.caption_images([original], 2)
    assert answer.content == f"Image description: {full_size.caption}"


async def test_a_small_image_is_queued_as_it_came_never_enlarged(
        standin: StandIn, make_bot: Callable[..., BotUnderTest], settings: Settings, captioner: CaptionModel,
        coco_photo: Path) -> None:
    small = Image.open(coco_photo).convert("RGB").resize((96, 72))
    buf = io.BytesIO()
    small.save(buf, "PNG")
    recording = Recording(captioner)
    async with running_worker(settings, recording):
        await make_bot().start()
        asked = await standin.slash("general", "alice", "caption", image=FileToPost("tiny.png", buf.getvalue(),
                                                                                     "image/png"))
        answer = await answered(standin, asked, timeout=60)
    assert answer.content.startswith("Image description: ")
    assert recording.seen == [buf.getvalue()], "the same bytes: not re-encoded, not enlarged"


def test_an_animation_is_sent_as_its_first_frame_only() -> None:
    frames = [Image.new("RGB", (2400, 1800), colour) for colour in ("red", "green", "blue", "white")]
    for i, f in enumerate(frames):  # some detail, so each frame costs bytes
        ImageDraw.Draw(f).text((40, 40 + i * 30), "frame " * 40, fill="black", font=font("DejaVuSans.ttf", 40))
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    shrunk = shrink_for_models(buf.getvalue())
    with Image.open(io.BytesIO(shrunk.data)) as img:
        assert getattr(img, "n_frames", 1) == 1 and img.size == (MODEL_MAX_SIDE, 1440)
        assert img.convert("RGB").getpixel((5, 5)) == (255, 0, 0), "the first frame, the one the worker captions"


def test_a_phone_screenshot_shrunk_for_the_queue_reads_as_well_as_the_full_size_one(coco_photo: Path) -> None:
    """A 1170 x 2532 chat screenshot (an iPhone's screen: a shared photo, then messages in 34 px text): the copy the
    bot sends (887 x 1920) loses no word the text reader finds in the original."""
    text_reader = pytest.importorskip("captionbot.inference.text_reader")
    lines = ["Are we still on for dinner tonight", "Yes at seven near the station",
             "Bring the tickets please", "Running late the train stopped twice"]
    img = Image.new("RGB", (1170, 2532), (245, 245, 245))
    img.paste(Image.open(coco_photo).convert("RGB").resize((1050, 788)), (60, 200))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.rounded_rectangle((60, 1100 + i * 260, 1110, 1220 + i * 260), 30, fill=(220, 235, 255))
        draw.text((90, 1140 + i * 260), line, fill="black", font=font("DejaVuSans.ttf", 34))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    shrunk = shrink_for_models(buf.getvalue())
    assert shrunk.reencoded and max(shrunk.width, shrunk.height) == MODEL_MAX_SIDE
    reader = text_reader.TextReader()
    expected = " ".join(lines)
    found_full, total = word_recall(expected, reader.read(buf.getvalue()))
    found_shrunk, _ = word_recall(expected, reader.read(shrunk.data))
    assert found_shrunk >= found_full >= total - 2, (found_shrunk, found_full, total)


def test_the_size_sent_covers_every_model_that_reads_the_image() -> None:
    """MODEL_MAX_SIDE is the text reader's decode size, above its detector's side and the encoder's input."""
    from captionbot.inference.text_reader import ReaderOptions

    from captionbot.settings import DEFAULT_BUNDLE

    manifest = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())
    assert max(manifest["encoder"]["input_size"]) <= MODEL_MAX_SIDE
    assert ReaderOptions().det_side <= MODEL_MAX_SIDE
