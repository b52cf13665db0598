"""A tiny but real bundle for tests: the real Captioner (EfficientNet-Lite0 encoder, attention LSTM decoder) with
random weights, a small decoder and a small real vocabulary, exported through the real exporter (parity
included). Its captions are word salad; everything else (shapes, graphs, hashes, variants) is the real thing.
"""

from __future__ import annotations

import copy
import functools
import io
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from captionbot.export.exporter import ExportOptions, export_bundle, preprocess_all
from captionbot.inference.policy import SERVED_RULES
from captionbot.training.model import Captioner, DecoderConfig
from PIL import Image
from torch import nn

from captionbot.formats import SPECIAL_TOKENS

TINY_WORDS = [
    "a", "an", "the", "dog", "cat", "man", "woman", "child", "boy", "girl", "people", "group", "ball", "grass",
    "water", "beach", "snow", "street", "field", "park", "red", "blue", "black", "white", "brown", "green", "is",
    "are", "in", "on", "at", "with", "of", "and", "running", "playing", "sitting", "standing", "jumping",
    "walking", "riding", "bike", "shirt",
]
# The served rules with the function words of TINY_WORDS as the words that may repeat: a policy of its own
# vocabulary, as every bundle needs.
TINY_POLICY = replace(SERVED_RULES, repeatable_words=("a", "an", "the", "is", "are", "in", "on", "at", "with", "of",
                                                      "and"))


def synthetic_images(n: int = 4, size: int = 96, seed: int = 0) -> list[bytes]:
    """PNG bytes of ``n`` smooth colour fields with a bright square: distinct, deterministic, no data needed."""
    rng = np.random.default_rng(seed)
    out = []
    xx = np.mgrid[0:size, 0:size][1] / size
    for _ in range(n):
        base = np.stack([np.sin(6 * xx * rng.uniform(0.5, 2) + rng.uniform(0, 6)) for _ in range(3)], axis=2)
        img = (base * 0.5 + 0.5) * 255
        x0, y0 = rng.integers(0, size // 2, 2)
        img[y0 : y0 + size // 3, x0 : x0 + size // 3] = rng.uniform(0, 255, 3)
        buf = io.BytesIO()
        Image.fromarray(img.astype(np.uint8), "RGB").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def make_tiny_model(seed: int = 0, max_len: int = 8) -> tuple[Captioner, list[str]]:
    """The real Captioner with random weights, adjusted so that its captions depend on the image (a fresh copy
    each call; building one costs seconds, so it is built once per process)."""
    model, itos = _tiny_model(seed, max_len)
    return copy.deepcopy(model), list(itos)


@functools.lru_cache(maxsize=2)
def _tiny_model(seed: int, max_len: int) -> tuple[Captioner, list[str]]:
    torch.manual_seed(seed)
    itos = [*SPECIAL_TOKENS, *TINY_WORDS]
    cfg = DecoderConfig(vocab_size=len(itos), embed_dim=32, hidden_dim=48, attention_dim=24, dropout=0.0,
                        max_len=max_len)
    model = Captioner(cfg, arch="efficientnet_lite0", pretrained=False).eval()
    with torch.no_grad():
        # Random BatchNorm statistics make the features vanish (~1e-8): set them from a few images instead.
        bns = [m for m in model.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batch
        model.encoder.train()
        calibration = torch.from_numpy(preprocess_all(synthetic_images(8, seed=seed + 1), model))
        model.encoder(calibration)
        model.encoder.eval()
        # Decoder weights of our own (not the training init, which may change): N(0, 1/fan_in), zero biases.
        # Random features share a large common component, so a random decoder says the same words whatever the
        # image; removing that direction from the deep-output context weights (and turning them up) makes the
        # captions depend on the image.
        mean_feature = model.encoder(calibration).mean(dim=(0, 1))  # [C]
        gen = torch.Generator().manual_seed(seed)
        dec = model.decoder
        for p in dec.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            else:
                p.zero_()
        w = dec.out_z.weight  # [E, C]
        w.sub_(torch.outer(w @ mean_feature, mean_feature) / mean_feature.dot(mean_feature))
        w.mul_(10.0)
        dec.embedding.weight.mul_(0.3)
    return model, itos


def make_tiny_bundle(out_dir: Path, variants: tuple[str, ...] = ("int8",)) -> Path:
    """Build and export the tiny model to ``out_dir`` (replaced if present); returns ``out_dir``."""
    model, itos = make_tiny_model()
    options = ExportOptions(model_name="tiny-random", model_version="tiny-random-1",
                            trained_on="nothing: random weights, for tests only", variants=variants, force=True,
                            decoding=TINY_POLICY)
    export_bundle(model, itos, Path(out_dir), synthetic_images(), options)
    return Path(out_dir)
