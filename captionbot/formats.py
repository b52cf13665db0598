"""The contracts between the parts: the caption job, its result, the Redis keys, the model bundle, and the rules
every part applies to images (accepted formats, pixel and beam limits).

This is the one module that the bot, the worker, the inference runtime, training and export all import.
It has no dependencies beyond the standard library, so importing it never drags in torch, discord or
onnxruntime. Each rule is one table here, imported where it is applied; change it here, never in one part only.
``docs/contracts.md`` describes the same contracts for readers (what travels where, and why).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------------------------
# Images: accepted formats and limits (the bot checks them before queueing, the worker again when decoding)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFormat:
    """One image format as each part sees it: Pillow's name, the declared content type, file names, first bytes."""

    label: str  # as people know it, in user messages
    pillow: str  # Pillow's decoder for it (``Image.open(..., formats=...)``), and the ``Image.format`` it gives
    content_type: str  # what Discord declares for an attachment
    extensions: tuple[str, ...]  # file name endings
    magic: tuple[bytes, ...]  # how the file starts
    chat: bool = True  # accepted from Discord; False: read from local files only (``captionbot caption``, training)
    opens_as: tuple[str, ...] = ()  # other ``Image.format`` values the same decoder gives


IMAGE_FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat("PNG", "PNG", "image/png", (".png",), (b"\x89PNG",)),
    # Phones save portrait photos as multi-picture JPEGs (a depth map beside the photo): Pillow says "MPO".
    ImageFormat("JPEG", "JPEG", "image/jpeg", (".jpg", ".jpeg"), (b"\xff\xd8\xff",), opens_as=("MPO",)),
    ImageFormat("GIF", "GIF", "image/gif", (".gif",), (b"GIF8",)),
    ImageFormat("WebP", "WEBP", "image/webp", (".webp",), (b"RIFF",)),
    ImageFormat("BMP", "BMP", "image/bmp", (".bmp",), (b"BM",), chat=False),
    ImageFormat("TIFF", "TIFF", "image/tiff", (".tif", ".tiff"), (b"II*\x00", b"MM\x00*"), chat=False),
)
CHAT_FORMATS = tuple(f for f in IMAGE_FORMATS if f.chat)  # what the bot takes from Discord
CHAT_LABELS = [f.label for f in CHAT_FORMATS]
CHAT_CONTENT_TYPES = tuple(f.content_type for f in CHAT_FORMATS)
CHAT_PILLOW_FORMATS = tuple(n for f in CHAT_FORMATS for n in (f.pillow, *f.opens_as))  # the bot's header check
DECODED_PILLOW_FORMATS = tuple(f.pillow for f in IMAGE_FORMATS)  # the decoders the worker opens images with
# Images we recognise by name only to refuse them (UNSUPPORTED_FORMAT), rather than ignore the attachment.
REFUSED_IMAGE_EXTENSIONS = (".heic", ".avif")
IMAGE_EXTENSIONS = tuple(e for f in IMAGE_FORMATS for e in f.extensions) + REFUSED_IMAGE_EXTENSIONS

MAX_IMAGE_BYTES = 10 * 1024 * 1024  # default file size cap (``CAPTIONBOT_MAX_IMAGE_BYTES``)
MAX_PIXELS = 40_000_000  # default decompression-bomb guard (``CAPTIONBOT_MAX_PIXELS``), checked from the header
# The long side of the largest copy of an image any model reads: the text reader decodes an image to this (its
# detector sees a copy with the long side at most 960, its recogniser reads line crops from this copy); the caption
# encoder's input (the manifest's ``encoder.input_size``, 224) is far smaller. The bot sends no more than this.
MODEL_MAX_SIDE = 1920
DEFAULT_BEAM_SIZE = 3
# A caption whose confidence (0-1, the estimated chance it is right) is below this is hedged by the worker
# ("Possibly a cat.") and counts as uncertain for channels that post only confident alt text. 18 of 1,000 Flickr8k
# dev and 4 of 107 COCO dev captions fall below it (docs/model.md, "Knowing when not to guess").
UNCERTAIN_BELOW = 0.1
MIN_BEAM_SIZE, MAX_BEAM_SIZE = 1, 8  # the beam widths a job may ask for (``/caption beam:``, the queue client)
MIN_VARIANTS, MAX_VARIANTS = 1, 3  # how many different captions a job may ask for (``/caption variants:``)
MAX_FIND_QUERY_CHARS = 200  # the longest ``/find words:`` (the command declares it; the local page refuses longer)


