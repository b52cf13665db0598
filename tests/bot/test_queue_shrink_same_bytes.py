"""The bot decodes an image once before queueing it (the shrink's decode is the integrity check): the worker gets the
same bytes for a phone photo and the same pixels for a PNG or GIF as from the check + shrink it replaced
(``bench/shrink_reference.py``), every bad file is refused with the same reason as before, and it costs the bot
less CPU. Images are real photos (Flickr8k dev) made phone-sized, and screenshots rendered, at test time."""

from __future__ import annotations

import io
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from captionbot.bot.image_shrink import prepare_for_queue
from PIL import Image, ImageDraw
from text_samples import font

from captionbot.formats import MAX_PIXELS, ErrorCode, ImageRejected

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import shrink_reference
from phone_photos import phone_photo

Shrink = Callable[[bytes], bytes]
NOW: Shrink = lambda d: prepare_for_queue(d, MAX_PIXELS)  # noqa: E731
BEFORE: Shrink = lambda d: shrink_reference.prepare_for_queue(d, MAX_PIXELS)  # noqa: E731


def dev_photos(data_dir: Path, n: int) -> list[bytes]:
    """The first ``n`` Flickr8k dev photos by name that keep their aspect ratio (not 224 x 224)."""
    out = []
    for name in sorted((data_dir / "flickr8k" / "Flickr_8k.devImages.txt").read_text().split()):
        data = (data_dir / "flickr8k" / "images" / name).read_bytes()
        if Image.open(io.BytesIO(data)).size != (224, 224):
            out.append(data)
        if len(out) == n:
            break
    return out


def encode(img: Image.Image, fmt: str, **opts: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **opts)
    return buf.getvalue()


def screenshot(photo: bytes) -> bytes:
    """A 1170 x 2532 phone chat screenshot with a shared photo in it (PNG): a busy picture for a PNG encoder."""
    img = Image.new("RGB", (1170, 2532), (245, 245, 245))
    img.paste(Image.open(io.BytesIO(photo)).convert("RGB").resize((1050, 788)), (60, 200))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(["Are we still on for dinner tonight", "Yes at seven near the station"]):
        draw.rounded_rectangle((60, 1100 + i * 260, 1110, 1220 + i * 260), 30, fill=(220, 235, 255))
        draw.text((90, 1140 + i * 260), line, fill="black", font=font("DejaVuSans.ttf", 34))
    return encode(img, "PNG")


@pytest.fixture(scope="module")
def photos(data_dir: Path) -> list[bytes]:
    return dev_photos(data_dir, 8)


@pytest.fixture(scope="module")
def phone(photos: list[bytes]) -> list[bytes]:
    """12 MP phone JPEGs, every other one stored sideways with EXIF Orientation 6."""
    return [phone_photo(d, sideways=bool(i % 2), seed=i) for i, d in enumerate(photos)]


@pytest.fixture(scope="module")
def other_formats(photos: list[bytes]) -> dict[str, bytes]:
    """Files over 1920 px (or animated) in the other chat formats: each is shrunk and re-encoded."""
    big = Image.open(io.BytesIO(photos[0])).convert("RGB").resize((2400, 1800), Image.Resampling.BICUBIC)
    clear = big.convert("RGBA")
    clear.putalpha(Image.linear_gradient("L").resize(big.size))
    return {"screenshot PNG": screenshot(photos[1]), "photo PNG": encode(big, "PNG"),
            "transparent PNG": encode(clear, "PNG"), "WebP": encode(big, "WEBP", quality=100),
            "animated GIF": animation((2400, 1800)), "small animated GIF": animation((480, 360))}


