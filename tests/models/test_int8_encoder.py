"""The shipped int8 encoder (``models/default/int8/encoder.onnx``, what a CPU worker runs by default): on real
held-out photos its features stay close to the fp32 encoder's and the served captions mostly do not change.

Measured on the whole Flickr8k dev split as served (``bench/int8_encoder.py``, docs/inference.md "An int8 encoder"):
55.5 % of captions word for word the same as with the fp32 encoder, CIDEr +0.4 points. The earlier int8 encoder
whose ReLU6s stayed fp32 kept 19 % of captions and lost 4.5 points: the bounds below tell them apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from captionbot import formats
from captionbot.inference.bundle import session_options
from captionbot.inference.captioner import Captioner
from captionbot.settings import DEFAULT_BUNDLE
from captionbot.training.data import read_flickr8k

from tests.cpu import VNNI

PHOTOS = 48  # the first Flickr8k dev photos by name: never trained on, never calibrated on (train photos only)

pytestmark = pytest.mark.data


def _int8_decoder_with_fp32_encoder() -> Captioner:
    """The served int8 captioner with the fp32 encoder in place of its int8 one: the two differ only there."""
    c = Captioner.load(variant="int8", provider="cpu", threads=1, read_text=False)
    c.bundle.encoder = ort.InferenceSession(str(DEFAULT_BUNDLE / formats.ENCODER_FILE),
                                            sess_options=session_options(1), providers=["CPUExecutionProvider"])
    return c


def test_the_int8_variant_ships_an_int8_encoder() -> None:
    manifest = formats.Manifest.from_json((DEFAULT_BUNDLE / formats.MANIFEST_FILE).read_text())
    assert formats.ENCODER_FILE in manifest.variants["int8"]["files"]
    assert f"int8/{formats.ENCODER_FILE}" in manifest.files
    ops = [n.op_type for n in onnx.load(str(DEFAULT_BUNDLE / "int8" / formats.ENCODER_FILE)).graph.node]
    assert "DequantizeLinear" in ops
    assert "Clip" not in ops  # each ReLU6 quantised with (and folded into) its convolution


@pytest.mark.xfail(not VNNI, strict=False, reason="known defect: on a CPU without VNNI (AVX2-only ones, stops 27 and "
                   "29) the int8 encoder's relative error is 0.56, not 0.20; the worker's default (auto) runs the fp32 "
                   "encoder there instead (inference/cpu_int8.py, tests/inference/test_cpu_int8.py)")
def test_int8_encoder_keeps_features_and_served_captions_of_held_out_photos(data_dir: Path) -> None:
    photos = sorted((im for im in read_flickr8k(data_dir / "flickr8k") if im.split == "dev"),
                    key=lambda im: im.image_id)[:PHOTOS]
    blobs = [im.path.read_bytes() for im in photos]
    int8 = Captioner.load(variant="int8", provider="cpu", threads=1, read_text=False)
    fp32 = _int8_decoder_with_fp32_encoder()

    arrays = np.stack([int8.preprocess(b)[1] for b in blobs[:16]])
    (f8, p8), (f32, p32) = int8.bundle.encode_with_labels(arrays), fp32.bundle.encode_with_labels(arrays)
    rel = np.linalg.norm(f8 - f32) / np.linalg.norm(f32)
    cos = np.sum(f8 * f32, axis=(1, 2)) / (np.linalg.norm(f8, axis=(1, 2)) * np.linalg.norm(f32, axis=(1, 2)))
    # not the fp32 graph, and close to it: measured relative error 0.20, cosine 0.98 on average and 0.95 at worst;
    # the int8 encoder whose ReLU6s stayed fp32: 0.63 and 0.72 at worst
    assert 0 < rel < 0.35, rel
    assert cos.mean() > 0.96 and cos.min() > 0.9, cos
    assert p8 is not None and p32 is not None
    assert (p8.argmax(1) == p32.argmax(1)).mean() >= 0.7  # the top object label mostly agrees (measured 14 of 16)

    caps8 = [out.caption for out in int8.caption_images(blobs)]
    caps32 = [out.caption for out in fp32.caption_images(blobs)]
    same = np.mean([a == b for a, b in zip(caps8, caps32, strict=True)])
    # measured 27 of 48 here (56 %), 55.5 % on the whole dev split; the ReLU6-in-fp32 encoder: 17-21 %
    assert same >= 0.4, list(zip(caps8, caps32, strict=True))
    assert all(c[0].isupper() and c.endswith(".") for c in caps8)
