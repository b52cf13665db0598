"""The contracts between the parts: the caption job, its result, and the model bundle.

This is the one module that the bot, the worker, the inference runtime, training and export all import.
It has no dependencies beyond the standard library, so importing it never drags in torch, discord or
onnxruntime. Change a format here (and in ``shared/design.md``), never in one part only.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------------------------
# Errors a user can be told about
# --------------------------------------------------------------------------------------------------------------


class ErrorCode(StrEnum):
    """Why a caption could not be made. The bot turns each into a short message for the user."""

    NOT_AN_IMAGE = "not_an_image"  # bytes that no decoder recognises (e.g. a PDF renamed .png)
    UNSUPPORTED_FORMAT = "unsupported_format"  # an image format we do not accept
    TOO_LARGE = "too_large"  # file bytes over the cap
    TOO_MANY_PIXELS = "too_many_pixels"  # decompression-bomb guard
    TRUNCATED = "truncated"  # the file ends early / is corrupt
    DOWNLOAD_FAILED = "download_failed"  # CDN refused, timed out, or not a Discord CDN URL
    BUSY = "busy"  # queue over its limit: try again shortly
    RATE_LIMITED = "rate_limited"  # the user or guild asked too often
    DEAD_LETTER = "dead_letter"  # failed K times on workers: given up
    TIMEOUT = "timeout"  # no result in time
    INTERNAL = "internal"  # a bug: logged with details, user gets a generic message


USER_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.NOT_AN_IMAGE: "That file is not an image I can read.",
    ErrorCode.UNSUPPORTED_FORMAT: "That image format is not supported (try PNG, JPEG, GIF or WebP).",
    ErrorCode.TOO_LARGE: "That file is too large for me to caption.",
    ErrorCode.TOO_MANY_PIXELS: "That image has too many pixels for me to caption.",
    ErrorCode.TRUNCATED: "That image looks truncated or corrupt.",
    ErrorCode.DOWNLOAD_FAILED: "I could not download that image.",
    ErrorCode.BUSY: "I'm busy right now, please try again shortly.",
    ErrorCode.RATE_LIMITED: "You're asking a bit too fast, please wait a moment.",
    ErrorCode.DEAD_LETTER: "Sorry, I could not caption that image.",
    ErrorCode.TIMEOUT: "Sorry, captioning took too long. Please try again.",
    ErrorCode.INTERNAL: "Sorry, something went wrong on my side.",
}


class ImageRejected(ValueError):
    """An input image refused for a reason the user can be told (``code``). Raised by image checks."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        self.code = ErrorCode(code)
        self.detail = detail
        super().__init__(f"{self.code.value}: {detail or USER_MESSAGES[self.code]}")

    @property
    def user_message(self) -> str:
        return USER_MESSAGES[self.code]


# --------------------------------------------------------------------------------------------------------------
# Caption job and result (bot -> Redis stream -> worker -> result stream -> bot)
# --------------------------------------------------------------------------------------------------------------

JOB_FORMAT_VERSION = 1


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class CaptionJob:
    """One image to caption. ``reply_to`` names the result stream of the bot instance that asked."""

    image: bytes
    reply_to: str
    beam_size: int = 3
    heatmap: bool = False
    job_id: str = field(default_factory=new_job_id)
    created_at: float = field(default_factory=time.time)
    attempt: int = 0
    context: dict[str, Any] = field(default_factory=dict)  # opaque to the worker: where to deliver

    def to_fields(self) -> dict[str, bytes | str]:
        """Flat Redis stream fields (values are bytes/str)."""
        return {
            "v": str(JOB_FORMAT_VERSION),
            "job_id": self.job_id,
            "image": self.image,
            "reply_to": self.reply_to,
            "beam_size": str(self.beam_size),
            "heatmap": "1" if self.heatmap else "0",
            "created_at": repr(self.created_at),
            "attempt": str(self.attempt),
            "context": json.dumps(self.context),
        }

    @classmethod
    def from_fields(cls, fields: dict[bytes | str, bytes | str]) -> CaptionJob:
        f = {_s(k): v for k, v in fields.items()}
        image = f["image"]
        return cls(
            image=image if isinstance(image, bytes) else image.encode("latin-1"),
            reply_to=_s(f["reply_to"]),
            beam_size=int(_s(f.get("beam_size", "3"))),
            heatmap=_s(f.get("heatmap", "0")) == "1",
            job_id=_s(f["job_id"]),
            created_at=float(_s(f.get("created_at", "0"))),
            attempt=int(_s(f.get("attempt", "0"))),
            context=json.loads(_s(f.get("context", "{}"))),
        )


