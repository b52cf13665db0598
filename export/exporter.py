"""Checkpoint model -> a checked model bundle on disk (``docs/contracts.md``).

Order of work, all in a staging directory next to the target, moved into place only at the end:
1. export the three graphs (each passes ``onnx.checker``), write vocab.json and a manifest with sha256s;
2. parity: PyTorch and the bundle caption the parity images at beam 1 and 3; any caption that differs token for
   token aborts the export (:class:`ParityFailed`) and nothing is written;
3. variants (int8, fp16): built, captioned with the runtime, measured against fp32, recorded in the manifest
   (a variant that cannot run here is left out, with the reason logged);
4. the final manifest (hashes of every file, parity figures, variant measures) and an atomic rename.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from captionbot.export.compact import fuse_encoder_batchnorm, round_weights_to_fp16, store_initializers_fp16
from captionbot.export.graphs import OPSET, export_graphs
from captionbot.export.parity import ParityReport, check_parity
from captionbot.export.variants import VariantMeasure, caption_with, make_fp16, make_int8, make_int8_full, measure
from captionbot.inference.beam_search import BeamOptions
from captionbot.inference.bundle import load_bundle
from captionbot.inference.policy import SERVED_RULES, check_policy
from captionbot.inference.preprocess import decode_image, to_array
from captionbot.training.model import Captioner

from captionbot import formats
from captionbot.formats import BundleError, DecoderSpec, DecodingPolicy, EncoderSpec, Manifest

log = logging.getLogger(__name__)

VARIANT_BUILDERS = {"int8": (make_int8, "cpu"), "int8-full": (make_int8_full, "cpu"), "fp16": (make_fp16, "cuda")}


class ParityFailed(RuntimeError):
    """The ONNX bundle does not caption like the PyTorch model: the bundle is not written."""

    def __init__(self, reports: list[ParityReport]) -> None:
        self.reports = reports
        bad = [r for r in reports if not r.ok]
        first = bad[0].mismatches[0] if bad and bad[0].mismatches else {}
        super().__init__("parity failed: " + "; ".join(r.summary() for r in reports) + f"; first mismatch {first}")


@dataclass(frozen=True)
class ExportOptions:
    """What to write besides the model, and what to check and measure on the way."""

    model_name: str = "show-attend-tell"
    model_version: str | None = None  # None: the UTC export time
    trained_on: str = ""  # plain words: which data the model saw
    scores: tuple[dict, ...] = ()  # extra score records for the manifest
    variants: tuple[str, ...] = ("int8", "fp16")
    beam_sizes: tuple[int, ...] = (1, 3)  # parity is checked at each
    force: bool = False  # replace an existing bundle
    references: Sequence[list[str]] | None = None  # human captions of each parity image: scores in the manifest
    eval_data: str = ""  # a name for the parity images, recorded with their scores
    # store the fp32 graphs' weights as fp16 (half the size, see export/compact.py): the model is first rounded to
    # fp16-representable weights, and that rounded model is the one parity checks
    fp16_weights: bool = False
    # the decoding rules users get, written into the manifest; every word it names must be in the vocabulary
    decoding: DecodingPolicy = SERVED_RULES


@dataclass
class ExportResult:
    path: Path
    manifest: Manifest
    parity: list[ParityReport]
    variants: dict[str, VariantMeasure] = field(default_factory=dict)


def preprocess_all(images: Sequence[bytes], model: Captioner) -> np.ndarray:
    enc = model.encoder
    size = (enc.input_size, enc.input_size)
    return np.stack([to_array(decode_image(b, size=size), size, enc.mean, enc.std) for b in images])


def build_manifest(model: Captioner, itos: list[str], options: ExportOptions, model_version: str) -> Manifest:
    enc, cfg = model.encoder, model.decoder.cfg
    return Manifest(
        model_name=options.model_name,
        model_version=model_version,
        encoder=EncoderSpec(enc.arch, (enc.input_size, enc.input_size), enc.mean, enc.std,
                            (enc.grid, enc.grid), enc.channels),
        decoder=DecoderSpec(cfg.embed_dim, cfg.hidden_dim, cfg.attention_dim, len(itos), cfg.max_len),
        opset=OPSET,
        scores=list(options.scores),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        trained_on=options.trained_on,
        decoding=options.decoding,
    )


def _write_manifest(staging: Path, manifest: Manifest) -> None:
    files = sorted(p for p in staging.rglob("*") if p.is_file() and p.name != formats.MANIFEST_FILE)
    manifest.files = {p.relative_to(staging).as_posix(): formats.sha256_file(p) for p in files}
    (staging / formats.MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")


def export_bundle(
    model: Captioner,
    itos: list[str],
    out_dir: Path,
    parity_images: Sequence[bytes],
    options: ExportOptions | None = None,
) -> ExportResult:
    """Export ``model`` to ``out_dir`` after the parity check. Raises :class:`ParityFailed` (nothing written).

    With ``options.references`` (human captions of each parity image), the bundle's captions at beam 3 are scored
    (BLEU-4, CIDEr with pycocoevalcap) for fp32 and each variant, and the scores go into the manifest."""
    out_dir, options = Path(out_dir), options or ExportOptions()
    _check_request(itos, out_dir, parity_images, options)
    model = model.eval()
    if options.fp16_weights:
        model = copy.deepcopy(model)
        fuse_encoder_batchnorm(model)
        round_weights_to_fp16(model)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    plain_tmp = tempfile.TemporaryDirectory(prefix="captionbot-plain-") if options.fp16_weights else None
    plain = Path(plain_tmp.name) if plain_tmp else staging  # fp32-stored graphs: what the variants start from
    try:
        for path in export_graphs(model, plain):
            if plain_tmp:
                shutil.copyfile(path, staging / path.name)
                store_initializers_fp16(staging / path.name)
        (staging / formats.VOCAB_FILE).write_text(json.dumps({"itos": list(itos)}), encoding="utf-8")
        version = options.model_version or dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        manifest = build_manifest(model, list(itos), options, version)
        _write_manifest(staging, manifest)

        images = preprocess_all(parity_images, model)
        bundle = load_bundle(staging, provider="cpu")
        reports = check_parity(model, bundle, images, options.beam_sizes)
        for r in reports:
            log.info("parity %s", r.summary())
        if not all(r.ok for r in reports):
            raise ParityFailed(reports)
        manifest.scores += [{"check": "torch-onnx parity", "variant": "fp32", "beam_size": r.beam_size,
                             "images": r.images, "identical_captions": r.identical,
                             "max_log_prob_diff": r.max_log_prob_diff, "max_feature_diff": r.max_feature_diff}
                            for r in reports]

        measured = _build_variants(staging, manifest, bundle, images, options.variants, list(itos),
                                   options.references, options.eval_data, plain)
        _write_manifest(staging, manifest)
        formats.verify_bundle_files(staging, manifest)
        staging.chmod(0o755)  # mkdtemp made it private; a bundle is meant to be read by the worker's user
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if plain_tmp:
            plain_tmp.cleanup()
    log.info("wrote bundle %s (%s)", out_dir, manifest.model_version)
    return ExportResult(out_dir, manifest, reports, measured)


def _check_request(itos: list[str], out_dir: Path, parity_images: Sequence[bytes], options: ExportOptions) -> None:
    """Refuse, before any work, what cannot give a bundle: ValueError / FileExistsError."""
    if out_dir.exists() and not options.force:
        raise FileExistsError(f"{out_dir} exists (pass force=True / --force to replace it)")
    if tuple(itos[:4]) != formats.SPECIAL_TOKENS:
        raise ValueError(f"vocab must start with {formats.SPECIAL_TOKENS}")
    if not parity_images:
        raise ValueError("parity needs at least one image")
    unknown = sorted(set(options.variants) - set(VARIANT_BUILDERS))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {sorted(VARIANT_BUILDERS)}")
    try:
        check_policy(options.decoding, itos)
    except BundleError as exc:
        raise ValueError(f"{exc}: give a decoding policy for this vocabulary (export --decoding-policy)") from exc


def _build_variants(staging: Path, manifest: Manifest, fp32_bundle, images: np.ndarray, names: Sequence[str],
                    itos: list[str], references: Sequence[list[str]] | None, eval_data: str,
                    source: Path | None = None) -> dict[str, VariantMeasure]:
    options = BeamOptions(beam_size=3, max_len=manifest.decoder.max_len)
    reference = caption_with(fp32_bundle, images, options)
    fp32_scores = _metrics(reference, itos, references)
    manifest.scores += [{"data": eval_data, "images": len(images), "beam_size": 3, "variant": "fp32",
                         "metric": k, "value": v} for k, v in fp32_scores.items()]
    measured: dict[str, VariantMeasure] = {}
    for name in names:
        builder, target = VARIANT_BUILDERS[name]
        try:
            files = builder(source or staging, staging / name, images)
            if source is not None and source != staging:  # fp16-stored weights: the variants' too, where exact
                for f in files:
                    store_initializers_fp16(staging / name / f, only_exact=True)
            manifest.variants[name] = {"dir": name, "files": files, "target": target}
            _write_manifest(staging, manifest)
            bundle = load_bundle(staging, variant=name, provider="auto")
            hyps = caption_with(bundle, images, options)
        except Exception as exc:  # e.g. fp16 kernels missing on this CPU: the variant is not shipped unmeasured
            log.warning("variant %s could not be built or measured here (%s): left out of the bundle", name, exc)
            manifest.variants.pop(name, None)
            shutil.rmtree(staging / name, ignore_errors=True)
            continue
        m = measure(reference, hyps, options.beam_size, bundle)
        manifest.variants[name].update(m.to_dict())
        for metric, value in _metrics(hyps, itos, references).items():
            manifest.variants[name][f"{metric}_delta"] = round(value - fp32_scores[metric], 5)
        measured[name] = m
        log.info("variant %s: %s", name, manifest.variants[name])
    return measured


def _metrics(hyps: list, itos: list[str], references: Sequence[list[str]] | None) -> dict[str, float]:
    """BLEU-4 and CIDEr of the captions against ``references`` ({} without references or without Java)."""
    if not references:
        return {}
    from captionbot.training.metrics import MetricsUnavailable, score_captions

    cands = {str(i): " ".join(itos[t] for t in h.tokens) for i, h in enumerate(hyps)}
    refs = {str(i): list(r) for i, r in enumerate(references)}
    try:
        scores, _ = score_captions(refs, cands, ("BLEU", "CIDEr"))
    except MetricsUnavailable as exc:
        log.warning("no caption scores in the manifest: %s", exc)
        return {}
    bleu4, cider = scores["Bleu_4"], scores["CIDEr"]  # None only for SPICE
    assert bleu4 is not None and cider is not None
    return {"BLEU-4": round(bleu4, 5), "CIDEr": round(cider, 5)}
