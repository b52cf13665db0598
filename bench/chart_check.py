"""How often ``inference/chart.py`` calls an image a chart: the 1,107 dev photos (Flickr8k dev, COCO dev: should
be never) and the rendered samples of ``tests/text_samples.py`` plus a line and a pie chart (only the charts).

    .venv/bin/python bench/chart_check.py
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from captionbot.inference.chart import looks_like_chart  # noqa: E402
from text_samples import all_samples, line_chart, pie_chart  # noqa: E402


def main() -> int:
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO.parent / "shared" / "data"))
    dev = sorted((data / "flickr8k/Flickr_8k.devImages.txt").read_text().split())
    photos = [data / "flickr8k/images" / n for n in dev] + sorted((data / "coco/val2017").glob("*.jpg"))
    photos = [p for p in photos if p.is_file()]
    hits = [p.name for p in photos if looks_like_chart(Image.open(p))]
    print(f"dev photos called a chart: {len(hits)} of {len(photos)} {hits[:10]}")
    a, b = photos[0].read_bytes(), photos[1].read_bytes()
    for s in [*all_samples(a, b), line_chart(), pie_chart()]:
        print(f"{s.kind}: chart={looks_like_chart(Image.open(io.BytesIO(s.image)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