def _or_list(words: list[str]) -> str:
    return f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else "".join(words)


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
    NO_WORKER = "no_worker"  # no caption worker is alive (no heartbeat): nothing could answer
    INTERNAL = "internal"  # a bug: logged with details, user gets a generic message


USER_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.NOT_AN_IMAGE: "That file is not an image I can read.",
    ErrorCode.UNSUPPORTED_FORMAT: f"That image format is not supported (try {_or_list(CHAT_LABELS)}).",
    ErrorCode.TOO_LARGE: "That file is too large for me to caption.",
    ErrorCode.TOO_MANY_PIXELS: "That image has too many pixels for me to caption.",
    ErrorCode.TRUNCATED: "That image looks truncated or corrupt.",
    ErrorCode.DOWNLOAD_FAILED: "I could not download that image.",
    ErrorCode.BUSY: "I'm busy right now, please try again shortly.",
    ErrorCode.RATE_LIMITED: "You're asking a bit too fast, please wait a moment.",
    ErrorCode.DEAD_LETTER: "Sorry, I could not caption that image.",
    ErrorCode.TIMEOUT: "Sorry, captioning took too long. Please try again.",
    ErrorCode.NO_WORKER: "Sorry, no captioning worker is running right now, so I can't describe images. "
                         "Please try again later.",
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
MAX_CONTEXT_BYTES = 4096  # a job's ``context`` JSON (where the answer goes: ids, never content)
JOB_ID_PATTERN = re.compile(r"[0-9A-Za-z_-]{1,64}")
INSTANCE_ID_PATTERN = re.compile(r"[0-9A-Za-z_.-]{1,128}")  # a bot instance's id: the end of its ``reply_to``
JOB_OVERHEAD_BYTES = 8192  # a job's fields besides the image are bounded by this (job id, reply_to, context, ...)


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobInvalid(ValueError):
    """A stream entry that is not a valid caption job (unknown version, a field missing, out of bounds).

    ``job_id`` and ``reply_to`` are set when they were valid, so the requester can still be told."""

    def __init__(self, reason: str, job_id: str = "", reply_to: str = "", context: dict[str, Any] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id
        self.reply_to = reply_to
        self.context = context or {}


def max_job_bytes(max_image_bytes: int = MAX_IMAGE_BYTES) -> int:
    """The most bytes one job may take in the stream: the image cap plus the bounded other fields."""
    return max_image_bytes + JOB_OVERHEAD_BYTES


@dataclass
class CaptionJob:
    """One image to caption. ``reply_to`` names the result stream of the bot instance that asked.

    Attempts are not part of the job: the worker counts them from the consumer group's delivery count, where a
    client cannot set them."""

    image: bytes
    reply_to: str
    beam_size: int = DEFAULT_BEAM_SIZE
    heatmap: bool = False
    job_id: str = field(default_factory=new_job_id)
    # up to this many different captions (diverse beam search); 1 is not written, so such jobs read as before
    variants: int = 1
    created_at: float = field(default_factory=time.time)
    context: dict[str, Any] = field(default_factory=dict)  # opaque to the worker: where to deliver
    # the asker's clock time after which it no longer waits for the answer (a worker then skips the job); None: never
    expires_at: float | None = None

    def expired(self, now: float, grace_s: float = 1.0) -> bool:
        """Has the asker given up on this job (``grace_s`` allows for clocks a little apart)?"""
        return self.expires_at is not None and now > self.expires_at + grace_s

    def to_fields(self) -> dict[str, bytes | str]:
        """Flat Redis stream fields (values are bytes/str)."""
        expires = {} if self.expires_at is None else {"expires_at": repr(self.expires_at)}
        if self.variants != 1:
            expires["variants"] = str(self.variants)
        return {**expires,
            "v": str(JOB_FORMAT_VERSION),
            "job_id": self.job_id,
            "image": self.image,
            "reply_to": self.reply_to,
            "beam_size": str(self.beam_size),
            "heatmap": "1" if self.heatmap else "0",
            "created_at": repr(self.created_at),
            "context": json.dumps(self.context),
        }

    @classmethod
    def from_fields(
        cls, fields: Mapping[Any, bytes | str], *, reply_prefix: str = "", max_image_bytes: int = MAX_IMAGE_BYTES
    ) -> CaptionJob:
        """Read and validate a job: every field against the schema and its bounds. Raises :class:`JobInvalid`.

        ``reply_prefix``: the result streams' common start (``RedisKeys.results("")``); ``reply_to`` must be it
        followed by an instance id."""
        try:
            f = {_s(k): v for k, v in fields.items()}
        except UnicodeDecodeError:
            raise JobInvalid("field names are not text") from None
        job_id = _text(f, "job_id")
        job_id = job_id if job_id is not None and JOB_ID_PATTERN.fullmatch(job_id) else ""
        reply_to = _text(f, "reply_to")
        reply_ok = (reply_to is not None and reply_to.startswith(reply_prefix)
                    and INSTANCE_ID_PATTERN.fullmatch(reply_to[len(reply_prefix):]) is not None)
        context = _context(f)
        known = {"job_id": job_id, "reply_to": reply_to if reply_ok and job_id else "",
                 "context": context if isinstance(context, dict) else None}

        def invalid(reason: str) -> JobInvalid:
            return JobInvalid(reason, **known)  # type: ignore[arg-type]

        version = _text(f, "v")
        if version is None:
            raise invalid("no job format version (field v)")
        if version != str(JOB_FORMAT_VERSION):
            raise invalid(f"job format version {version[:20]!r} is not {JOB_FORMAT_VERSION}")
        if not job_id:
            raise invalid("job_id missing or not 1-64 letters, digits, - or _")
        if not reply_ok:
            raise invalid(f"reply_to is not a result stream ({reply_prefix}<instance id>)")
        if not isinstance(context, dict):
            raise invalid(f"context is not a JSON object of at most {MAX_CONTEXT_BYTES} bytes")
        image = f.get("image")
        if not isinstance(image, bytes | str) or not image:
            raise invalid("image missing")
        if len(image) > max_image_bytes:
            raise invalid(f"image of {len(image)} bytes is over {max_image_bytes}")
        beam = _text(f, "beam_size")
        if beam is None or not beam.isdigit() or not MIN_BEAM_SIZE <= int(beam) <= MAX_BEAM_SIZE:
            raise invalid(f"beam_size {str(beam)[:20]!r} is not {MIN_BEAM_SIZE}..{MAX_BEAM_SIZE}")
        heatmap = _text(f, "heatmap")
        if heatmap not in ("0", "1"):
            raise invalid(f"heatmap {str(heatmap)[:20]!r} is not 0 or 1")
        variants = _text(f, "variants") if "variants" in f else "1"  # jobs from before variants ask for one
        if variants is None or not variants.isdigit() or not MIN_VARIANTS <= int(variants) <= MAX_VARIANTS:
            raise invalid(f"variants {str(variants)[:20]!r} is not {MIN_VARIANTS}..{MAX_VARIANTS}")
        created = _text(f, "created_at")
        try:
            created_at = float(created or "")
        except ValueError:
            raise invalid(f"created_at {str(created)[:30]!r} is not a time") from None
        if not math.isfinite(created_at):
            raise invalid("created_at is not a finite time")
        expires_at = None
        if "expires_at" in f:
            expires = _text(f, "expires_at")
            try:
                expires_at = float(expires or "")
            except ValueError:
                raise invalid(f"expires_at {str(expires)[:30]!r} is not a time") from None
            if not math.isfinite(expires_at):
                raise invalid("expires_at is not a finite time")
        return cls(
            image=image if isinstance(image, bytes) else image.encode("latin-1"), reply_to=str(reply_to),
            beam_size=int(beam), heatmap=heatmap == "1", job_id=job_id, created_at=created_at, context=context,
            expires_at=expires_at, variants=int(variants),
        )


def _text(f: Mapping[str, bytes | str], name: str, limit: int = 256) -> str | None:
    """A short text field, or None when missing, too long or not UTF-8."""
    v = f.get(name)
    if v is None or len(v) > limit:
        return None
    try:
        return _s(v)
    except UnicodeDecodeError:
        return None


def _context(f: Mapping[str, bytes | str]) -> Any:
    raw = f.get("context", b"{}")
    if len(raw) > MAX_CONTEXT_BYTES:
        return None
    try:
        return json.loads(_s(raw))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


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
    text: str = ""  # text read in the image, verbatim and bounded; "" when none (or from a worker that predates it)
    # 0-1, the estimated chance the caption is right (1.0 from workers before it existed); the caption itself is
    # already hedged ("Possibly a cat.") below ``UNCERTAIN_BELOW``. Channels may choose not to post such alt text.
    confidence: float = 1.0
    labels: list[tuple[str, float]] = field(default_factory=list)  # top object words with their probabilities
    # for a job with variants > 1: up to that many different captions, each (caption, confidence), ``caption``
    # first; empty otherwise (and then not written, so results read as before)
    variants: list[tuple[str, float]] = field(default_factory=list)

    @property
    def uncertain(self) -> bool:
        """The model is unsure of this caption (and the caption says so)."""
        return self.ok and self.confidence < UNCERTAIN_BELOW

    @property
    def user_message(self) -> str:
        return USER_MESSAGES[self.error] if self.error else self.caption

    def to_fields(self) -> dict[str, bytes | str]:
        d = asdict(self)
        png = d.pop("heatmap_png")
        if not d["variants"]:
            del d["variants"]
        d["error"] = self.error.value if self.error else None
        out: dict[str, bytes | str] = {"v": str(JOB_FORMAT_VERSION), "meta": json.dumps(d)}
        if png is not None:
            out["heatmap_png"] = png
        return out

    @classmethod
    def from_fields(cls, fields: Mapping[Any, bytes | str]) -> CaptionResult:
        f = {_s(k): v for k, v in fields.items()}
        d = json.loads(_s(f["meta"]))
        d["error"] = ErrorCode(d["error"]) if d.get("error") else None
        png = f.get("heatmap_png")
        d["heatmap_png"] = png if png is None or isinstance(png, bytes) else png.encode("latin-1")
        d["labels"] = [(str(w), float(p)) for w, p in d.get("labels", [])]
        d["variants"] = [(str(c), float(p)) for c, p in d.get("variants", [])]
        return cls(**d)


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


# --------------------------------------------------------------------------------------------------------------
# Redis keys (the queue, the bot's marks and the alt-text settings)
# --------------------------------------------------------------------------------------------------------------


class Priority(StrEnum):
    """A job's lane in the queue. Workers always read the ``HIGH`` lane first: a person waiting on a command (slash
    command, context menu, mention) is never queued behind automation (automatic alt text, ``LOW``)."""

    HIGH = "high"
    LOW = "low"


@dataclass(frozen=True)
class RedisKeys:
    """Every key captionbot keeps in Redis. All start with the job stream's name (``CAPTIONBOT_STREAM``), so two
    deployments can share one Redis under different names, and nothing needs a SCAN to be found."""

    jobs: str = "captionbot:jobs"  # the low-priority lane (automation; the one stream before lanes existed)
    group: str = "captionbot-workers"  # the workers' consumer group (on both lanes)

    @property
    def commands(self) -> str:
        """The high-priority lane: jobs a person waits on. Workers read it before ``jobs``."""
        return f"{self.jobs}:high"

    @property
    def lanes(self) -> tuple[str, str]:
        """Both job streams, in the order workers serve them: high priority first."""
        return (self.commands, self.jobs)

    def lane(self, priority: Priority) -> str:
        """The job stream of a priority."""
        return self.commands if priority is Priority.HIGH else self.jobs

    def lane_bytes(self, stream: str) -> str:
        """Bytes of the jobs now in one lane (its byte budget's count, kept by the queue's scripts)."""
        return f"{stream}:bytes"

    @property
    def dead(self) -> str:
        """Dead-letter stream: the jobs given up on, with the reason."""
        return f"{self.jobs}:dead"

    @property
    def queued_bytes(self) -> str:
        """Bytes of the jobs in the job stream (the byte budget's count, kept by the queue's scripts)."""
        return f"{self.jobs}:bytes"

    def alone(self, entry_id: str, stream: str | None = None) -> str:
        """Mark set while a worker runs this job entry (of lane ``stream``, default ``jobs``) alone: if the worker
        dies then, the job is what killed it. Named after the lane: entry ids are unique per stream only."""
        return f"{stream or self.jobs}:alone:{entry_id}"

    def failures(self, entry_id: str, stream: str | None = None) -> str:
        """Failed attempts of a job entry (of lane ``stream``, default ``jobs``): the model raised on it, or its
        worker died running it alone."""
        return f"{stream or self.jobs}:failures:{entry_id}"

    @property
    def workers(self) -> str:
        """Hash of live workers: name -> JSON heartbeat (model version, last seen)."""
        return f"{self.jobs}:workers"

    def results(self, instance_id: str) -> str:
        """Result stream of one bot instance (its ``reply_to``)."""
        return f"{self.jobs}:results:{instance_id}"

    def answered(self, job_id: str) -> str:
        """Mark set when a job's result is published (idempotency by job id)."""
        return f"{self.jobs}:answered:{job_id}"

    def handled(self, message_id: int) -> str:
        """Mark set when the bot takes a message for automatic alt text (each message answered once)."""
        return f"{self.jobs}:handled:{message_id}"

    def opted_out(self, guild_id: int) -> str:
        """Set of the user ids in one guild who asked that automatic alt text leave their images alone."""
        return f"{self.jobs}:optout:{guild_id}"

    def reply_of(self, message_id: int) -> str:
        """The bot's reply to a message (``<channel id>:<reply id>``, with a TTL): deleted when the message is."""
        return f"{self.jobs}:reply:{message_id}"

    def guild_settings(self, guild_id: int) -> str:
        """Hash of one guild's alt-text settings: ``field`` for the server, ``<channel id>:field`` per channel."""
        return f"{self.jobs}:settings:{guild_id}"


# --------------------------------------------------------------------------------------------------------------
# Model bundle (export/ writes it, inference/ reads it)
# --------------------------------------------------------------------------------------------------------------

BUNDLE_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
VOCAB_FILE = "vocab.json"
ENCODER_FILE = "encoder.onnx"  # images [B,3,H,W] float32, normalised -> features [B,P,C]
DECODER_INIT_FILE = "decoder_init.onnx"  # features [B,P,C] -> h0 [B,D], c0 [B,D], att_proj [B,P,A]
LABELS_FILE = "labels.json"  # ImageNet class -> caption word table, present when the manifest's ``labels`` is set
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
    # shallow fusion with the bundle's caption language models (manifest ``lm``): an image whose caption the
    # decoder is unsure of (mean log-prob per token <= lm_max_free_score) is captioned again with lm_weight x
    # their log-ratio added to every step (inference/fused.py); 0 = off (bundles before 1.3)
    lm_weight: float = 0.0
    lm_max_free_score: float = 0.0

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
    # what the bundle can say about objects; {} = nothing (bundles before 1.2). When set, e.g.
    # {"file": "labels.json", "output": "label_probs", "classes": 1000, "source": "..."}: encoder.onnx has a second
    # output ``label_probs`` [B,1000] (ImageNet class probabilities) and ``file`` maps classes to caption words.
    labels: dict[str, Any] = field(default_factory=dict)
    # the caption language models; {} = none (bundles before 1.3). When set, e.g. {"file": "caption_lm.npz",
    # "kind": "kn-trigram-ratio", "target": "...", "source": "..."}: ``file`` holds the target and source trigram
    # tables (inference/caption_lm.py) whose log-ratio the decoding policy's ``lm_weight`` fuses in.
    lm: dict[str, Any] = field(default_factory=dict)
    # sha256 of the manifest's own content (this field empty), written by to_json: an edit after export (the
    # normalisation, max_len, the policy) is refused at load. "" in bundles written before it existed.
    digest: str = ""

    def to_json(self) -> str:
        d = asdict(self)
        d["decoding"] = None if self.decoding is None else self.decoding.to_dict()
        d["digest"] = manifest_digest(d)
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        d = json.loads(text)
        if d.get("digest") and d["digest"] != manifest_digest(d):
            raise ValueError("manifest.json was changed after export (its digest does not match its content)")
        d["encoder"] = EncoderSpec(
            **{**d["encoder"], **{k: tuple(d["encoder"][k]) for k in ("input_size", "mean", "std", "grid")}}
        )
        d["decoder"] = DecoderSpec(**d["decoder"])
        d["special_tokens"] = tuple(d.get("special_tokens", SPECIAL_TOKENS))
        d["decoding"] = None if d.get("decoding") is None else DecodingPolicy.from_dict(d["decoding"])
        if d.get("format_version", 0) != BUNDLE_FORMAT_VERSION:
            raise ValueError(f"bundle format {d.get('format_version')} is not {BUNDLE_FORMAT_VERSION}")
        return cls(**d)


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of a manifest's content as parsed JSON, its ``digest`` field left empty (key order and spacing
    do not count)."""
    canonical = json.dumps({**manifest, "digest": ""}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


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
