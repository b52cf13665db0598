"""Loading a bundle: hashes are checked, variants and providers are chosen as asked, or a clear error says why."""

from __future__ import annotations

import logging
import shutil

import onnxruntime as ort
import pytest
from captionbot.inference.bundle import choose_providers, load_bundle

from captionbot import formats
from captionbot.formats import BundleError
from tests.cpu import auto_suffix


@pytest.fixture
def bundle_copy(caption_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(caption_bundle, dst)
    return dst


def test_a_tampered_file_is_refused(bundle_copy):
    with open(bundle_copy / formats.DECODER_STEP_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match=r"decoder_step\.onnx"):
        load_bundle(bundle_copy)


def test_a_missing_file_or_manifest_is_refused(bundle_copy, tmp_path):
    (bundle_copy / formats.VOCAB_FILE).unlink()
    with pytest.raises(BundleError, match=r"vocab\.json"):
        load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path / "nowhere")


def test_variants(caption_bundle):
    manifest = formats.Manifest.from_json((caption_bundle / formats.MANIFEST_FILE).read_text())
    for name in manifest.variants:
        b = load_bundle(caption_bundle, variant=name, provider="cpu")
        assert b.model_version.endswith(f"+{name}")
    with pytest.raises(BundleError, match="no 'fp8' variant"):
        load_bundle(caption_bundle, variant="fp8")


def test_auto_runs_the_int8_variant_on_cpu_when_the_bundle_ships_one(caption_bundle, tmp_path):
    """``auto`` (CAPTIONBOT_VARIANT's default): the int8 variant on the CPU provider, whose version says so; a
    bundle without an int8 variant (here: the same bundle, variants removed and the manifest resealed) runs fp32."""
    manifest = formats.Manifest.from_json((caption_bundle / formats.MANIFEST_FILE).read_text())
    b = load_bundle(caption_bundle, variant="auto", provider="cpu", threads=1)
    expected = "int8" if "int8" in manifest.variants else "fp32"
    assert b.variant == expected
    assert b.model_version == manifest.model_version + auto_suffix(manifest.variants, manifest.files)
    plain = tmp_path / "plain"
    shutil.copytree(caption_bundle, plain, ignore=shutil.ignore_patterns(*manifest.variants))
    manifest.variants = {}
    manifest.files = {k: v for k, v in manifest.files.items() if "/" not in k}
    (plain / formats.MANIFEST_FILE).write_text(manifest.to_json())
    b = load_bundle(plain, variant="auto", provider="cpu", threads=1)
    assert b.variant == "fp32" and b.model_version == manifest.model_version


def test_provider_choice(caption_bundle, caplog):
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING):
        chosen = choose_providers("cuda")
    assert chosen[0] == ("CUDAExecutionProvider" if has_cuda else "CPUExecutionProvider")
    if not has_cuda:
        assert "CUDA was asked for" in caplog.text
    with pytest.raises(ValueError):
        choose_providers("tpu")
    b = load_bundle(caption_bundle, provider="cpu", threads=1)
    assert b.encoder.get_providers() == ["CPUExecutionProvider"]
    assert b.encoder.get_session_options().intra_op_num_threads == 1
    for session in (b.encoder, b.decoder_init, b.decoder_step):  # idle threads sleep instead of spinning
        assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_a_manifest_edited_after_export_is_refused_and_an_old_one_without_a_digest_loads_when_allowed(
    bundle_copy, caplog
):
    """The file hashes do not cover manifest.json itself: its digest does. An edited normalisation would serve
    wrong captions as successes, so it is refused; a bundle from before digests loads only when allowed
    (``allow_unsealed``; refusal: tests/inference/test_manifest_bounds.py), with a warning."""
    import json

    path = bundle_copy / formats.MANIFEST_FILE
    original = json.loads(path.read_text())
    edited = json.loads(path.read_text())
    edited["encoder"]["mean"] = [0.0, 0.0, 0.0]
    path.write_text(json.dumps(edited))
    with pytest.raises(BundleError, match="changed after export"):
        load_bundle(bundle_copy)

    path.write_text(json.dumps({**original, "digest": ""}))
    with caplog.at_level(logging.WARNING):
        load_bundle(bundle_copy, provider="cpu", threads=1, allow_unsealed=True)
    assert "no digest" in caplog.text
