"""What real uploads bring: every kind of awkward or hostile image gets the right pixels or a clear, typed error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from captionbot.inference.preprocess import decode_image, probe_image, to_array
from PIL import Image, ImageOps

from captionbot.formats import ErrorCode, ImageRejected

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo(w: int = 320, h: int = 240) -> Image.Image:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], axis=2) + rng.integers(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def near(pixel, colour, tol: int = 40) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, colour, strict=True))


def rejected(data: bytes, **kw) -> ErrorCode:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, **kw)
    assert info.value.user_message  # the bot has a sentence for it
    return info.value.code


def test_ordinary_jpeg_pixels_are_unchanged():
    """Training features were computed with the original decoder: same pixels for a plain RGB JPEG."""
    data = encode(photo(640, 480), "JPEG", quality=90)
    size = (224, 224)
    ref = Image.open(io.BytesIO(data))
    ref.draft("RGB", (size[1], size[0]))
    ref.load()
    ref = ImageOps.exif_transpose(ref).convert("RGB")
    got = decode_image(data, size=size)
    assert got.size == ref.size == (320, 240)  # decoded at half scale: still covers 224
    assert np.array_equal(np.asarray(got), np.asarray(ref))
    x = to_array(got, size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (60, 30), RED)
    img.paste(BLUE, (30, 0, 60, 30))  # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    got = decode_image(encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert got.size == (30, 60)  # upright: tall
    assert near(got.getpixel((15, 5)), RED) and near(got.getpixel((15, 55)), BLUE)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_become_white_not_black(mode):
    img = Image.new(mode, (20, 20), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    img.paste((255, 0, 0, 255) if mode == "RGBA" else (0, 255), (0, 0, 10, 20))  # left half opaque
    got = decode_image(encode(img, "PNG"))
    assert got.mode == "RGB"
    assert near(got.getpixel((15, 10)), WHITE)
    assert near(got.getpixel((5, 10)), RED if mode == "RGBA" else (0, 0, 0))


def test_palette_image_with_transparent_index():
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 10, 20))
    got = decode_image(encode(img, "PNG", transparency=0))
    assert near(got.getpixel((15, 10)), WHITE) and near(got.getpixel((5, 10)), RED)


def test_palette_with_alpha_in_the_palette():
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 0, 0, 255, 0, 0, 255] + [0, 0, 0, 255] * 254, rawmode="RGBA")
    img.paste(1, (0, 0, 10, 20))
    assert img.palette.mode == "RGBA"
    got = decode_image(encode(img, "PNG"))
    assert near(got.getpixel((15, 10)), WHITE) and near(got.getpixel((5, 10)), RED)


def test_cmyk_jpeg():
    got = decode_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
    assert got.mode == "RGB" and near(got.getpixel((8, 8)), RED)


def test_16_bit_grey_is_scaled_not_clipped_to_white():
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    got = np.asarray(decode_image(encode(Image.fromarray(ramp), "PNG")))
    assert got.shape == (64, 64, 3)
    assert got[0, 0, 0] < 5 and got[-1, -1, 0] > 250
    assert 100 < got[32, 0, 0] < 160  # mid-grey stays mid-grey


def test_animation_gives_its_first_frame():
    frames = [Image.new("RGB", (20, 20), RED), Image.new("RGB", (20, 20), BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert near(decode_image(data).getpixel((10, 10)), RED)


def test_big_jpeg_is_decoded_at_reduced_scale():
    data = encode(Image.linear_gradient("L").resize((2000, 1600)).convert("RGB"), "JPEG", quality=80)
    got = decode_image(data, size=(224, 224))
    assert min(got.size) >= 224 and got.size[0] <= 500  # 1/4 scale (500 x 400), not 2000 x 1600


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels but carries almost nothing: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_from_the_header():
    bomb = png_header_only(100_000, 100_000)  # 10^10 pixels in a hundred bytes
    assert len(bomb) < 200
    assert rejected(bomb) == ErrorCode.TOO_MANY_PIXELS
    with pytest.raises(ImageRejected) as info:
        probe_image(bomb)
    assert info.value.code == ErrorCode.TOO_MANY_PIXELS
    # our own limit applies below Pillow's
    assert rejected(encode(photo(200, 100), "PNG"), max_pixels=10_000) == ErrorCode.TOO_MANY_PIXELS


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(fmt):
    data = encode(photo(), fmt)
    assert rejected(data[: len(data) // 2]) == ErrorCode.TRUNCATED


def test_not_an_image():
    assert rejected(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n") == ErrorCode.NOT_AN_IMAGE
    assert rejected(b"") == ErrorCode.NOT_AN_IMAGE


def test_unaccepted_format_is_named_not_decoded():
    assert rejected(encode(photo(32, 32), "PPM")) == ErrorCode.UNSUPPORTED_FORMAT


def test_probe_reads_the_header():
    assert probe_image(encode(photo(320, 240), "JPEG")) == ("JPEG", 320, 240)
    assert probe_image(encode(photo(50, 40), "WEBP")) == ("WEBP", 50, 40)
    with pytest.raises(ImageRejected) as info:
        probe_image(b"hello")
    assert info.value.code == ErrorCode.NOT_AN_IMAGE


@pytest.mark.parametrize("mean, std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                                       ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
def test_normalising_by_table_gives_exactly_the_arithmetic_values(mean, std):
    """The look-up table must give the model bit-for-bit the input that `(x / 255 - mean) / std` gives (the inputs
    training's features and the shipped scores were computed on), for every 8-bit level in every channel."""
    levels = np.arange(256 * 3, dtype=np.uint16).reshape(16, 48, 1) % 256
    img = Image.fromarray(np.concatenate([levels, np.roll(levels, 7), np.roll(levels, 101)], axis=2).astype(np.uint8))
    got = to_array(img, (16, 48), mean, std)
    x = np.asarray(img, dtype=np.float32) / 255.0
    want = ((x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)).transpose(2, 0, 1)
    assert got.dtype == np.float32 and got.shape == (3, 16, 48) and got.flags.c_contiguous
    assert np.array_equal(got, want)
