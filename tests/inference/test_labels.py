"""Object knowledge in the bundle: the label table, captions that name what is in the photo, honest answers for
blank images and unsure captions, and bundles without labels still working."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from captionbot.inference.captioner import Captioner
from captionbot.inference.confidence import HEDGE_BELOW, hedged
from captionbot.inference.labels import Label, LabelTable
from PIL import Image
from text_samples import bar_chart, chat_screenshot, word_recall

from captionbot import formats
from captionbot.settings import DEFAULT_BUNDLE


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def labelled() -> Captioner:
    manifest = formats.Manifest.from_json((DEFAULT_BUNDLE / formats.MANIFEST_FILE).read_text())
    if not manifest.labels:
        pytest.skip("models/default has no label head")
    return Captioner.load(DEFAULT_BUNDLE, provider="cpu", threads=1)


def sample(name: str) -> bytes:
    data = pytest.importorskip("skimage.data", reason="scikit-image gives the real sample photos")
    return jpeg(Image.fromarray(getattr(data, name)()))


def test_the_label_table_covers_all_1000_classes_with_provenance():
    doc = json.loads((DEFAULT_BUNDLE / formats.LABELS_FILE).read_text())
    classes = doc["classes"]
    assert [c["index"] for c in classes] == list(range(1000))
    assert doc["provenance"]
    word = {c["imagenet"]: c["word"] for c in classes}
    assert word["tabby"] == word["Egyptian cat"] == "cat"
    assert word["golden retriever"] == word["Chihuahua"] == word["pug"] == "dog"
    assert word["brown bear"] == "bear"
    assert "coffee" in word["espresso"]
    assert word["street sign"] == "sign"
    assert word["web site"] == "screenshot"
    assert all(c["word"] for c in classes if c["guide"])  # a class that may steer a caption has a word
    assert not any(c["guide"] for c in classes if c["group"] == "clothing")
    LabelTable(classes)  # loads


@pytest.mark.parametrize(("name", "words"), [("chelsea", {"cat"}), ("coffee", {"coffee", "cup"})])
def test_a_real_photo_gets_the_right_word(labelled, name, words):
    (out,) = labelled.caption_images([sample(name)])
    assert words & set(out.caption.lower().rstrip(".").split()), out.caption
    assert words & {w for lab, _ in out.labels for w in lab.split()}, out.labels
    assert 0.0 <= out.confidence <= 1.0


def test_coco_bear_and_sign_photos_are_named(labelled, data_dir):
    photos = {"000000519611.jpg": "bear", "000000252332.jpg": "sign"}
    outs = labelled.caption_images([(data_dir / "coco/val2017" / f).read_bytes() for f in photos])
    for (f, word), out in zip(photos.items(), outs, strict=True):
        assert word in out.caption.lower(), (f, out.caption)


@pytest.mark.parametrize(
    ("img", "expected"),
    [
        (Image.new("RGB", (640, 480), "white"), "A blank white image."),
        (Image.new("RGB", (300, 300), (10, 10, 10)), "A blank black image."),
        (Image.new("RGB", (1, 1), "white"), "A tiny white image of 1×1 pixels."),
    ],
)
def test_a_blank_image_is_never_a_man_in_a_blue_shirt(labelled, img, expected):
    (out,) = labelled.caption_images([png(img)])
    assert out.caption == expected
    assert "man" not in out.words


def test_low_confidence_says_less():
    cat = [Label("cat", 0.45, True, "animal")]
    unsure = [Label("dog", 0.1, True, "animal")]
    sentence = "A little boy is playing in the grass."
    assert hedged(sentence, cat, 0.9, below=0.5) == sentence
    assert hedged(sentence, cat, 0.1, below=0.5) == "Possibly a cat."
    assert hedged(sentence, unsure, 0.1, below=0.5) == "Possibly a little boy.", "unsure: only the subject"


def test_served_captions_below_the_threshold_are_hedged(labelled, data_dir):
    files = sorted((data_dir / "coco/val2017").glob("*.jpg"))[:24]
    outs = labelled.caption_images([f.read_bytes() for f in files])
    for out in outs:
        assert out.caption.startswith("Possibly") == (out.confidence < HEDGE_BELOW), out
    confs = [o.confidence for o in outs]
    assert max(confs) - min(confs) > 0.2  # it tells photos apart


def test_a_bundle_without_labels_still_loads_and_captions(tmp_path):
    from captionbot.export.tiny import make_tiny_bundle, synthetic_images

    bundle = make_tiny_bundle(tmp_path / "tiny")
    assert not formats.Manifest.from_json((bundle / formats.MANIFEST_FILE).read_text()).labels
    captioner = Captioner.load(bundle, provider="cpu", threads=1)
    outs = captioner.caption_images(synthetic_images(2))
    assert all(o.caption and o.labels == [] and o.confidence == 1.0 for o in outs)


def test_results_carry_confidence_and_labels_and_old_results_still_parse():
    res = formats.CaptionResult("j1", True, "A cat.", ["a", "cat"], confidence=0.8, labels=[("cat", 0.9)])
    back = formats.CaptionResult.from_fields(res.to_fields())
    assert back.confidence == 0.8 and back.labels == [("cat", 0.9)]
    old = {"v": "1", "meta": json.dumps({"job_id": "j0", "ok": True, "caption": "A dog.", "error": None})}
    parsed = formats.CaptionResult.from_fields(old)
    assert parsed.confidence == 1.0 and parsed.labels == []


def test_label_words_add_up_over_classes():
    table = LabelTable.load(DEFAULT_BUNDLE / formats.LABELS_FILE)
    probs = np.zeros((1, 1000), dtype=np.float32)
    probs[0, [207, 208, 281]] = [0.3, 0.3, 0.4]  # two retrievers and a tabby
    (top,) = table.top(probs)
    assert (top[0].word, round(top[0].prob, 3)) == ("dog", 0.6)
    assert top[1].word == "cat"


def test_a_chat_screenshot_is_described_as_a_screenshot_with_its_text_not_as_a_photo(labelled: Captioner) -> None:
    """The caption model only knows photos of scenes ("a little girl in a blue shirt"); a screenshot is said to be
    one, and its text is read even where reading text in every image is off."""
    sample = chat_screenshot()
    [out] = labelled.caption_images([sample.image])
    assert not isinstance(out, formats.ImageRejected)
    assert out.caption == "A screenshot.", out.caption
    found, total = word_recall(sample.text, out.text)
    assert found >= 0.8 * total, out.text
    assert out.labels[0][0] == "screenshot"


def test_text_is_read_where_the_labels_say_it_is_likely_and_photos_never_load_the_reader(data_dir) -> None:
    """Default serving (text reading not switched on for every image): a bar chart's labels say "text likely", so
    its title is read; twenty Flickr8k photos never even load the text reader."""
    photos = sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[:20]
    captioner = Captioner.load(DEFAULT_BUNDLE, provider="cpu", threads=1)
    if captioner.labels is None:
        pytest.skip("models/default has no label head")
    outs = captioner.caption_images([p.read_bytes() for p in photos])
    assert all(not isinstance(o, formats.ImageRejected) and o.text == "" for o in outs)
    assert captioner.text_reader is None, "no photo needed the text reader"

    sample = bar_chart()
    [out] = captioner.caption_images([sample.image])
    assert not isinstance(out, formats.ImageRejected)
    assert "Monthly Sales by Region" in out.text, out.text
