"""Images with known text, rendered with Pillow from fixed strings (no binaries in the repo): the kinds of
picture people post with text in them. Shared by the text-reading tests and ``bench/text_reading.py``.

Each sample is (kind, PNG/JPEG bytes, the text drawn on it). :func:`word_recall` scores a transcription: the share
of the drawn words found as separate words in it (case-insensitive; words are runs of letters and digits, so
"WHENTHECODECOMPILES" counts as one word that matches none of "when", "the", "code", "compiles").
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONTS = Path("/usr/share/fonts/truetype/dejavu")


@dataclass(frozen=True)
class Sample:
    kind: str
    image: bytes
    text: str  # every word drawn on the image, in reading order


def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / name), size)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


CHAT = [
    ("Alice", "are we still meeting for lunch tomorrow"),
    ("Bob", "yes the new place near the station at noon"),
    ("Alice", "great I will bring the printed tickets"),
    ("Carol", "can someone send me the address please"),
]


def chat_screenshot() -> Sample:
    """A light-theme chat app: bold names, grey timestamps, message lines."""
    img = Image.new("RGB", (720, 420), (255, 255, 255))
    d = ImageDraw.Draw(img)
    bold, regular, small = font("DejaVuSans-Bold.ttf", 20), font("DejaVuSans.ttf", 19), font("DejaVuSans.ttf", 14)
    y = 20
    for i, (name, msg) in enumerate(CHAT):
        d.ellipse((20, y, 60, y + 40), fill=(90 + 40 * i, 120, 200))
        d.text((75, y), name, font=bold, fill=(30, 30, 30))
        d.text((75 + d.textlength(name, font=bold) + 12, y + 5), f"{10 + i}:4{i} AM", font=small, fill=(150, 150, 150))
        d.text((75, y + 30), msg, font=regular, fill=(50, 50, 50))
        y += 95
    text = " ".join(f"{name} {msg}" for name, msg in CHAT)  # the timestamps are drawn but not scored
    return Sample("chat", png(img), text)


MEME_TOP, MEME_BOTTOM = "WHEN THE CODE COMPILES", "ON THE FIRST TRY"


def meme(photo: bytes) -> Sample:
    """Big white bold caps with a black outline over a photo, top and bottom."""
    img = Image.open(io.BytesIO(photo)).convert("RGB").resize((640, 480))
    d = ImageDraw.Draw(img)
    f = font("DejaVuSansCondensed-Bold.ttf", 44)
    for line, y in ((MEME_TOP, 15), (MEME_BOTTOM, 410)):
        w = d.textlength(line, font=f)
        d.text(((640 - w) / 2, y), line, font=f, fill="white", stroke_width=3, stroke_fill="black")
    return Sample("meme", jpeg(img), f"{MEME_TOP} {MEME_BOTTOM}")


CHART_TITLE = "Monthly Sales by Region"
CHART_BARS = [("North", 42), ("South", 30), ("East", 55), ("West", 24)]
CHART_Y, CHART_X = "Units Sold", "Region"


def bar_chart() -> Sample:
    """A bar chart with a title, axis labels, bar labels and tick values."""
    img = Image.new("RGB", (640, 480), "white")
    d = ImageDraw.Draw(img)
    title, label, tick = font("DejaVuSans-Bold.ttf", 24), font("DejaVuSans.ttf", 18), font("DejaVuSans.ttf", 15)
    d.text(((640 - d.textlength(CHART_TITLE, font=title)) / 2, 15), CHART_TITLE, font=title, fill="black")
    x0, y0, x1, y1 = 100, 70, 600, 400  # plot area
    d.line((x0, y0, x0, y1), fill="black", width=2)
    d.line((x0, y1, x1, y1), fill="black", width=2)
    for v in range(0, 61, 20):
        y = y1 - (y1 - y0) * v / 60
        d.line((x0 - 6, y, x0, y), fill="black")
        d.text((x0 - 12 - d.textlength(str(v), font=tick), y - 9), str(v), font=tick, fill="black")
    slot = (x1 - x0) / len(CHART_BARS)
    for i, (name, v) in enumerate(CHART_BARS):
        bx = x0 + slot * i + slot * 0.2
        d.rectangle((bx, y1 - (y1 - y0) * v / 60, bx + slot * 0.6, y1), fill=(70, 130, 180))
        d.text((bx + slot * 0.3 - d.textlength(name, font=tick) / 2, y1 + 8), name, font=tick, fill="black")
    d.text(((x0 + x1) / 2 - d.textlength(CHART_X, font=label) / 2, 445), CHART_X, font=label, fill="black")
    ylab = Image.new("RGBA", (int(d.textlength(CHART_Y, font=label)) + 4, 24), (0, 0, 0, 0))
    ImageDraw.Draw(ylab).text((2, 0), CHART_Y, font=label, fill="black")
    img.paste(ylab.rotate(90, expand=True), (15, int((y0 + y1) / 2 - ylab.width / 2)), ylab.rotate(90, expand=True))
    ticks = " ".join(str(v) for v in range(0, 61, 20))
    text = f"{CHART_TITLE} {CHART_Y} {ticks} {' '.join(n for n, _ in CHART_BARS)} {CHART_X}"
    return Sample("chart", png(img), text)


SIGN = ["NO PARKING", "LOADING ZONE", "7 AM TO 6 PM", "EXCEPT SUNDAY"]


def sign(photo: bytes) -> Sample:
    """A red-and-white street sign on a pole, in front of a photo."""
    img = Image.open(io.BytesIO(photo)).convert("RGB").resize((640, 480))
    d = ImageDraw.Draw(img)
    d.rectangle((310, 300, 330, 480), fill=(120, 120, 120))
    d.rounded_rectangle((150, 60, 490, 320), radius=18, fill="white", outline=(200, 20, 20), width=8)
    big, small = font("DejaVuSans-Bold.ttf", 34), font("DejaVuSans-Bold.ttf", 26)
    y = 85
    for i, line in enumerate(SIGN):
        f = big if i < 2 else small
        d.text(((640 - d.textlength(line, font=f)) / 2, y), line, font=f, fill=(200, 20, 20) if i == 0 else "black")
        y += 60 if i < 2 else 48
    return Sample("sign", jpeg(img), " ".join(SIGN))


CODE = [
    "def caption_image(path):",
    "    image = load_image(path)",
    "    words = model.predict(image)",
    "    return ' '.join(words)",
    "",
    "for name in sorted(files):",
    "    print(name, caption_image(name))",
]


def code_snippet() -> Sample:
    """A dark-theme editor screenshot in a monospace font."""
    img = Image.new("RGB", (700, 330), (30, 30, 36))
    d = ImageDraw.Draw(img)
    f = font("DejaVuSansMono.ttf", 20)
    for i, line in enumerate(CODE):
        d.text((20, 20 + 40 * i), f"{i + 1:>2}", font=f, fill=(110, 110, 120))
        colour = (220, 220, 170) if line.startswith(("def", "for")) else (200, 210, 230)
        d.text((70, 20 + 40 * i), line, font=f, fill=colour)
    return Sample("code", png(img), " ".join(CODE))


def all_samples(photo_a: bytes, photo_b: bytes) -> list[Sample]:
    """One image of each kind; the meme and the sign are drawn over the two given photos."""
    return [chat_screenshot(), meme(photo_a), bar_chart(), sign(photo_b), code_snippet()]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def word_recall(expected: str, transcribed: str) -> tuple[int, int]:
    """(drawn words found as separate words in the transcription, drawn words), counting repeats."""
    want, got = Counter(words(expected)), Counter(words(transcribed))
    return sum(min(n, got[w]) for w, n in want.items()), sum(want.values())


def line_chart() -> Sample:
    """A line chart on a light grey background with a grid, two coloured series and a legend."""
    img = Image.new("RGB", (800, 500), (245, 245, 245))
    d = ImageDraw.Draw(img)
    tick = font("DejaVuSans.ttf", 16)
    x0, y0, x1, y1 = 80, 40, 760, 440
    for k in range(5):
        y = y1 - (y1 - y0) * k / 4
        d.line((x0, y, x1, y), fill=(210, 210, 210))
        d.text((20, y - 9), str(25 * k), font=tick, fill="black")
    d.line((x0, y0, x0, y1), fill="black", width=2)
    d.line((x0, y1, x1, y1), fill="black", width=2)
    for series, colour in (([10, 35, 30, 60, 80, 70], (220, 60, 50)), ([20, 25, 45, 40, 55, 90], (40, 110, 200))):
        pts = [(x0 + (x1 - x0) * i / 5, y1 - (y1 - y0) * v / 100) for i, v in enumerate(series)]
        d.line(pts, fill=colour, width=4)
    d.text((600, 50), "sales", font=tick, fill=(220, 60, 50))
    d.text((600, 75), "costs", font=tick, fill=(40, 110, 200))
    return Sample("chart", png(img), "0 25 50 75 100 sales costs")


def pie_chart() -> Sample:
    """A pie chart of four coloured wedges with a title."""
    img = Image.new("RGB", (600, 500), "white")
    d = ImageDraw.Draw(img)
    d.text((220, 15), "Market share", font=font("DejaVuSans-Bold.ttf", 24), fill="black")
    start = 0.0
    for share, colour in ((0.4, (66, 133, 244)), (0.3, (219, 68, 55)), (0.2, (244, 180, 0)), (0.1, (15, 157, 88))):
        d.pieslice((120, 70, 480, 430), start, start + 360 * share, fill=colour)
        start += 360 * share
    return Sample("chart", png(img), "Market share")
