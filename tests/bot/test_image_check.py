"""Image checks refuse what the model cannot use, from metadata and header alone where possible."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from captionbot.bot.image_check import check_metadata, probe_image
from PIL import Image

from captionbot.formats import ErrorCode, ImageRejected


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def photo(data_dir: Path) -> Image.Image:
    return Image.open(sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[0]).convert("RGB")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_real_photos_in_each_accepted_format_pass(photo: Image.Image, fmt: str) -> None:
    info = probe_image(encoded(photo, fmt), max_pixels=1_000_000)
    assert (info.format, info.width, info.height) == (fmt, *photo.size)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_a_truncated_file_is_refused_as_truncated(photo: Image.Image, fmt: str) -> None:
    data = encoded(photo, fmt)
    with pytest.raises(ImageRejected) as err:
        probe_image(data[: len(data) * 2 // 3], max_pixels=1_000_000)
    assert err.value.code == ErrorCode.TRUNCATED


def test_too_many_pixels_is_refused_before_decoding(photo: Image.Image) -> None:
    with pytest.raises(ImageRejected) as err:
        probe_image(encoded(photo.resize((500, 500)), "PNG"), max_pixels=200_000)
    assert err.value.code == ErrorCode.TOO_MANY_PIXELS


def test_other_formats_and_non_images_are_refused(photo: Image.Image) -> None:
    with pytest.raises(ImageRejected) as err:
        probe_image(encoded(photo, "BMP"), max_pixels=1_000_000)
    assert err.value.code == ErrorCode.UNSUPPORTED_FORMAT
    with pytest.raises(ImageRejected) as err:
        probe_image(b"%PDF-1.7 not an image", max_pixels=1_000_000)
    assert err.value.code == ErrorCode.NOT_AN_IMAGE


@pytest.mark.parametrize(("ctype", "size", "code"), [
    ("application/pdf", 10, ErrorCode.NOT_AN_IMAGE), (None, 10, ErrorCode.NOT_AN_IMAGE),
    ("image/svg+xml", 10, ErrorCode.UNSUPPORTED_FORMAT), ("image/png", 2_000, ErrorCode.TOO_LARGE)])
def test_metadata_alone_refuses_wrong_types_and_sizes(ctype: str | None, size: int, code: ErrorCode) -> None:
    with pytest.raises(ImageRejected) as err:
        check_metadata(ctype, size, max_bytes=1_000)
    assert err.value.code == code
    check_metadata("image/jpeg", 1_000, max_bytes=1_000)
    check_metadata(None, 1_000, max_bytes=1_000, filename="cat.webp")  # no declared type: the name's


def test_a_phone_jpeg_with_a_second_picture_passes_as_jpeg(photo: Image.Image) -> None:
    """Phones save portrait photos as multi-picture JPEGs (Pillow: "MPO"); Discord declares them image/jpeg."""
    buf = io.BytesIO()
    photo.save(buf, "MPO", save_all=True, append_images=[photo.resize((64, 48))])
    info = probe_image(buf.getvalue(), max_pixels=1_000_000)
    assert (info.width, info.height) == photo.size
    check_metadata("image/jpeg", len(buf.getvalue()), max_bytes=10**7)


def test_the_refusal_names_exactly_the_formats_that_pass(photo: Image.Image) -> None:
    from captionbot.formats import CHAT_FORMATS, USER_MESSAGES

    message = USER_MESSAGES[ErrorCode.UNSUPPORTED_FORMAT]
    for fmt in CHAT_FORMATS:
        assert fmt.label in message
        probe_image(encoded(photo, fmt.pillow), max_pixels=1_000_000)
        check_metadata(fmt.content_type, 10, max_bytes=1_000, filename=f"x{fmt.extensions[0]}")