@dataclass
class CaptionResult:
    """The answer to one job: a caption, or an error code the bot turns into a message."""

    job_id: str
    ok: bool
    caption: str = ""
    words: list[str] = field(default_factory=list)
    score: float = 0.0
    error: ErrorCode | None = None
    detail: str = ""  # for logs, never shown to users verbatim
    heatmap_png: bytes | None = None
    model_version: str = ""
    worker: str = ""
    latency_ms: float = 0.0
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def user_message(self) -> str:
        return USER_MESSAGES[self.error] if self.error else self.caption

    def to_fields(self) -> dict[str, bytes | str]:
        d = asdict(self)
        png = d.pop("heatmap_png")
        d["error"] = self.error.value if self.error else None
        out: dict[str, bytes | str] = {"v": str(JOB_FORMAT_VERSION), "meta": json.dumps(d)}
        if png is not None:
            out["heatmap_png"] = png
        return out

    @classmethod
    def from_fields(cls, fields: dict[bytes | str, bytes | str]) -> CaptionResult:
        f = {_s(k): v for k, v in fields.items()}
        d = json.loads(_s(f["meta"]))
        d["error"] = ErrorCode(d["error"]) if d.get("error") else None
        png = f.get("heatmap_png")
        d["heatmap_png"] = png if png is None or isinstance(png, bytes) else png.encode("latin-1")
        return cls(**d)


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


# --------------------------------------------------------------------------------------------------------------
# Model bundle (export/ writes it, inference/ reads it)
# --------------------------------------------------------------------------------------------------------------

BUNDLE_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
VOCAB_FILE = "vocab.json"
ENCODER_FILE = "encoder.onnx"  # images [B,3,H,W] float32, normalised -> features [B,P,C]
DECODER_INIT_FILE = "decoder_init.onnx"  # features [B,P,C] -> h0 [B,D], c0 [B,D], att_proj [B,P,A]
DECODER_STEP_FILE = "decoder_step.onnx"  # one attention-LSTM step over N rows (images x beams)

# ONNX input/output names, fixed so the runtime can bind by name.
ENCODER_INPUTS = ("images",)
ENCODER_OUTPUTS = ("features",)
DECODER_INIT_INPUTS = ("features",)
DECODER_INIT_OUTPUTS = ("h", "c", "att_proj")
# word int64 [N]; h, c float [N,D]; features [N,P,C]; att_proj [N,P,A]
DECODER_STEP_INPUTS = ("word", "h", "c", "features", "att_proj")
# log_probs [N,V]; h_out, c_out [N,D]; alpha [N,P] (attention over the P grid cells, sums to 1)
DECODER_STEP_OUTPUTS = ("log_probs", "h_out", "c_out", "alpha")

