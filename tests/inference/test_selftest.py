"""The worker's readiness self-test: the shipped model passes it; a model cut short by its max_len, or with broken
weights (re-sealed, so every hash and bound passes), fails it with the reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from captionbot.inference.captioner import Captioner
from captionbot.inference.selftest import MIN_WORDS, SelfTestFailed, check_decoded, confidence_floor, run_self_test

from captionbot import formats
from captionbot.settings import DEFAULT_BUNDLE


def _reseal(bundle: Path, d: dict) -> None:
    d["digest"] = formats.manifest_digest(d)
    (bundle / formats.MANIFEST_FILE).write_text(json.dumps(d))


def with_max_len(dst: Path, max_len: int) -> Path:
    """A copy of the shipped bundle whose manifest says ``max_len`` (within the bounds), re-sealed."""
    shutil.copytree(DEFAULT_BUNDLE, dst)
    d = json.loads((dst / formats.MANIFEST_FILE).read_text())
    d["decoder"]["max_len"] = max_len
    _reseal(dst, d)
    return dst


def with_scrambled_decoder(dst: Path) -> Path:
    """A copy of the shipped bundle whose decoder step has its weights shuffled (a broken model: as if the wrong or
    a corrupted checkpoint had been exported), its hash and the manifest re-sealed."""
    import onnx
    from onnx import numpy_helper

    shutil.copytree(DEFAULT_BUNDLE, dst, ignore=shutil.ignore_patterns("int8"))
    rng = np.random.default_rng(0)
    graph = onnx.load(dst / formats.DECODER_STEP_FILE)
    for init in graph.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype.kind == "f" and a.size > 1000:
            init.CopyFrom(numpy_helper.from_array(rng.permutation(a.ravel()).reshape(a.shape).astype(a.dtype),
                                                  init.name))
    onnx.save(graph, dst / formats.DECODER_STEP_FILE)
    d = json.loads((dst / formats.MANIFEST_FILE).read_text())
    d["files"] = {k: v for k, v in d["files"].items() if not k.startswith("int8/")}
    d["files"][formats.DECODER_STEP_FILE] = formats.sha256_file(dst / formats.DECODER_STEP_FILE)
    d["variants"] = {}
    _reseal(dst, d)
    return dst


@pytest.mark.parametrize("variant", ["fp32", "int8"])
@pytest.mark.parametrize("beam_size", [1, 3])
def test_the_shipped_model_passes(variant: str, beam_size: int) -> None:
    result = run_self_test(Captioner.load(DEFAULT_BUNDLE, variant=variant, provider="cpu", threads=1), beam_size)
    assert len(result.decoded.split()) >= MIN_WORDS and result.caption.endswith(".")
    assert result.mean_log_prob > confidence_floor(2616) + 1  # a margin, not a borderline pass


def test_a_max_len_too_short_for_the_model_fails(tmp_path: Path) -> None:
    """max_len 8 is within the manifest's bounds, but this model's caption of the test image is longer: every
    caption would be cut ("A man in a red shirt with a blue.")."""
    captioner = Captioner.load(with_max_len(tmp_path / "b", 8), provider="cpu", threads=1)
    with pytest.raises(SelfTestFailed, match="cut at max_len 8"):
        run_self_test(captioner)


def test_a_model_with_broken_weights_fails(tmp_path: Path) -> None:
    captioner = Captioner.load(with_scrambled_decoder(tmp_path / "b"), provider="cpu", threads=1)
    with pytest.raises(SelfTestFailed, match="not confident"):
        run_self_test(captioner)


def test_short_or_special_captions_fail() -> None:
    ok = dict(finished=True, mean_log_prob=-1.5, vocab_size=2616, max_len=22)
    assert check_decoded(["a", "man", "in", "a", "field"], **ok) == []
    assert "2 words" in check_decoded(["a", "man"], **ok)[0]
    assert "special tokens" in check_decoded(["a", "<unk>", "in", "a", "field"], **ok)[0]
    assert "not confident" in check_decoded(["a", "man", "in", "a", "field"], **{**ok, "mean_log_prob": -7.9})[0]
