"""Charts are described as charts (with their text read), and photos never are."""

from __future__ import annotations

import io
from pathlib import Path

from captionbot.inference.captioner import Captioner
from captionbot.inference.chart import looks_like_chart
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