SPECIAL_TOKENS = ("<pad>", "<start>", "<end>", "<unk>")  # ids 0..3 in this order, in every vocab


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens in a vocabulary (``SPECIAL_IDS``: where ``SPECIAL_TOKENS`` puts them)."""

    pad: int
    start: int
    end: int
    unk: int

    @classmethod
    def of(cls, itos: Sequence[str]) -> SpecialIds:
        index = {w: i for i, w in enumerate(itos[: len(SPECIAL_TOKENS)])}
        return cls(*(index[t] for t in SPECIAL_TOKENS))


SPECIAL_IDS = SpecialIds.of(SPECIAL_TOKENS)  # the one definition: pad 0, start 1, end 2, unk 3


@dataclass(frozen=True)
class DecodingPolicy:
    """How a bundle's captions are decoded for users (the manifest's ``decoding``): written at export, read by
    the runtime. Words are vocabulary words (so a model in another language brings its own); every word named
    must be in the bundle's vocabulary. The defaults are the plain evaluated beam-search rules."""

    beam_size: int = 3
    min_words: int = 0  # <end> is not allowed before this many words
    block_repeated_word: bool = False  # no word twice in a row
    no_repeat_ngram: int = 0  # n >= 2: no word n-gram twice in one caption; 0 = off
    # None: any word may repeat; a list: only these (function) words may appear twice in a caption
    repeatable_words: tuple[str, ...] | None = None
    length_alpha: float = 0.0  # final choice by log-prob / n_tokens ** alpha; 0 = raw sum

    def __post_init__(self) -> None:  # a set of words: kept sorted, so equal policies compare and write equal
        if self.repeatable_words is not None:
            object.__setattr__(self, "repeatable_words", tuple(sorted(set(self.repeatable_words))))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["repeatable_words"] = None if self.repeatable_words is None else list(self.repeatable_words)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecodingPolicy:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"decoding policy has unknown fields {unknown}")
        words = d.get("repeatable_words")
        return cls(**{**d, "repeatable_words": None if words is None else tuple(words)})


@dataclass
class EncoderSpec:
    arch: str  # e.g. "efficientnet_lite0"
    input_size: tuple[int, int]  # (H, W) the encoder expects
    mean: tuple[float, float, float]  # per-channel, applied to RGB in [0, 1]
    std: tuple[float, float, float]
    grid: tuple[int, int]  # (H', W') feature grid; P = H' * W'
    channels: int  # C


@dataclass
class DecoderSpec:
    embed_dim: int
    hidden_dim: int
    attention_dim: int
    vocab_size: int
    max_len: int  # longest caption in words, excluding <start>/<end>


@dataclass
class Manifest:
    """``manifest.json`` of a bundle. ``files`` maps each file name to its sha256 hex digest."""

    model_name: str
    model_version: str
    encoder: EncoderSpec
    decoder: DecoderSpec
    opset: int
    files: dict[str, str] = field(default_factory=dict)
    # e.g. [{"data": "flickr8k-dev", "beam_size": 3, "metric": "CIDEr", "value": 0.55, "variant": "fp32"}]
    scores: list[dict[str, Any]] = field(default_factory=list)
    # e.g. {"int8": {"dir": "int8", "caption_agreement": 0.97, "cider_delta": -0.004}}
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: str = ""
    format_version: int = BUNDLE_FORMAT_VERSION
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS
    trained_on: str = ""  # plain words: which data the model saw
    # the decoding rules users get; None: a bundle exported before policies existed (see inference/policy.py)
    decoding: DecodingPolicy | None = None

    def to_json(self) -> str:
        d = asdict(self)
        d["decoding"] = None if self.decoding is None else self.decoding.to_dict()
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        d = json.loads(text)
        d["encoder"] = EncoderSpec(
            **{**d["encoder"], **{k: tuple(d["encoder"][k]) for k in ("input_size", "mean", "std", "grid")}}
        )
        d["decoder"] = DecoderSpec(**d["decoder"])
        d["special_tokens"] = tuple(d.get("special_tokens", SPECIAL_TOKENS))
        d["decoding"] = None if d.get("decoding") is None else DecodingPolicy.from_dict(d["decoding"])
        if d.get("format_version", 0) != BUNDLE_FORMAT_VERSION:
            raise ValueError(f"bundle format {d.get('format_version')} is not {BUNDLE_FORMAT_VERSION}")
        return cls(**d)


class BundleError(RuntimeError):
    """A bundle that is missing files, has a bad manifest, or fails its hash check."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_bundle_files(bundle_dir: Path, manifest: Manifest) -> None:
    """Raise :class:`BundleError` unless every file in the manifest exists with its recorded sha256."""
    for name, digest in manifest.files.items():
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"bundle {bundle_dir} lacks {name}")
        actual = sha256_file(path)
        if actual != digest:
            raise BundleError(f"bundle {bundle_dir}: {name} has sha256 {actual[:12]}…, manifest says {digest[:12]}…")
