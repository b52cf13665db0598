"""Every manifest field is bounded at load, and a manifest without a digest is refused unless allowed.

Each bad manifest here is re-sealed (its digest recomputed, as a faulty exporter or a careful hand edit would leave
it), so the digest passes and the bounds are what refuse it."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from captionbot.inference.bundle import ALLOW_UNSEALED_ENV, load_bundle

from captionbot import formats
from captionbot.formats import BundleError
from captionbot.manifest_bounds import RULES, check_manifest, field_paths


def _manifest(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / formats.MANIFEST_FILE).read_text())


def _write(bundle: Path, d: dict[str, Any], seal: bool = True) -> None:
    d = {**d, "digest": formats.manifest_digest(d) if seal else ""}
    (bundle / formats.MANIFEST_FILE).write_text(json.dumps(d))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = d
        for p in parents:
            target = target[p]
        target[last] = value
    return edit


def _policy(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        d["decoding"] = {**formats.DecodingPolicy().to_dict(), **(d.get("decoding") or {}), **changes}
    return edit


# field (named in the error) -> an edit that puts it out of bounds
BAD_EDITS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("decoder.max_len", _set("decoder.max_len", 0)),
    ("decoder.max_len", _set("decoder.max_len", 3)),
    ("decoder.max_len", _set("decoder.max_len", 5000)),
    ("decoder.max_len", _set("decoder.max_len", 12.5)),
    ("encoder.mean", _set("encoder.mean", [0.5, 0.5, 2.0])),
    ("encoder.mean", _set("encoder.mean", [0.5, 0.5])),
    ("encoder.std", _set("encoder.std", [0.0, 0.5, 0.5])),
    ("encoder.std", _set("encoder.std", [0.5, 0.5, 50.0])),
    ("encoder.std", _set("encoder.std", [0.5, 0.5, "0.5"])),
    ("encoder.input_size", _set("encoder.input_size", [8, 8])),
    ("encoder.input_size", _set("encoder.input_size", [224, 100_000])),
    ("encoder.grid", _set("encoder.grid", [0, 7])),
    ("encoder.grid", _set("encoder.grid", [7])),
    ("encoder.channels", _set("encoder.channels", 0)),
    ("decoder.hidden_dim", _set("decoder.hidden_dim", -1)),
    ("decoder.vocab_size", _set("decoder.vocab_size", True)),
    ("opset", _set("opset", 3)),
    ("model_version", _set("model_version", "")),
    ("files", lambda d: d["files"].update({"../../etc/passwd": "0" * 64})),
    ("variants", _set("variants", {"int8": {"dir": "../elsewhere"}})),
    ("labels", _set("labels", {"file": "/etc/passwd", "output": "label_probs"})),
    ("special_tokens", _set("special_tokens", ["<pad>", "<end>", "<start>", "<unk>"])),
    ("decoding.beam_size", _policy(beam_size=0)),
    ("decoding.beam_size", _policy(beam_size=2000)),
    ("decoding.min_words", _policy(min_words=-1)),
    ("decoding.min_words", _policy(min_words=40)),  # not below max_len (22)
    ("decoding.block_repeated_word", _policy(block_repeated_word="yes")),
    ("decoding.no_repeat_ngram", _policy(no_repeat_ngram=1)),
    ("decoding.length_alpha", _policy(length_alpha=-1.0)),
    ("decoding.length_alpha", _policy(length_alpha=float("nan"))),
    ("decoding.repeatable_words", _policy(repeatable_words=["a", "<end>"])),
]


@pytest.fixture(scope="module")
def shipped(caption_bundle: Path) -> dict[str, Any]:
    return _manifest(caption_bundle)


def test_every_manifest_field_has_a_bound() -> None:
    """A field added to the manifest or its decoding policy without a row in manifest_bounds.RULES fails here."""
    assert sorted(set(field_paths()) - set(RULES)) == []
    assert sorted(set(RULES) - set(field_paths())) == []


def test_the_shipped_bundle_is_within_bounds(caption_bundle: Path) -> None:
    check_manifest(formats.Manifest.from_json((caption_bundle / formats.MANIFEST_FILE).read_text()))


@pytest.mark.parametrize(("field", "edit"), BAD_EDITS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_EDITS)])
def test_a_resealed_manifest_out_of_bounds_is_refused_naming_the_field(
    tmp_path: Path, shipped: dict[str, Any], field: str, edit: Callable[[dict[str, Any]], None]
) -> None:
    d = json.loads(json.dumps(shipped))
    edit(d)
    _write(tmp_path, d)
    with pytest.raises(BundleError, match=rf"manifest field {field.replace('.', '[.]')} = "):
        load_bundle(tmp_path, provider="cpu")


def test_a_resealed_unchanged_manifest_still_loads(tmp_path: Path, caption_bundle: Path,
                                                   shipped: dict[str, Any]) -> None:
    """The edits above are refused for their values, not for being re-sealed."""
    copy = tmp_path / "bundle"
    shutil.copytree(caption_bundle, copy)
    _write(copy, shipped)
    assert load_bundle(copy, provider="cpu", threads=1).manifest.decoder.max_len == shipped["decoder"]["max_len"]


def test_an_unsealed_manifest_is_refused_unless_allowed(
    tmp_path: Path, caption_bundle: Path, shipped: dict[str, Any], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No digest: nothing would notice an edit. Refused, with how to allow it; old bundles load when allowed (by
    argument or by CAPTIONBOT_ALLOW_UNSEALED), with a warning, and their fields are still bounded."""
    copy = tmp_path / "bundle"
    shutil.copytree(caption_bundle, copy)
    _write(copy, shipped, seal=False)
    monkeypatch.delenv(ALLOW_UNSEALED_ENV, raising=False)
    with pytest.raises(BundleError, match=r"has no digest.*--allow-unsealed"):
        load_bundle(copy, provider="cpu")
    with caplog.at_level(logging.WARNING):
        load_bundle(copy, provider="cpu", threads=1, allow_unsealed=True)
    assert "no digest (allowed" in caplog.text
    monkeypatch.setenv(ALLOW_UNSEALED_ENV, "true")
    load_bundle(copy, provider="cpu", threads=1)
    _write(copy, {**shipped, "decoder": {**shipped["decoder"], "max_len": 3}}, seal=False)
    with pytest.raises(BundleError, match=r"decoder\.max_len = 3"):
        load_bundle(copy, provider="cpu")


def test_an_input_size_the_encoder_graph_leaves_open_is_checked_by_running_it(tmp_path: Path,
                                                                               caption_bundle: Path) -> None:
    """An encoder exported with open height and width: its input shape cannot refute the manifest's input_size,
    so the loader runs it once at that size and compares the features with the grid."""
    import onnx

    copy = tmp_path / "bundle"
    shutil.copytree(caption_bundle, copy, ignore=shutil.ignore_patterns("int8"))
    graph = onnx.load(copy / formats.ENCODER_FILE)
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    onnx.save(graph, copy / formats.ENCODER_FILE)
    d = _manifest(copy)
    d["files"] = {k: v for k, v in d["files"].items() if not k.startswith("int8/")}
    d["files"][formats.ENCODER_FILE] = formats.sha256_file(copy / formats.ENCODER_FILE)
    d["variants"] = {}
    _write(copy, d)
    load_bundle(copy, provider="cpu", threads=1)  # the right size: loads
    _write(copy, {**d, "encoder": {**d["encoder"], "input_size": [64, 64]}})
    with pytest.raises(BundleError, match=r"input_size \[64, 64\] the encoder gives features"):
        load_bundle(copy, provider="cpu", threads=1)
