"""A phone photo as the bot queues it: the bot shrinks every image before queueing (``bot/image_shrink.py``: upright,
long side ``formats.MODEL_MAX_SIDE``, JPEG), so the worker never decodes the 12 MP file a user posted. The shrunk
copy must be described as the 12 MP file is, and cost the worker about what a small photo costs, not what the 12 MP
file would (phone photos made at test time from real Flickr8k dev photos by ``bench/phone_photos.py``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from captionbot.bot.image_shrink import prepare_for_queue
from captionbot.inference.captioner import Captioner

from captionbot.formats import MAX_PIXELS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from phone_photos import phone_photo
from test_phone_photos import dev_photos

N = 8


@pytest.fixture(scope="module")
def captioner(caption_bundle: Path) -> Captioner:
    return Captioner.load(caption_bundle, provider="cpu", threads=1, read_text=False)


@pytest.fixture(scope="module")
def photos(data_dir: Path) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(Flickr8k dev photos, 12 MP phone JPEGs made from other dev photos (every other one sideways + EXIF),
    those phone photos as the bot queues them)."""
    small = dev_photos(data_dir, N, aspect_kept=False)
    phone = [phone_photo(d, sideways=bool(i % 2), seed=i) for i, d in enumerate(dev_photos(data_dir, N, True))]
    return small, phone, [prepare_for_queue(d, MAX_PIXELS) for d in phone]


def test_a_phone_photo_as_the_bot_queues_it_gets_the_12_megapixel_files_caption(captioner, photos):
    _, phone, queued = photos
    assert all(len(q) * 3 < len(p) for q, p in zip(queued, phone, strict=True)), "the bot sent a shrunk copy"
    full = [getattr(o, "caption", "refused") for o in captioner.caption_images(phone)]
    shrunk = [getattr(o, "caption", "refused") for o in captioner.caption_images(queued)]
    same = sum(a == b for a, b in zip(full, shrunk, strict=True))
    assert same > N // 2, list(zip(full, shrunk, strict=True))  # 6 of 8 today (67% of 64 in the bench)


def test_a_queued_phone_photo_costs_the_worker_about_a_small_photos_time(captioner, photos):
    """Interleaved, so load from other processes hits all three alike: the shrunk copy's extra time over a Flickr8k
    photo is less than half the 12 MP file's extra time (about a quarter today: its JPEG is ~0.4 MB, not ~2 MB)."""
    small, phone, queued = photos
    captioner.caption_images(small[:2] + phone[:2] + queued[:2])  # warm-up
    shares = []
    for _ in range(3):
        seconds = []
        for batch in (small, queued, phone):
            t0 = time.perf_counter()
            captioner.caption_images(batch)
            seconds.append(time.perf_counter() - t0)
        t_small, t_queued, t_phone = seconds
        shares.append((t_queued - t_small) / (t_phone - t_small))
    assert float(np.median(shares)) < 0.5, shares
