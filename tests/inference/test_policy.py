"""The decoding policy travels with the model: the runtime serves what the bundle's manifest says, refuses a policy
that names words its vocabulary lacks, and serves a bundle from before policies as it was served then."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from captionbot.export.tiny import synthetic_images
from captionbot.inference.captioner import Captioner
from captionbot.inference.policy import ENGLISH_SERVED_POLICY, SERVED_RULES, beam_options

from captionbot import formats
from captionbot.formats import BundleError, DecodingPolicy
from captionbot.settings import DEFAULT_BUNDLE


@pytest.fixture
def bundle_copy(caption_bundle, tmp_path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(caption_bundle, dst)
    return dst


def edit_manifest(bundle: Path, **changes) -> None:
    path = bundle / formats.MANIFEST_FILE
    d = json.loads(path.read_text())
    d.update(changes)
    d = {k: v for k, v in d.items() if v is not ...}  # ... deletes a key
    d["digest"] = formats.manifest_digest(d)  # sealed: these tests are about what the content says
    path.write_text(json.dumps(d))


def test_the_runtime_serves_the_policy_in_the_manifest(bundle_copy) -> None:
    policy = DecodingPolicy(beam_size=2, min_words=3, no_repeat_ngram=2, length_alpha=0.5)
    edit_manifest(bundle_copy, decoding=policy.to_dict())
    captioner = Captioner.load(bundle_copy, provider="cpu", threads=1)
    o = captioner.options
    assert (o.beam_size, o.min_words, o.no_repeat_ngram, o.length_alpha) == (2, 3, 2, 0.5)
    assert o.repeatable is None and not o.block_repeated_word
    assert all(len(out.words) >= 3 for out in captioner.caption_images(synthetic_images(3)))  # min_words 3


def test_a_policy_naming_words_the_vocabulary_lacks_is_refused(bundle_copy) -> None:
    policy = replace(SERVED_RULES, repeatable_words=("a", "the", "xylophonist-unicorn"))
    edit_manifest(bundle_copy, decoding=policy.to_dict())
    with pytest.raises(BundleError, match=r"vocabulary lacks.*xylophonist-unicorn"):
        Captioner.load(bundle_copy)
    edit_manifest(bundle_copy, decoding={**SERVED_RULES.to_dict(), "temperature": 0.7})
    with pytest.raises(BundleError, match=r"unknown fields.*temperature"):
        Captioner.load(bundle_copy)


def test_a_bundle_from_before_policies_is_served_as_before(bundle_copy, caplog) -> None:
    """No policy + an English vocabulary: the English served policy (what such bundles got), said in the log."""
    itos = json.loads((bundle_copy / formats.VOCAB_FILE).read_text())["itos"]
    if not all(w in itos for w in ENGLISH_SERVED_POLICY.repeatable_words):
        pytest.skip("needs an English bundle (models/default)")
    edit_manifest(bundle_copy, decoding=...)
    with caplog.at_level(logging.INFO, logger="captionbot.inference.policy"):
        captioner = Captioner.load(bundle_copy, provider="cpu", threads=1)
    assert "predates decoding policies" in caplog.text and "English" in caplog.text
    assert captioner.options == beam_options(ENGLISH_SERVED_POLICY, itos, captioner.bundle.manifest.decoder.max_len)
    assert captioner.options == Captioner.load(DEFAULT_BUNDLE, provider="cpu", threads=1).options


def test_a_bundle_from_before_policies_in_another_language_gets_no_english_word_list(bundle_copy, caplog) -> None:
    vocab_path = bundle_copy / formats.VOCAB_FILE
    itos = json.loads(vocab_path.read_text())["itos"]
    itos = ["dans" if w == "into" else w for w in itos]  # a vocabulary that is not the English one
    vocab_path.write_text(json.dumps({"itos": itos}))
    files = json.loads((bundle_copy / formats.MANIFEST_FILE).read_text())["files"]
    edit_manifest(bundle_copy, decoding=..., files={**files, formats.VOCAB_FILE: formats.sha256_file(vocab_path)})
    with caplog.at_level(logging.WARNING, logger="captionbot.inference.policy"):
        captioner = Captioner.load(bundle_copy, provider="cpu", threads=1)
    assert "not the English one" in caplog.text
    assert captioner.options.repeatable is None
    assert captioner.options == beam_options(SERVED_RULES, itos, captioner.bundle.manifest.decoder.max_len)


def test_the_shipped_bundle_carries_its_policy_explicitly() -> None:
    manifest = formats.Manifest.from_json((DEFAULT_BUNDLE / formats.MANIFEST_FILE).read_text())
    assert manifest.decoding is not None
    # the English served rules, plus (since 1.2.0) fusion with the bundle's caption language models
    assert replace(manifest.decoding, lm_weight=0.0, lm_max_free_score=0.0) == ENGLISH_SERVED_POLICY
    assert manifest.decoding.lm_weight > 0 and manifest.lm
    formats.verify_bundle_files(DEFAULT_BUNDLE, manifest)


@pytest.mark.data
def test_the_word_list_of_the_policy_decides_what_may_repeat(data_dir, tmp_path) -> None:
    """On real photos the shipped policy lets "a" repeat ("a man in a red shirt"); a policy whose list is empty
    lets no word appear twice."""
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    edit_manifest(bundle, decoding=replace(ENGLISH_SERVED_POLICY, repeatable_words=()).to_dict())
    images = [p.read_bytes() for p in sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[:24]]
    shipped = Captioner.load(DEFAULT_BUNDLE, provider="cpu", threads=1).caption_images(images)
    strict = Captioner.load(bundle, provider="cpu", threads=1).caption_images(images)
    assert any(len(set(o.words)) < len(o.words) for o in shipped)
    # the search may use "a" once and "an" once: under the empty list it wrote "in front of an colorful slide" to
    # dodge the rule, and the article fix (inference/grammar.py) made that "a colorful slide"
    rest = [[w for w in o.words if w not in ("a", "an")] for o in strict]
    assert all(len(set(words)) == len(words) for words in rest)
    assert all(sum(w in ("a", "an") for w in o.words) <= 2 for o in strict)
