"""The I/O-binding decoder path (inference/device.py), which the GPU worker uses, captions exactly as the plain
path: checked here on the CPU provider, where "device" memory is host memory but every binding, upload and
on-device row gather runs as it does under CUDA."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from captionbot.inference.beam_search import beam_search
from captionbot.inference.bundle import load_bundle
from captionbot.inference.captioner import Captioner, CaptionOutput, caption_features, served_options
from captionbot.inference.device import BoundDecoder, Device, DeviceArray, gather_graph, wants_io_binding

from captionbot.formats import SpecialIds


@pytest.fixture(scope="module")
def default_bundle() -> Path:
    from captionbot.settings import DEFAULT_BUNDLE

    if not (DEFAULT_BUNDLE / "manifest.json").is_file():
        pytest.skip("models/default is absent")
    return DEFAULT_BUNDLE


def test_the_gather_graph_is_valid_onnx_and_gathers_rows_like_numpy() -> None:
    onnx = pytest.importorskip("onnx")
    for rank in (2, 3):
        onnx.checker.check_model(onnx.load_from_string(gather_graph(rank)), full_check=True)
    device = Device(["CPUExecutionProvider"])
    data = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)
    rows = np.array([4, 0, 0, 2])
    arr = device.upload(data)
    assert arr.shape == (5, 3, 4)
    np.testing.assert_array_equal(arr[rows].numpy(), data[rows])
    np.testing.assert_array_equal(arr[rows][np.array([1])].numpy(), data[rows][[1]])


def test_io_binding_is_chosen_for_cuda_and_can_be_forced() -> None:
    assert wants_io_binding(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert not wants_io_binding(["CPUExecutionProvider"])
    assert wants_io_binding(["CPUExecutionProvider"], setting=True)
    assert not wants_io_binding(["CUDAExecutionProvider"], setting=False)


def test_a_bound_step_gives_the_plain_steps_outputs(default_bundle: Path) -> None:
    bundle = load_bundle(default_bundle, provider="cpu", threads=1)
    enc = bundle.manifest.encoder
    feats = np.random.default_rng(1).normal(size=(3, enc.grid[0] * enc.grid[1], enc.channels)).astype(np.float32)
    h, c, proj = bundle.init(feats)
    word = np.array([1, 1, 1], dtype=np.int64)
    want = bundle.step(word, h, c, feats, proj)
    decoder = BoundDecoder(bundle, Device(bundle.providers))
    f_d, h_d, c_d, p_d = decoder.init(feats)
    got = decoder.step(word, h_d, c_d, f_d, p_d)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(w, g.numpy() if isinstance(g, DeviceArray) else g)


def test_captions_with_io_binding_are_identical_to_the_plain_path(default_bundle: Path, data_dir: Path) -> None:
    plain = Captioner.load(default_bundle, provider="cpu", threads=1)
    bound_bundle = replace(plain.bundle, device=Device(plain.bundle.providers))
    bound = Captioner(bound_bundle)
    assert plain.bundle.device is None
    photos = [p.read_bytes() for p in sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[:12]]
    for beam in (1, 3):
        want = [o for o in plain.caption_images(photos, beam_size=beam) if isinstance(o, CaptionOutput)]
        got = [o for o in bound.caption_images(photos, beam_size=beam) if isinstance(o, CaptionOutput)]
        assert len(want) == len(got) == len(photos)
        assert [w.caption for w in want] == [g.caption for g in got]
        for w, g in zip(want, got, strict=True):
            np.testing.assert_allclose(w.alphas, g.alphas, atol=1e-6)
    # and the search itself, token for token and score for score, over the same features
    arrays = np.stack([plain.preprocess(p)[1] for p in photos])
    feats = plain.bundle.encode(arrays)
    options = served_options(plain.bundle, 3)
    h, c, proj = plain.bundle.init(feats)
    want_h = beam_search(plain.bundle.step, feats, h, c, proj, options, SpecialIds.of(plain.bundle.itos))
    got_h = caption_features(bound_bundle, feats, options)
    assert [x.tokens for x in want_h] == [x.tokens for x in got_h]
    assert [x.log_prob for x in want_h] == pytest.approx([x.log_prob for x in got_h], abs=1e-9)


def test_the_worker_binds_on_cpu_only_when_its_setting_says_so(default_bundle: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from captionbot.inference.worker_cli import load_captioner

    from captionbot.settings import load_settings

    monkeypatch.delenv("CAPTIONBOT_IO_BINDING", raising=False)
    assert load_bundle(default_bundle, provider="cpu", threads=1).device is None
    monkeypatch.setenv("CAPTIONBOT_IO_BINDING", "true")
    captioner = load_captioner(load_settings(bundle=default_bundle, provider="cpu", threads=1))
    assert isinstance(captioner, Captioner) and captioner.bundle.device is not None
    assert captioner.bundle.device.kind == "cpu" and "CPUExecutionProvider" in ort.get_available_providers()
