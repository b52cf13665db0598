"""The caption language models in the bundle: they load checked, they make a kitchen photo's caption say
kitchen things, captions assembled from labels keep their grammar, and a bundle without them still captions."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from captionbot.inference.captioner import Captioner
from captionbot.inference.grammar import article, fix_articles

from captionbot import formats
from captionbot.settings import DEFAULT_BUNDLE


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    return copy


def _reseal(bundle: Path, edit) -> None:
    manifest = formats.Manifest.from_json((bundle / formats.MANIFEST_FILE).read_text())
    edit(manifest)
    (bundle / formats.MANIFEST_FILE).write_text(manifest.to_json())


@pytest.fixture(scope="module")
def served() -> Captioner:
    return Captioner.load(DEFAULT_BUNDLE, provider="cpu", threads=1)


def test_the_default_bundle_declares_and_loads_its_language_models(served: Captioner) -> None:
    manifest = served.bundle.manifest
    assert manifest.lm["file"] in manifest.files and manifest.decoding is not None
    assert manifest.decoding.lm_weight > 0 and served.bundle.lm is not None
    V = len(served.bundle.itos)
    lm = served.bundle.lm.target
    stoi = {w: i for i, w in enumerate(served.bundle.itos)}
    probs = np.exp(lm.next_log_probs([[], [stoi["a"]], [stoi["a"], stoi["bus"]], [stoi["a"], stoi["cat"]]]))
    assert probs.shape == (4, V) and np.allclose(probs.sum(axis=1), 1.0, atol=2e-3)
    # what COCO captions say after "a cup of": coffee is far likelier than grass
    ctx = [[stoi["cup"], stoi["of"]]]
    assert lm.next_log_probs(ctx)[0, stoi["coffee"]] > lm.next_log_probs(ctx)[0, stoi["grass"]] + 2


def test_real_coco_photos_get_the_right_nouns_and_grammar(served: Captioner, data_dir: Path) -> None:
    """COCO dev photos (out of domain): a bus on a street was "a group of people sitting on the street" and a
    kitchen "a kitchen is sitting in a room" before the language models; a broccoli photo was "a broccoli ..."."""
    coco = data_dir / "coco" / "val2017"
    bus, kitchen, broccoli = served.caption_images(
        [(coco / name).read_bytes() for name in ("000000476704.jpg", "000000453302.jpg", "000000019221.jpg")])
    assert "bus" in bus.words and "street" in bus.words and "people" not in bus.words, bus.caption
    assert "kitchen" in kitchen.words and "sitting" not in kitchen.words, kitchen.caption
    assert broccoli.caption.startswith("Some broccoli"), broccoli.caption


def test_an_old_bundle_without_language_models_still_loads_and_captions(tmp_path: Path, data_dir: Path) -> None:
    old = _copy(tmp_path)
    (old / "caption_lm.npz").unlink()

    def drop_lm(m: formats.Manifest) -> None:
        m.files.pop("caption_lm.npz")
        m.lm = {}
        assert m.decoding is not None
        m.decoding = replace(m.decoding, lm_weight=0.0, lm_max_free_score=0.0)

    _reseal(old, drop_lm)
    raw = json.loads((old / formats.MANIFEST_FILE).read_text())
    del raw["lm"], raw["decoding"]["lm_weight"], raw["decoding"]["lm_max_free_score"]  # as 1.1.0 wrote it
    raw["digest"] = formats.manifest_digest(raw)
    (old / formats.MANIFEST_FILE).write_text(json.dumps(raw))
    captioner = Captioner.load(old, provider="cpu", threads=1)
    assert captioner.bundle.lm is None
    out = captioner.caption_images([next((data_dir / "coco" / "val2017").glob("*.jpg")).read_bytes()])[0]
    assert out.caption and out.caption[0].isupper()


def test_a_damaged_language_model_or_a_policy_fusing_a_missing_one_is_refused(tmp_path: Path) -> None:
    bad = _copy(tmp_path)
    (bad / "caption_lm.npz").write_bytes(b"not numpy")
    _reseal(bad, lambda m: m.files.__setitem__("caption_lm.npz", formats.sha256_file(bad / "caption_lm.npz")))
    with pytest.raises(formats.BundleError, match="caption_lm"):
        Captioner.load(bad, provider="cpu", threads=1)
    shutil.rmtree(bad)
    none = _copy(tmp_path)

    def no_lm(m: formats.Manifest) -> None:
        m.files.pop("caption_lm.npz")
        m.lm = {}

    _reseal(none, no_lm)
    with pytest.raises(formats.BundleError, match="lm_weight"):
        Captioner.load(none, provider="cpu", threads=1)


def test_assembled_captions_keep_their_articles() -> None:
    assert article("broccoli") == "some" and article("strawberries") == "some" and article("apple") == "an"
    assert article("uniform") == "a" and article("bus") == "a"
    assert fix_articles(["a", "apple", "on", "a", "table"]) == ["an", "apple", "on", "a", "table"]
    assert fix_articles(["a", "broccoli", "on", "an", "plate"]) == ["some", "broccoli", "on", "a", "plate"]
