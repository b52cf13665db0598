"""Load a model bundle (``docs/contracts.md``): check its hashes and its decoding policy against its vocabulary,
open its ONNX graphs with onnxruntime.

A variant (``fp16``, ``int8``) lives in a sub-directory named in the manifest; any graph it does not replace is
taken from the fp32 files at the top. ``auto`` (the settings' default) is the int8 variant on the CPU provider
when the bundle ships one, fp32 otherwise; on an x86 CPU without VNNI ``auto`` keeps that variant's decoder but
runs the fp32 encoder (``inference/cpu_int8.py``: there the int8 encoder's captions drift). The execution provider
is CUDA when asked for (``cuda`` or ``auto``) and available, else CPU; asking for CUDA where there is none logs a
warning and runs on CPU. On CUDA the decoder runs with I/O binding (``inference/device.py``: its state stays on the
GPU across steps).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
from captionbot.inference.caption_lm import DomainRatio
from captionbot.inference.cpu_int8 import int8_encoder_drifts
from captionbot.inference.image_rows import (
    IMAGE_ATT_PROJ,
    IMAGE_FEATURES,
    ROW_IMAGE,
    ImageRows,
    gather_step_graph,
    per_image,
)
from captionbot.inference.policy import check_policy

from captionbot import formats
from captionbot.formats import BundleError, Manifest
from captionbot.manifest_bounds import check_manifest

if TYPE_CHECKING:
    from captionbot.inference.device import Device

log = logging.getLogger(__name__)

GRAPH_FILES = (formats.ENCODER_FILE, formats.DECODER_INIT_FILE, formats.DECODER_STEP_FILE)


def choose_providers(provider: str = "auto") -> list[str]:
    """onnxruntime providers for ``auto`` | ``cuda`` | ``cpu``."""
    provider = provider.lower()
    if provider not in ("auto", "cuda", "cpu"):
        raise ValueError(f"provider must be auto, cuda or cpu, not {provider!r}")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if provider == "cuda" and not has_cuda:
        log.warning("CUDA was asked for but onnxruntime here has no CUDAExecutionProvider: running on CPU")
    if provider in ("auto", "cuda") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


AUTO_VARIANT = "auto"
CPU_VARIANT = "int8"  # what ``auto`` runs on the CPU provider when the bundle ships it


def resolve_variant(manifest: Manifest, variant: str, providers: list[str]) -> str:
    """The variant to load: ``variant`` itself, or for ``auto`` the bundle's int8 variant on the CPU provider
    (int8 decoder and, since 1.2.1, int8 encoder: 1.16-1.35x the served speed of the fp32 encoder, within a CIDEr point,
    docs/inference.md) when the bundle ships one, else fp32 (CUDA, or a bundle without int8)."""
    if variant != AUTO_VARIANT:
        return variant
    on_cpu = providers[0] == "CPUExecutionProvider"
    return CPU_VARIANT if on_cpu and CPU_VARIANT in manifest.variants else "fp32"


def session_options(threads: int = 0) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads  # 0: onnxruntime picks (one per physical core)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise here
    # Threads sleep instead of spinning between runs: the worker's Python work (JPEG decoding, the beam search's
    # numpy) runs between the graph calls, and spinning pool threads took its core. 1 process x 2 threads served
    # 188 images/s with spinning off vs 133 on (bench/served_processes.py --configs served:1x2,spinning:1x2)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


ALLOW_UNSEALED_ENV = "CAPTIONBOT_ALLOW_UNSEALED"


def read_manifest(bundle_dir: Path, allow_unsealed: bool = False) -> Manifest:
    """Parse, verify the digest of, and bound-check ``manifest.json`` (:class:`BundleError` naming what is wrong).

    A manifest without a digest (bundles exported before digests) is refused unless ``allow_unsealed``: nothing
    would notice an edit to it, and every bundle export writes one (``docs/contracts.md``)."""
    path = Path(bundle_dir) / formats.MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a model bundle: no {formats.MANIFEST_FILE}")
    try:
        manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{path}: bad manifest ({exc})") from exc
    if not manifest.digest:
        if not allow_unsealed:
            raise BundleError(f"{path} has no digest (unsealed: an edit to it would go unnoticed); re-export the "
                              f"bundle, or allow it with --allow-unsealed / {ALLOW_UNSEALED_ENV}=true")
        log.warning("%s has no digest (allowed by --allow-unsealed / %s): an edit to it would go unnoticed", path,
                    ALLOW_UNSEALED_ENV)
    check_manifest(manifest, where=bundle_dir)
    return manifest


def read_vocab(bundle_dir: Path, manifest: Manifest) -> list[str]:
    itos = json.loads((Path(bundle_dir) / formats.VOCAB_FILE).read_text(encoding="utf-8"))["itos"]
    if tuple(itos[: len(formats.SPECIAL_TOKENS)]) != formats.SPECIAL_TOKENS:
        raise BundleError(f"vocab must start with {formats.SPECIAL_TOKENS}, starts with {itos[:4]}")
    if len(itos) != manifest.decoder.vocab_size:
        raise BundleError(f"vocab has {len(itos)} words, manifest says {manifest.decoder.vocab_size}")
    return itos


def variant_paths(bundle_dir: Path, manifest: Manifest, variant: str) -> dict[str, Path]:
    """Graph file name -> the path to load for ``variant`` (fp32 files where the variant has none)."""
    paths = {name: Path(bundle_dir) / name for name in GRAPH_FILES}
    if variant == "fp32":
        return paths
    info = manifest.variants.get(variant)
    if info is None:
        have = ", ".join(["fp32", *manifest.variants])
        raise BundleError(f"bundle has no {variant!r} variant (it has {have})")
    for name in GRAPH_FILES:
        rel = f"{info['dir']}/{name}"
        if rel in manifest.files:
            paths[name] = Path(bundle_dir) / rel
    return paths


def check_graph_shapes(
    manifest: Manifest, encoder: ort.InferenceSession, decoder_init: ort.InferenceSession,
    decoder_step: ort.InferenceSession, where: Path | str = "",
) -> None:
    """Raise :class:`BundleError` where a manifest field disagrees with the graphs' own input/output shapes (input
    size, grid, channels, hidden and attention sizes, vocabulary size). Dimensions a graph leaves open are skipped."""
    enc, dec = manifest.encoder, manifest.decoder
    cells = enc.grid[0] * enc.grid[1]
    expected = {  # (graph, input or output, name) -> shape the manifest implies, None for the batch dimension
        ("encoder", "input", "images"): (None, 3, *enc.input_size),
        ("encoder", "output", "features"): (None, cells, enc.channels),
        ("decoder_init", "input", "features"): (None, cells, enc.channels),
        ("decoder_init", "output", "h"): (None, dec.hidden_dim),
        ("decoder_init", "output", "att_proj"): (None, cells, dec.attention_dim),
        ("decoder_step", "input", "h"): (None, dec.hidden_dim),
        ("decoder_step", "output", "log_probs"): (None, dec.vocab_size),
        ("decoder_step", "output", "alpha"): (None, cells),
    }
    graphs = {"encoder": encoder, "decoder_init": decoder_init, "decoder_step": decoder_step}
    for (graph, kind, name), want in expected.items():
        session = graphs[graph]
        args = session.get_inputs() if kind == "input" else session.get_outputs()
        shape = next((a.shape for a in args if a.name == name), None)
        if shape is None:
            raise BundleError(f"bundle {where}: {graph} has no {kind} {name!r}")
        if len(shape) != len(want) or any(
            isinstance(have, int) and w is not None and have != w for have, w in zip(shape, want, strict=False)
        ):
            raise BundleError(f"bundle {where}: manifest implies {graph} {kind} {name} of shape "
                              f"{['N' if w is None else w for w in want]}, the graph has {shape}")
    if not all(isinstance(d, int) for d in encoder.get_inputs()[0].shape[1:]):
        probe_encoder(manifest, encoder, where)


def probe_encoder(manifest: Manifest, encoder: ort.InferenceSession, where: Path | str = "") -> None:
    """For an encoder whose input size the graph leaves open: run it once on a blank image of the manifest's
    ``input_size`` and check that its features have the manifest's grid and channels (:class:`BundleError` if
    not, or if the graph cannot take that size)."""
    enc = manifest.encoder
    want = (1, enc.grid[0] * enc.grid[1], enc.channels)
    try:
        have = tuple(encoder.run(["features"], {"images": np.zeros((1, 3, *enc.input_size), np.float32)})[0].shape)
    except Exception as exc:  # onnxruntime's errors are plain exceptions with long messages
        raise BundleError(f"bundle {where}: the encoder cannot take the manifest's input_size "
                          f"{list(enc.input_size)} ({type(exc).__name__})") from exc
    if have != want:
        raise BundleError(f"bundle {where}: at the manifest's input_size {list(enc.input_size)} the encoder gives "
                          f"features {list(have)}, the manifest's grid and channels imply {list(want)}")


@dataclass
class Bundle:
    """The opened bundle: manifest, vocabulary and the three onnxruntime sessions."""

    path: Path
    manifest: Manifest
    itos: list[str]
    variant: str
    providers: list[str]
    encoder: ort.InferenceSession
    decoder_init: ort.InferenceSession
    decoder_step: ort.InferenceSession
    device: Device | None = None  # set: the search runs with I/O binding there (inference/device.py)
    lm: DomainRatio | None = None  # the caption language models (manifest ``lm``; bundles >= 1.3)
    # the step graph gathers each row's image features itself (inference/image_rows.py): it takes them per image
    row_gather: bool = False
    # the variant whose encoder runs: the fp32 one where the variant's own int8 encoder would drift (cpu_int8.py)
    encoder_variant: str = ""

    @property
    def model_version(self) -> str:
        version = self.manifest.model_version
        if self.variant == "fp32":
            return version
        if self.encoder_variant == "fp32":
            return f"{version}+{self.variant}-decoder"
        return f"{version}+{self.variant}"

    def encode(self, images: np.ndarray) -> np.ndarray:
        """images [B,3,H,W] float32 -> features [B,P,C]."""
        return self.encoder.run(None, {"images": images})[0]

    @property
    def has_labels(self) -> bool:
        """Whether the encoder also gives ImageNet class probabilities (manifest ``labels``; bundles >= 1.2)."""
        return bool(self.manifest.labels)

    def encode_with_labels(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """images [B,3,H,W] -> (features [B,P,C], class probabilities [B,1000] or None without a label head)."""
        if not self.has_labels:
            return self.encode(images), None
        feats, probs = self.encoder.run(["features", self.manifest.labels["output"]], {"images": images})
        return feats, probs

    def init(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, c, att_proj = self.decoder_init.run(None, {"features": features})
        return h, c, att_proj

    def search_inputs(self, features: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, Any]:
        """Encoded images [B,P,C] -> what a beam search over them starts from: (features, h, c, att_proj), the
        features and ``att_proj`` as :class:`~captionbot.inference.image_rows.ImageRows` where the step graph
        gathers rows itself (selecting rows then copies nothing)."""
        h, c, att_proj = self.init(features)
        if self.row_gather:
            return ImageRows(features), h, c, ImageRows(att_proj)
        return features, h, c, att_proj

    def step(
        self, word: np.ndarray, h: np.ndarray, c: np.ndarray, features: Any, att_proj: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One decoder step over N rows. ``features`` [N,P,C] and ``att_proj`` [N,P,A]: arrays, or
        :class:`~captionbot.inference.image_rows.ImageRows` (from :meth:`search_inputs`)."""
        if self.row_gather:
            images, projections, rows = per_image(features, att_proj)
            feed = {"word": word, "h": h, "c": c, IMAGE_FEATURES: images, IMAGE_ATT_PROJ: projections,
                    ROW_IMAGE: rows}
        else:
            feed = {"word": word, "h": h, "c": c, "features": np.asarray(features), "att_proj": np.asarray(att_proj)}
        log_probs, h, c, alpha = self.decoder_step.run(None, feed)
        return log_probs, h, c, alpha


