"""`captionbot export`: a checkpoint becomes a bundle that captions exactly like PyTorch, or nothing is written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from captionbot.export.exporter import ExportOptions, ParityFailed, export_bundle, preprocess_all
from captionbot.export.tiny import TINY_POLICY, make_tiny_model, synthetic_images
from captionbot.inference.beam_search import BeamOptions
from captionbot.inference.bundle import load_bundle
from captionbot.inference.captioner import caption_arrays
from captionbot.training.checkpoint import load_captioner, save_checkpoint
from captionbot.training.decode import decode
from captionbot.training.model import Decoder

from captionbot import formats
from captionbot.cli import main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny checkpoint on disk, exported with the CLI (fp32 + int8 + int8-full + fp16)."""
    tmp = tmp_path_factory.mktemp("export")
    model, itos = make_tiny_model()
    ckpt = tmp / "tiny.pt"
    save_checkpoint(ckpt, model=model.state_dict(), decoder_config=model.decoder.cfg.to_dict(),
                    encoder_arch=model.encoder.arch, vocab={"itos": itos})
    images = []
    for i, data in enumerate(synthetic_images(6, seed=3)):
        images.append(tmp / f"img{i}.png")
        images[-1].write_bytes(data)
    out = tmp / "bundle"
    policy = tmp / "policy.json"  # the tiny vocabulary's own: its function words may repeat
    policy.write_text(json.dumps(TINY_POLICY.to_dict()))
    rc = main(["export", str(ckpt), "--out", str(out), "--image-files", *map(str, images),
               "--variants", "int8,int8-full,fp16", "--model-version", "tiny-test", "--decoding-policy", str(policy)])
    assert rc == 0
    return ckpt, out, [p.read_bytes() for p in images]


def manifest_of(bundle) -> formats.Manifest:
    return formats.Manifest.from_json((bundle / formats.MANIFEST_FILE).read_text())


def test_bundle_files_are_checked_and_hashed(exported):
    _, bundle, _ = exported
    manifest = manifest_of(bundle)
    assert manifest.model_version == "tiny-test"
    formats.verify_bundle_files(bundle, manifest)
    graphs = [name for name in manifest.files if name.endswith(".onnx")]
    assert {formats.ENCODER_FILE, formats.DECODER_INIT_FILE, formats.DECODER_STEP_FILE} <= set(graphs)
    for name in graphs:
        onnx.checker.check_model(str(bundle / name), full_check=True)
    itos = json.loads((bundle / formats.VOCAB_FILE).read_text())["itos"]
    assert tuple(itos[:4]) == formats.SPECIAL_TOKENS and len(itos) == manifest.decoder.vocab_size


def test_parity_is_recorded_for_beam_1_and_3(exported):
    parity = [s for s in manifest_of(exported[1]).scores if s.get("check") == "torch-onnx parity"]
    assert sorted(s["beam_size"] for s in parity) == [1, 3]
    for s in parity:
        assert s["identical_captions"] == s["images"] == 6
        assert s["max_log_prob_diff"] < 1e-3


def test_bundle_captions_like_pytorch_token_for_token(exported):
    ckpt, bundle_dir, images = exported
    model, _vocab = load_captioner(ckpt)
    x = preprocess_all(images, model)
    bundle = load_bundle(bundle_dir, provider="cpu")
    with torch.no_grad():
        feats = model.encoder(torch.from_numpy(x))
    assert np.abs(bundle.encode(x) - feats.numpy()).max() < 1e-3
    for k in (1, 3):  # the one search over the PyTorch step and over the bundle's ONNX step
        options = BeamOptions(beam_size=k, max_len=model.decoder.cfg.max_len)
        expected = [h.tokens for h in decode(model.eval().decoder, feats, options)]
        got = [h.tokens for h in caption_arrays(bundle, x, options)]
        assert got == expected
    assert len({tuple(t) for t in expected}) > 1  # the images get different captions: a meaningful comparison


def test_dynamic_batch(exported):
    bundle = load_bundle(exported[1], provider="cpu")
    x = preprocess_all(exported[2], load_captioner(exported[0])[0])
    assert bundle.encode(x[:1]).shape[0] == 1 and bundle.encode(x).shape[0] == len(x)


def test_variants_are_measured(exported):
    manifest = manifest_of(exported[1])
    assert set(manifest.variants) == {"int8", "int8-full", "fp16"}
    for name, info in manifest.variants.items():
        assert 0.0 <= info["caption_agreement"] <= 1.0 and info["images"] == 6
        assert "score_delta" in info and info["measured_on"]
        b = load_bundle(exported[1], variant=name, provider="cpu")
        assert b.model_version == f"tiny-test+{name}"
    int8_step = onnx.load(str(exported[1] / "int8" / formats.DECODER_STEP_FILE))
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in int8_step.graph.node)
    assert manifest.variants["int8"]["files"] == [formats.DECODER_STEP_FILE]  # the once-per-image init stays fp32
    full_encoder = onnx.load(str(exported[1] / "int8-full" / formats.ENCODER_FILE))
    assert any(n.op_type == "QuantizeLinear" for n in full_encoder.graph.node)  # activations quantised too


def test_an_existing_bundle_is_not_overwritten_without_force(exported, capsys):
    ckpt, bundle, _images = exported
    assert main(["export", str(ckpt), "--out", str(bundle), "--variants", ""]) == 2
    assert "exists" in capsys.readouterr().out


def test_the_decoding_policy_is_written_into_the_manifest(exported):
    assert manifest_of(exported[1]).decoding == TINY_POLICY


def test_a_policy_naming_words_the_vocabulary_lacks_is_refused_before_any_work(exported, tmp_path, capsys):
    """The English served policy is the CLI's default; a model whose vocabulary lacks its words must say so."""
    ckpt, _bundle, images = exported
    out, image = tmp_path / "bundle", tmp_path / "img.png"
    image.write_bytes(images[0])
    assert main(["export", str(ckpt), "--out", str(out), "--variants", "", "--image-files", str(image)]) == 2
    said = capsys.readouterr().out
    assert "vocabulary lacks" in said and "another" in said and "--decoding-policy" in said
    assert not out.exists()


class _MistranslatedDecoder(Decoder):
    """Behaves like the real decoder in PyTorch, but what the exporter records is subtly wrong: the failure
    that parity checking exists to catch (an operator the exporter translates differently)."""

    def step(self, word, h, c, features, att_proj):
        log_probs, h, c, alpha = super().step(word, h, c, features, att_proj)
        if torch.onnx.is_in_onnx_export():
            log_probs = log_probs.roll(1, dims=1)
        return log_probs, h, c, alpha


def test_a_bundle_that_fails_parity_is_not_written(tmp_path):
    model, itos = make_tiny_model()
    model.decoder.__class__ = _MistranslatedDecoder
    out = tmp_path / "bundle"
    with pytest.raises(ParityFailed) as info:
        export_bundle(model, itos, out, synthetic_images(3), ExportOptions(variants=(), beam_sizes=(1,)))
    assert not info.value.reports[0].ok and info.value.reports[0].mismatches
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no half-written staging directory left behind