def animation(size: tuple[int, int]) -> bytes:
    """Four coloured frames with lines of text, as a GIF: the worker captions the first."""
    frames = [Image.new("RGB", size, colour) for colour in ("red", "green", "blue", "white")]
    for i, f in enumerate(frames):
        ImageDraw.Draw(f).text((40, 40 + i * 30), "frame " * 40, fill="black", font=font("DejaVuSans.ttf", 20))
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def pixels(data: bytes) -> tuple[tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size, img.convert("RGBA").tobytes()


def outcome(fn: Shrink, data: bytes) -> str:
    try:
        fn(data)
    except ImageRejected as exc:
        return exc.code.value
    return "queued"


def cpu_ratio(images: list[bytes], rounds: int = 3) -> float:
    """Median over interleaved rounds of (CPU time now) / (CPU time before) for the same images."""
    ratios = []
    for r in range(rounds):
        times = {}
        for name, fn in ((("now", NOW), ("before", BEFORE)) if r % 2 else (("before", BEFORE), ("now", NOW))):
            t0 = time.process_time()
            for d in images:
                fn(d)
            times[name] = time.process_time() - t0
        ratios.append(times["now"] / times["before"])
    return statistics.median(ratios)


def test_phone_photos_are_queued_byte_for_byte_as_before(phone: list[bytes]) -> None:
    for data in phone:
        queued = NOW(data)
        assert queued == BEFORE(data)
        assert len(queued) * 3 < len(data)


def test_other_formats_are_queued_with_the_same_pixels_as_before(other_formats: dict[str, bytes]) -> None:
    """PNG copies are written at a lower zlib level now, so their bytes differ; the pixels the worker decodes
    must not. Every one of these is re-encoded by both (none was sent as it came)."""
    for name, data in other_formats.items():
        now, before = NOW(data), BEFORE(data)
        assert now != data and before != data, name
        assert pixels(now) == pixels(before), name


def test_a_copy_no_smaller_than_the_file_is_abandoned_and_the_file_sent(photos: list[bytes]) -> None:
    """A flat 2560 x 1440 screenshot whose shrunk copy compresses worse than the original: sent as it came."""
    img = Image.new("RGB", (2560, 1440), "white")
    draw = ImageDraw.Draw(img)
    for i in range(30):
        draw.text((200, 100 + 40 * i), "Running late the train stopped twice " * 3, fill="black",
                  font=font("DejaVuSans.ttf", 18))
    data = encode(img, "PNG", optimize=True)
    assert NOW(data) == data
    assert BEFORE(data) == data


def truncations(data: bytes) -> list[bytes]:
    return [data[: int(len(data) * f)] for f in (0.05, 0.3, 0.6, 0.9, 0.995)]


def corruptions(data: bytes) -> list[bytes]:
    """Runs of bytes overwritten in the middle of the file (the entropy-coded / compressed data)."""
    out = []
    for f in (0.2, 0.5, 0.8):
        at = int(len(data) * f)
        out.append(data[:at] + bytes(64) + data[at + 64:])
        out.append(data[:at] + b"\xff" * 16 + data[at + 16:])
    return out


def test_bad_files_are_refused_for_the_same_reason_as_before(
        phone: list[bytes], other_formats: dict[str, bytes]) -> None:
    files = {"phone JPEG": phone[1], **other_formats}
    refused = {}
    for name, data in files.items():
        for bad in truncations(data) + corruptions(data):
            now, before = outcome(NOW, bad), outcome(BEFORE, bad)
            if before == ErrorCode.NOT_AN_IMAGE.value and name == "WebP":  # fixed since: a cut-off WebP header
                assert now == ErrorCode.TRUNCATED.value, name          # is "truncated", not "not an image"
            else:
                assert now == before, name
        refused[name] = [outcome(NOW, bad) for bad in truncations(data)]
    truncated = ErrorCode.TRUNCATED.value
    assert refused["WebP"] == [truncated] * 5
    assert refused["phone JPEG"] == [truncated] * 5, "a cut-off phone photo is refused, not shrunk"
    assert refused["screenshot PNG"] == refused["photo PNG"] == [truncated] * 5
    assert refused["animated GIF"][0] == truncated  # cut inside its first frame (cut later, that frame is whole)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header (IHDR, valid CRC) claims ``width`` x ``height`` pixels."""
    data = encode(Image.new("RGB", (8, 8)), "PNG")
    ihdr = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def test_too_many_pixels_and_decompression_bombs_are_refused_before_decoding(phone: list[bytes]) -> None:
    for fn in (NOW, BEFORE):
        assert outcome(fn, png_claiming(40_000, 40_000)) == ErrorCode.TOO_MANY_PIXELS.value  # Pillow's bomb check
        assert outcome(fn, png_claiming(7_000, 7_000)) == ErrorCode.TOO_MANY_PIXELS.value  # the bot's own cap
        with pytest.raises(ImageRejected) as err:
            prepare_for_queue(phone[0], max_pixels=1_000_000)
        assert err.value.code == ErrorCode.TOO_MANY_PIXELS


def test_decoding_once_costs_the_bot_less_cpu(phone: list[bytes], other_formats: dict[str, bytes]) -> None:
    """Generous bounds on ratios measured in one run (about 0.8 and 0.55 when measured; bench/bot_shrink_cost.py)."""
    assert cpu_ratio(phone[:4]) < 0.95
    assert cpu_ratio([other_formats["screenshot PNG"]]) < 0.8