def load_bundle(bundle_dir: Path, variant: str = "fp32", provider: str = "auto", threads: int = 0,
                io_binding: bool | None = None, allow_unsealed: bool | None = None, row_gather: bool = True,
                int8_encoder: bool | None = None) -> Bundle:
    """Open ``bundle_dir`` after checking its manifest (digest, bounds) and every file's sha256 against it
    (:class:`BundleError` if not). ``variant``: a variant the bundle ships, ``fp32``, or ``auto``
    (:func:`resolve_variant`). ``io_binding``: the decoder with I/O binding (None: where CUDA runs).
    ``allow_unsealed``: load a manifest without a digest (None: as ``$CAPTIONBOT_ALLOW_UNSEALED`` says).
    ``row_gather``: the step graph gathers rows itself (``inference/image_rows.py``; not with I/O binding, whose
    decoder gathers on the device); False: the graph as shipped (the same outputs). ``int8_encoder``: whether
    ``auto`` may run its variant's int8 encoder (None: unless :func:`int8_encoder_drifts` on this CPU; an explicitly
    named variant always runs its own encoder)."""
    bundle_dir = Path(bundle_dir)
    if allow_unsealed is None:
        allow_unsealed = os.environ.get(ALLOW_UNSEALED_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    manifest = read_manifest(bundle_dir, allow_unsealed)
    formats.verify_bundle_files(bundle_dir, manifest)
    required = (*GRAPH_FILES, formats.VOCAB_FILE, *([manifest.labels["file"]] if manifest.labels else []),
                *([manifest.lm["file"]] if manifest.lm else []))
    for name in required:
        if name not in manifest.files:
            raise BundleError(f"{bundle_dir}: manifest lists no sha256 for {name}")
    itos = read_vocab(bundle_dir, manifest)
    if manifest.decoding is not None:
        check_policy(manifest.decoding, itos)
    lm = load_lm(bundle_dir, manifest, len(itos))
    providers = choose_providers(provider)
    asked, variant = variant, resolve_variant(manifest, variant, providers)
    paths = variant_paths(bundle_dir, manifest, variant)
    encoder_variant = variant
    if asked == AUTO_VARIANT and keeps_fp32_encoder(paths, bundle_dir, int8_encoder):
        paths[formats.ENCODER_FILE] = bundle_dir / formats.ENCODER_FILE
        encoder_variant = "fp32"
        log.info("running the fp32 encoder with the %s decoder: %s (inference/cpu_int8.py; --variant %s runs its "
                 "own encoder anyway)", variant, "asked for" if int8_encoder is False else
                 f"this CPU has no VNNI, where the {variant} encoder's captions drift", variant)
    opts = session_options(threads)
    from captionbot.inference.device import Device, wants_io_binding

    device = Device(providers, opts) if wants_io_binding(providers, io_binding) else None
    graphs: dict[str, str | bytes] = {name: str(paths[name]) for name in GRAPH_FILES}
    if row_gather and device is None:
        rewritten = gather_step_graph(paths[formats.DECODER_STEP_FILE].read_bytes())
        if rewritten is not None:
            graphs[formats.DECODER_STEP_FILE] = rewritten
        row_gather = rewritten is not None
    else:
        row_gather = False
    sessions = [ort.InferenceSession(graphs[name], sess_options=opts, providers=providers) for name in GRAPH_FILES]
    check_graph_shapes(manifest, sessions[0], sessions[1], sessions[2], where=bundle_dir)
    log.info("loaded bundle %s (%s, %s%s) on %s%s", bundle_dir, manifest.model_version, variant,
             "" if encoder_variant == variant else f", {encoder_variant} encoder", providers[0],
             f", decoder with I/O binding on {device.kind}" if device else "")
    return Bundle(bundle_dir, manifest, itos, variant, providers, sessions[0], sessions[1], sessions[2], device, lm=lm,
                  row_gather=row_gather, encoder_variant=encoder_variant)


def keeps_fp32_encoder(paths: dict[str, Path], bundle_dir: Path, int8_encoder: bool | None = None) -> bool:
    """Whether ``auto`` should run the fp32 encoder instead of the one its variant ships (``paths``): the variant
    has an encoder of its own and ``int8_encoder`` is False (None: this CPU's int8 kernels drift)."""
    if paths[formats.ENCODER_FILE] == Path(bundle_dir) / formats.ENCODER_FILE:
        return False
    return not int8_encoder if int8_encoder is not None else int8_encoder_drifts()


def load_lm(bundle_dir: Path, manifest: Manifest, vocab_size: int) -> DomainRatio | None:
    """The bundle's caption language models, checked against its vocabulary; None for a bundle without them.
    A decoding policy that fuses a language model the bundle lacks is a :class:`BundleError`."""
    fuses = manifest.decoding is not None and manifest.decoding.lm_weight > 0
    if not manifest.lm:
        if fuses:
            raise BundleError(f"bundle {bundle_dir}: its decoding policy fuses a language model (lm_weight "
                              f"{manifest.decoding.lm_weight if manifest.decoding else 0}) but the manifest has no lm")
        return None
    if "file" not in manifest.lm:
        raise BundleError(f"bundle {bundle_dir}: manifest lm names no file")
    return DomainRatio.load(Path(bundle_dir) / manifest.lm["file"], vocab_size)
