"""A decoder step whose features carry shared channels (the global vector in every cell, issue 19's local grids)
gathers only what it reads per row: same outputs bit for bit, without copying every cell's copy of the vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from captionbot.export.graphs import _export, _StepGraph
from captionbot.inference.image_rows import IMAGE_ATT_PROJ, IMAGE_FEATURES, ROW_IMAGE, gather_step_graph
from captionbot.training.model import Decoder, DecoderConfig

from captionbot import formats

CELLS, LOCAL, SHARED = 16, 6, 40


def _step_graph(tmp: Path, shared: int) -> Path:
    torch.manual_seed(0)
    decoder = Decoder(DecoderConfig(vocab_size=30, feature_dim=LOCAL + shared, embed_dim=8, hidden_dim=12,
                                    attention_dim=5, shared_dim=shared)).eval()
    features = torch.randn(2, CELLS, LOCAL + shared)
    with torch.no_grad():
        h, c, att_proj = decoder.init_state(features)
    path = tmp / f"step-{shared}.onnx"
    names = formats.DECODER_STEP_INPUTS + formats.DECODER_STEP_OUTPUTS
    _export(_StepGraph(decoder), (torch.tensor([1, 1]), h, c, features, att_proj), path, formats.DECODER_STEP_INPUTS,
            formats.DECODER_STEP_OUTPUTS, {n: {0: "batch"} for n in names}, 17)
    return path


def _session(model: bytes | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("shared", [SHARED, 0])
def test_the_gathering_step_answers_as_the_step_fed_per_row(tmp_path: Path, shared: int) -> None:
    path = _step_graph(tmp_path, shared)
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(4, CELLS, LOCAL + shared)).astype(np.float32)
    if shared:
        feats[:, :, LOCAL:] = feats[:, :1, LOCAL:]  # the same vector in every cell of an image
    plain = _session(str(path))
    (att_dim,) = {i.shape[2] for i in plain.get_inputs() if i.name == "att_proj"}
    proj = rng.normal(size=(4, CELLS, att_dim)).astype(np.float32)
    rows = np.array([0, 0, 1, 3, 3, 3], dtype=np.int64)
    word = np.arange(2, 8, dtype=np.int64)
    h, c = (rng.normal(size=(6, 12)).astype(np.float32) for _ in range(2))
    want = plain.run(None, {"word": word, "h": h, "c": c, "features": feats[rows], "att_proj": proj[rows]})
    rewritten = gather_step_graph(path.read_bytes())
    assert rewritten is not None
    onnx.checker.check_model(onnx.load_from_string(rewritten), full_check=True)
    got = _session(rewritten).run(None, {"word": word, "h": h, "c": c, IMAGE_FEATURES: feats,
                                          IMAGE_ATT_PROJ: proj, ROW_IMAGE: rows})
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g)


def _row_gathered(model: bytes) -> set[str]:
    """The tensors the rewritten step gathers per row."""
    graph = onnx.load_from_string(model).graph
    return {n.input[0] for n in graph.node if n.op_type == "Gather" and n.input[1] == ROW_IMAGE}


def test_only_the_read_parts_of_shared_channel_features_are_gathered_per_row(tmp_path: Path) -> None:
    shared = gather_step_graph(_step_graph(tmp_path, SHARED).read_bytes())
    plain = gather_step_graph(_step_graph(tmp_path, 0).read_bytes())
    assert shared is not None and plain is not None
    # without shared channels the step reads whole cells (the context is a weighted sum of them): all are gathered
    assert _row_gathered(plain) == {IMAGE_FEATURES, IMAGE_ATT_PROJ}
    # with them, the local cells and the one vector are sliced out per image first; the full features never are
    gathered = _row_gathered(shared)
    assert IMAGE_FEATURES not in gathered and IMAGE_ATT_PROJ in gathered and len(gathered) == 3
    readers = [n for n in onnx.load_from_string(shared).graph.node if IMAGE_FEATURES in n.input]
    assert sorted(n.op_type for n in readers) == ["Gather", "Slice"]


def _slicing_step(axes: list[int]) -> bytes:
    """A stand-in step graph with the step's inputs whose only reader of ``features`` is one Slice along ``axes``
    (an int64 initialiser, as other exporters write it)."""
    h = onnx.helper
    f32 = onnx.TensorProto.FLOAT
    inputs = [h.make_tensor_value_info("word", onnx.TensorProto.INT64, ["rows"]),
              h.make_tensor_value_info("features", f32, ["rows", CELLS, 8]),
              h.make_tensor_value_info("att_proj", f32, ["rows", CELLS, 3])]
    consts = [h.make_tensor(name, onnx.TensorProto.INT64, [len(axes)], vals)
              for name, vals in (("starts", [0] * len(axes)), ("ends", [2] * len(axes)), ("axes", axes))]
    nodes = [h.make_node("Slice", ["features", "starts", "ends", "axes"], ["sliced"]),
             h.make_node("Identity", ["att_proj"], ["proj_out"])]
    outputs = [h.make_tensor_value_info("sliced", f32, None), h.make_tensor_value_info("proj_out", f32, None)]
    graph = h.make_graph(nodes, "slicing", inputs, outputs, initializer=consts)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize(("axes", "after"), [([-1], True), ([1, 2], True), ([0], False), ([-3], False)])
def test_the_gather_moves_after_a_slice_only_when_the_slice_keeps_the_rows(axes: list[int], after: bool) -> None:
    rewritten = gather_step_graph(_slicing_step(axes))
    assert rewritten is not None
    assert (IMAGE_FEATURES not in _row_gathered(rewritten)) is after
    feats = np.random.default_rng(2).normal(size=(3, CELLS, 8)).astype(np.float32)
    rows = np.array([2, 0, 0], dtype=np.int64)
    got = _session(rewritten).run(["sliced"], {"word": rows, IMAGE_FEATURES: feats, ROW_IMAGE: rows,
                                               IMAGE_ATT_PROJ: np.zeros((3, CELLS, 3), np.float32)})[0]
    want = _session(_slicing_step(axes)).run(["sliced"], {"word": rows, "features": feats[rows],
                                                         "att_proj": np.zeros((3, CELLS, 3), np.float32)})[0]
    np.testing.assert_array_equal(got, want)
