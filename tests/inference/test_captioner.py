"""The runtime as the worker uses it: a batch of uploads in, a caption (or a clear refusal) per upload out."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from captionbot.export.tiny import synthetic_images
from captionbot.inference.captioner import Captioner, CaptionOutput
from PIL import Image

from captionbot.formats import ErrorCode, ImageRejected


@pytest.fixture(scope="module")
def captioner(caption_bundle) -> Captioner:
    return Captioner.load(caption_bundle, provider="cpu", threads=1)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_a_bad_image_never_fails_the_batch(captioner):
    good = synthetic_images(3)
    bomb = png(Image.new("L", (8, 8)))[:16] + b"\0" * 8  # header cut short
    batch = [good[0], b"GIF89a not really", good[1], bomb, good[2]]
    out = captioner.caption_images(batch, beam_size=3)
    assert len(out) == len(batch)
    assert isinstance(out[1], ImageRejected) and out[1].code in (ErrorCode.NOT_AN_IMAGE, ErrorCode.TRUNCATED)
    assert isinstance(out[3], ImageRejected)
    for o in (out[0], out[2], out[4]):
        assert isinstance(o, CaptionOutput)
        assert o.words and o.caption[0].isupper() and o.caption.endswith(".")
        assert "<unk>" not in o.words and "<end>" not in o.words
        assert o.alphas.shape == (len(o.words), int(np.prod(captioner.grid)))
        assert np.allclose(o.alphas.sum(axis=1), 1.0, atol=1e-3)  # attention is a distribution per word
        assert o.score < 0 and o.heatmap_png is None


def test_a_caption_does_not_depend_on_the_rest_of_the_batch(captioner):
    images = synthetic_images(4)
    alone = [captioner.caption_images([img])[0] for img in images]
    together = captioner.caption_images(images)
    assert [a.words for a in alone] == [t.words for t in together]


def test_parallel_decoding_gives_the_same_answers_in_the_same_order(caption_bundle, captioner):
    good = synthetic_images(4)
    batch = [good[0], b"not an image", good[1], good[2], b"", good[3]]
    parallel = Captioner.load(caption_bundle, provider="cpu", threads=2)  # decodes on 2 threads
    assert parallel._pool is not None
    one, two = captioner.caption_images(batch), parallel.caption_images(batch)
    assert [type(o) for o in one] == [type(o) for o in two]
    assert [o.words if isinstance(o, CaptionOutput) else o.code for o in one] == \
        [o.words if isinstance(o, CaptionOutput) else o.code for o in two]


def test_heatmap_when_asked(captioner):
    out = captioner.caption_images(synthetic_images(1), beam_size=1, heatmap=True)[0]
    assert isinstance(out, CaptionOutput)
    assert Image.open(io.BytesIO(out.heatmap_png)).format == "PNG"


def test_only_refusals_means_no_model_call(captioner):
    out = captioner.caption_images([b"", b"\x89PNG\r\n\x1a\n"])
    assert all(isinstance(o, ImageRejected) for o in out)
    assert captioner.caption_images([]) == []


def test_model_version_names_the_bundle(captioner):
    assert captioner.model_version


def test_the_runtime_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, inference.captioner, inference.caption_cli, inference.bundle, inference.preprocess; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_served_captions_never_repeat_a_word_or_a_trigram_and_never_say_unk(caption_bundle, data_dir) -> None:
    """What users are shown: with the bundle's served policy, no "shirt shirt", no "a dog and a dog", no <unk>."""
    from captionbot.inference.captioner import Captioner as Runtime

    images = [p.read_bytes() for p in sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[:24]]
    runtime = Runtime.load(caption_bundle)
    repeatable = runtime.bundle.manifest.decoding.repeatable_words
    assert repeatable and len(repeatable) < 50  # a list of function words, from the bundle's manifest
    for out in runtime.caption_images(images, beam_size=3):
        words = out.words
        assert words, "never an empty caption"
        assert "<unk>" not in words
        assert all(a != b for a, b in itertools.pairwise(words)), words
        trigrams = list(zip(words, words[1:], words[2:], strict=False))
        assert len(trigrams) == len(set(trigrams)), words
        content = [w for w in words if w not in repeatable]  # "a dog and a dog" never
        assert len(content) == len(set(content)), words


def test_variants_are_different_captions_the_first_being_the_caption_without_variants(caption_bundle, data_dir):
    photos = [p.read_bytes() for p in sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[:6]]
    captioner = Captioner.load(caption_bundle, provider="cpu", threads=1)
    plain = captioner.caption_images(photos)
    three = captioner.caption_images(photos, variants=3)
    several = 0
    for one, out in zip(plain, three, strict=True):
        assert isinstance(one, CaptionOutput) and isinstance(out, CaptionOutput)
        assert out.caption == one.caption and out.confidence == one.confidence, "the caption itself is unchanged"
        assert 1 <= len(out.variants) <= 3 and out.variants[0] == (one.caption, one.confidence)
        captions = [c for c, _ in out.variants]
        assert len(set(captions)) == len(captions), "no caption twice"
        assert all(0.0 <= p <= 1.0 for _, p in out.variants)
        several += len(out.variants) > 1
    assert several >= 5, "most photos get more than one caption"
    assert all(isinstance(o, CaptionOutput) and o.variants == [] for o in plain), "no variants unless asked"
    with pytest.raises(ValueError, match=r"variants must be 1\.\.3"):
        captioner.caption_images(photos[:1], variants=4)
