"""Bounds on every field of a bundle's ``manifest.json`` (``formats.Manifest``), checked when a bundle is loaded.

The manifest's digest catches an edit after export, not a value that was wrong when it was sealed (a faulty
exporter, a hand edit re-sealed with ``formats.manifest_digest``): ``max_len`` 0 served "A.", ``input_size`` 64 left
a worker dead-lettering every job. Each field has one rule in :data:`RULES`, keyed by its dotted path; a rule gets
the field's value and the whole manifest (for the fields that must agree with another) and returns what is wrong,
or None. A field without a rule is a mistake that ``tests/inference/test_manifest_bounds.py`` names, so a new
manifest or decoding-policy field comes with its bound: add one row here.

What only the graphs or the vocabulary can confirm (input size, grid, sizes, the vocabulary's length and words) is
checked against them too (``inference/bundle.py``: ``check_graph_shapes``, ``read_vocab``, ``check_policy``).
Torch-free and onnxruntime-free, like ``formats``: export applies the same rules before it writes a bundle.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

from captionbot.formats import (
    BUNDLE_FORMAT_VERSION,
    MAX_BEAM_SIZE,
    MIN_BEAM_SIZE,
    SPECIAL_TOKENS,
    BundleError,
    DecoderSpec,
    DecodingPolicy,
    EncoderSpec,
    Manifest,
)

Rule = Callable[[Any, Manifest], str | None]  # (value, manifest) -> what is wrong, or None

MIN_MAX_LEN, MAX_MAX_LEN = 8, 64  # caption length in words: Flickr8k/COCO captions average 11-12 words
MIN_INPUT_SIDE, MAX_INPUT_SIDE = 32, 1024  # encoder input height/width in pixels
MAX_GRID_SIDE = 64  # feature grid cells per side (and never more than the input's pixels)
MAX_WIDTH = 16_384  # channels, embedding, hidden and attention sizes
MAX_VOCAB = 1_000_000
MIN_STD, MAX_STD = 0.01, 1.0  # normalisation of RGB in [0, 1]: ImageNet's std is about 0.23, "[-1, 1]" is 0.5
MAX_LENGTH_ALPHA = 3.0  # length normalisation exponent of the final choice (docs/model.md chose 1.0)
MIN_OPSET, MAX_OPSET = 11, 30
HEX64 = re.compile(r"[0-9a-f]{64}")
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a variant directory: no "/", no ".."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(lo: int, hi: int) -> Rule:
    def rule(value: Any, _m: Manifest) -> str | None:
        return None if _is_int(value) and lo <= value <= hi else f"must be a whole number in {lo}..{hi}"
    return rule


def number(lo: float, hi: float) -> Rule:
    def rule(value: Any, _m: Manifest) -> str | None:
        ok = (_is_int(value) or isinstance(value, float)) and math.isfinite(value) and lo <= value <= hi
        return None if ok else f"must be a number in {lo}..{hi}"
    return rule


def sequence(n: int, item: Rule) -> Rule:
    def rule(value: Any, m: Manifest) -> str | None:
        if not isinstance(value, (tuple, list)) or len(value) != n:
            return f"must be a list of {n}"
        problems = [p for p in (item(v, m) for v in value) if p]
        return f"each value {problems[0]}" if problems else None
    return rule


def boolean(value: Any, _m: Manifest) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def text(limit: int, required: bool = True) -> Rule:
    def rule(value: Any, _m: Manifest) -> str | None:
        if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
            return f"must be {'non-empty ' if required else ''}text of at most {limit} characters"
        return None if value.isprintable() else "must be printable text"
    return rule


def all_of(*rules: Rule) -> Rule:
    def rule(value: Any, m: Manifest) -> str | None:
        return next((p for p in (r(value, m) for r in rules) if p), None)
    return rule


def _grid_within_input(value: Any, m: Manifest) -> str | None:
    size = m.encoder.input_size
    if all(_is_int(v) for v in (*size, *value)) and (value[0] > size[0] or value[1] > size[1]):
        return f"{list(value)} has more cells than the input has pixels ({list(size)})"
    return None


def _min_words(value: Any, m: Manifest) -> str | None:
    """Fewer than decoder.max_len: a caption must be able to end."""
    hi = m.decoder.max_len - 1 if _is_int(m.decoder.max_len) else MAX_MAX_LEN - 1
    return integer(0, hi)(value, m)


def _no_repeat_ngram(value: Any, m: Manifest) -> str | None:
    if _is_int(value) and (value == 0 or 2 <= value <= MAX_MAX_LEN):
        return None
    return f"must be 0 (off) or a whole number in 2..{MAX_MAX_LEN}"


def _repeatable_words(value: Any, m: Manifest) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or not all(isinstance(w, str) and w for w in value):
        return "must be null or a list of words"
    if any(w in SPECIAL_TOKENS for w in value):
        return f"must not name the special tokens {list(SPECIAL_TOKENS)}"
    return None  # that each word is in the vocabulary: inference/policy.py check_policy


def _digest(value: Any, _m: Manifest) -> str | None:
    return None if value == "" or (isinstance(value, str) and HEX64.fullmatch(value)) else "must be a sha256 (hex)"


def _files(value: Any, _m: Manifest) -> str | None:
    if not isinstance(value, dict) or not value:
        return "must map each file to its sha256"
    for name, digest in value.items():
        parts = str(name).split("/")
        if not isinstance(name, str) or not all(PLAIN_NAME.fullmatch(p) for p in parts) or ".." in parts:
            return f"names {str(name)[:80]!r}, not a plain path inside the bundle"
        if not isinstance(digest, str) or not HEX64.fullmatch(digest):
            return f"gives {name} no sha256"
    return None


def _variants(value: Any, _m: Manifest) -> str | None:
    if not isinstance(value, dict):
        return "must map each variant to its directory"
    for name, info in value.items():
        if name == "fp32" or not PLAIN_NAME.fullmatch(str(name)):
            return f"has a variant named {str(name)[:40]!r}"
        if not isinstance(info, dict) or not PLAIN_NAME.fullmatch(str(info.get("dir", ""))):
            return f"{name}: its dir must be a plain directory name inside the bundle"
    return None


def _labels(value: Any, _m: Manifest) -> str | None:
    if value == {}:
        return None
    if not isinstance(value, dict) or not PLAIN_NAME.fullmatch(str(value.get("file", ""))):
        return "must be {} or name its table file (a plain file name inside the bundle)"
    if not isinstance(value.get("output"), str) or not value["output"]:
        return "must name the encoder output of the class probabilities"
    if "classes" in value and not (_is_int(value["classes"]) and 1 <= value["classes"] <= 100_000):
        return "classes must be a whole number in 1..100000"
    return None


def _lm(value: Any, _m: Manifest) -> str | None:
    if value == {}:
        return None
    if not isinstance(value, dict) or not PLAIN_NAME.fullmatch(str(value.get("file", ""))):
        return "must be {} or name its language-model file (a plain file name inside the bundle)"
    if any(not isinstance(v, str) or len(v) > 2000 for v in value.values()):
        return "must hold short texts only (file, kind, provenance)"
    return None


def _list_of_dicts(value: Any, _m: Manifest) -> str | None:
    return None if isinstance(value, list) and all(isinstance(v, dict) for v in value) else "must be a list of objects"


def section(cls: type, optional: bool = False) -> Rule:
    """A nested part of the manifest (its own fields have rules of their own)."""
    def rule(value: Any, _m: Manifest) -> str | None:
        ok = isinstance(value, cls) or (optional and value is None)
        return None if ok else f"must be {'null or ' if optional else ''}an object of {cls.__name__} fields"
    return rule


def _format_version(value: Any, _m: Manifest) -> str | None:
    return None if value == BUNDLE_FORMAT_VERSION else f"must be {BUNDLE_FORMAT_VERSION}"


def _special_tokens(value: Any, _m: Manifest) -> str | None:
    return None if tuple(value) == SPECIAL_TOKENS else f"must be {list(SPECIAL_TOKENS)}"


WIDTH = integer(1, MAX_WIDTH)

# Dotted field path -> its rule. ``decoding.*`` applies when the manifest has a policy.
MAX_LM_WEIGHT = 5.0  # shallow fusion: the language models' log-ratio at most 5x the decoder's log-probability
MIN_LM_FREE_SCORE = -20.0  # the gate on the free caption's mean log-probability per word (0 = never, -20 = all)

RULES: dict[str, Rule] = {
    "model_name": text(100),
    "model_version": text(64),
    "created_at": text(64, required=False),
    "trained_on": text(2000, required=False),
    "format_version": _format_version,
    "opset": integer(MIN_OPSET, MAX_OPSET),
    "special_tokens": _special_tokens,
    "files": _files,
    "scores": _list_of_dicts,
    "variants": _variants,
    "labels": _labels,
    "lm": _lm,
    "digest": _digest,
    "encoder": section(EncoderSpec),
    "decoder": section(DecoderSpec),
    "decoding": section(DecodingPolicy, optional=True),
    "encoder.arch": text(100),
    "encoder.input_size": sequence(2, integer(MIN_INPUT_SIDE, MAX_INPUT_SIDE)),
    "encoder.mean": sequence(3, number(0.0, 1.0)),
    "encoder.std": sequence(3, number(MIN_STD, MAX_STD)),
    "encoder.grid": all_of(sequence(2, integer(1, MAX_GRID_SIDE)), _grid_within_input),
    "encoder.channels": WIDTH,
    "decoder.embed_dim": WIDTH,
    "decoder.hidden_dim": WIDTH,
    "decoder.attention_dim": WIDTH,
    "decoder.vocab_size": integer(len(SPECIAL_TOKENS) + 1, MAX_VOCAB),
    "decoder.max_len": integer(MIN_MAX_LEN, MAX_MAX_LEN),
    "decoding.beam_size": integer(MIN_BEAM_SIZE, MAX_BEAM_SIZE),
    "decoding.min_words": _min_words,
    "decoding.block_repeated_word": boolean,
    "decoding.no_repeat_ngram": _no_repeat_ngram,
    "decoding.repeatable_words": _repeatable_words,
    "decoding.length_alpha": number(0.0, MAX_LENGTH_ALPHA),
    "decoding.lm_weight": number(0.0, MAX_LM_WEIGHT),
    "decoding.lm_max_free_score": number(MIN_LM_FREE_SCORE, 0.0),
}

# The dataclass behind each dotted prefix: every one of their fields needs a rule (see the module docstring).
SECTIONS: dict[str, type] = {"": Manifest, "encoder.": EncoderSpec, "decoder.": DecoderSpec,
                             "decoding.": DecodingPolicy}


def field_paths() -> list[str]:
    """Every dotted manifest field path (what :data:`RULES` must cover)."""
    return [f"{prefix}{f.name}" for prefix, cls in SECTIONS.items() for f in fields(cls)]


def _value(manifest: Manifest, path: str) -> tuple[bool, Any]:
    obj: Any = manifest
    for part in path.split("."):
        if obj is None or not is_dataclass(obj):
            return False, None
        obj = getattr(obj, part)
    return True, obj


def check_manifest(manifest: Manifest, where: object = "") -> None:
    """Raise :class:`BundleError` naming the first field (dotted path) outside its bounds."""
    for path, rule in RULES.items():
        present, value = _value(manifest, path)
        if not present:
            continue
        try:
            problem = rule(value, manifest)
        except (TypeError, ValueError, AttributeError, IndexError) as exc:  # a value of the wrong shape
            problem = f"is malformed ({type(exc).__name__})"
        if problem:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise BundleError(f"bundle {where}: manifest field {path} = {shown} {problem}")
