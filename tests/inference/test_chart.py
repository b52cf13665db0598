"""Charts are described as charts (with their text read), and photos never are."""

from __future__ import annotations

import io
from pathlib import Path

from captionbot.inference.captioner import Captioner
from captionbot.inference.chart import is_flat_graphic, looks_like_chart
from PIL import Image
from text_samples import bar_chart, chat_screenshot, code_snippet, line_chart, pie_chart

from captionbot import formats
from captionbot.settings import DEFAULT_BUNDLE


def test_a_rendered_bar_chart_is_called_a_chart_and_its_title_is_read() -> None:
    captioner = Captioner.load(DEFAULT_BUNDLE, provider="cpu", threads=1)
    [out] = captioner.caption_images([bar_chart().image])
    assert not isinstance(out, formats.ImageRejected)
    assert out.caption == "A chart.", out.caption  # was "Possibly a man in a white jacket …"
    assert "Monthly Sales by Region" in out.text, out.text


def test_line_and_pie_charts_are_charts_but_screenshots_code_and_photos_are_not(data_dir: Path) -> None:
    for sample in (line_chart(), pie_chart()):
        assert looks_like_chart(Image.open(io.BytesIO(sample.image)))
    for sample in (chat_screenshot(), code_snippet()):
        assert not looks_like_chart(Image.open(io.BytesIO(sample.image))), sample.kind
    photos = sorted((data_dir / "coco" / "val2017").glob("*.jpg"))[:40]
    photos += sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[:40]
    assert not [p.name for p in photos if looks_like_chart(Image.open(p))]


def dark_mode_chat() -> bytes:
    """A dark-mode chat, drawn here: not one of the samples the text gates were chosen on, and no ImageNet label
    calls it a screenshot (it was "Possibly a man.", with no text read)."""
    from PIL import ImageDraw, ImageFont

    img = Image.new("RGB", (800, 400), (54, 57, 63))
    draw = ImageDraw.Draw(img)
    face = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 22)
    for row, line in enumerate(["alice: did the build pass?", "bob: yes, all green now",
                                "alice: great, shipping it tonight"]):
        draw.text((20, 30 + 60 * row), line, fill="white", font=face)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_a_drawn_image_with_text_the_labels_miss_is_described_as_text_and_read() -> None:
    captioner = Captioner.load(DEFAULT_BUNDLE, provider="cpu", threads=1)
    [out] = captioner.caption_images([dark_mode_chat()])
    assert not isinstance(out, formats.ImageRejected)
    assert out.caption == "An image with text.", out.caption  # never a guessed person
    assert "shipping it tonight" in out.text, out.text


def test_no_dev_photo_is_a_drawn_graphic(data_dir: Path) -> None:
    """Photos never take the drawn-image path (so they never pay for its text reading)."""
    photos = sorted((data_dir / "coco" / "val2017").glob("*.jpg"))
    photos += sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[:200]
    assert len(photos) > 200
    assert not [p.name for p in photos if is_flat_graphic(Image.open(p))]
    assert is_flat_graphic(Image.open(io.BytesIO(dark_mode_chat())))
