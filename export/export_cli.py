"""``captionbot export CHECKPOINT --out BUNDLE``: a trained checkpoint -> a checked ONNX model bundle.

Parity images default to the first ``--images`` photos of the Flickr8k dev split in the shared data (their
human captions then give the manifest its BLEU-4/CIDEr); without the data, synthetic images check parity only.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a training checkpoint (.pt)")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--images", type=int, default=50, help="parity/measurement images (default 50)")
    parser.add_argument("--image-files", type=Path, nargs="*", default=None,
                        help="parity images to use instead of the Flickr8k dev split")
    parser.add_argument("--variants", default="int8,int8-full,fp16",
                        help="comma-separated: int8, int8-full, fp16, or '' for none (default: all three)")
    parser.add_argument("--fp16-weights", action="store_true",
                        help="store weights as fp16 (half the size; computed in fp32; the model is rounded first "
                             "and parity is checked on the rounded model)")
    parser.add_argument("--model-name", default="show-attend-tell")
    parser.add_argument("--model-version", default=None, help="default: the UTC export time")
    parser.add_argument("--trained-on", default="", help="plain words: which data the model saw")
    parser.add_argument("--decoding-policy", default="english-served", metavar="NAME|FILE",
                        help="the decoding rules written into the bundle for its users: english-served (default: the "
                             "served rules and the English words that may repeat), served-rules (no word list), "
                             "evaluated (plain beam search), or a JSON file of a policy (captionbot.formats."
                             "DecodingPolicy); every word it names must be in the model's vocabulary")
    parser.add_argument("--data", type=Path, default=None,
                        help="data root (default $CAPTIONBOT_DATA or ../shared/data)")


def _data_root(arg: Path | None) -> Path | None:
    from captionbot.settings import REPO_ROOT

    for c in [arg, Path(os.environ["CAPTIONBOT_DATA"]) if os.environ.get("CAPTIONBOT_DATA") else None,
              REPO_ROOT.parent / "shared" / "data"]:
        if c is not None and (c / "flickr8k" / "Flickr8k.token.txt").is_file():
            return c
    return None


def parity_set(args: argparse.Namespace) -> tuple[list[bytes], list[list[str]] | None, str]:
    """(image bytes, their reference captions or None, a name for the data)."""
    if args.image_files:
        return [p.read_bytes() for p in args.image_files], None, "given files"
    root = _data_root(args.data)
    if root is None:
        from captionbot.export.tiny import synthetic_images

        log.warning("no Flickr8k data found: checking parity on synthetic images, no caption scores")
        return synthetic_images(min(args.images, 16)), None, "synthetic"
    from captionbot.training.data import read_flickr8k

    dev = sorted((it for it in read_flickr8k(root / "flickr8k") if it.split == "dev"), key=lambda it: it.path.name)
    dev = dev[: args.images]
    return [it.path.read_bytes() for it in dev], [it.captions for it in dev], f"flickr8k-dev-first{len(dev)}"


def decoding_policy(arg: str):
    """``--decoding-policy``: a named policy or a JSON file."""
    import json

    from captionbot.inference.policy import NAMED_POLICIES

    from captionbot.formats import DecodingPolicy

    if arg in NAMED_POLICIES:
        return NAMED_POLICIES[arg]
    path = Path(arg)
    if not path.is_file():
        raise ValueError(f"--decoding-policy {arg!r}: not one of {sorted(NAMED_POLICIES)} nor a file")
    return DecodingPolicy.from_dict(json.loads(path.read_text(encoding="utf-8")))


def main(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists (pass --force to replace it)")
        return 2
    from captionbot.export.exporter import ExportOptions, ParityFailed, export_bundle
    from captionbot.training.checkpoint import load_captioner

    try:
        policy = decoding_policy(args.decoding_policy)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}")
        return 2
    model, vocab = load_captioner(args.checkpoint)
    images, refs, data_name = parity_set(args)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    options = ExportOptions(model_name=args.model_name, model_version=args.model_version, trained_on=args.trained_on,
                            variants=variants, force=args.force, references=refs, eval_data=data_name,
                            fp16_weights=args.fp16_weights, decoding=policy)
    try:
        result = export_bundle(model, vocab.itos, args.out, images, options)
    except ParityFailed as exc:
        log.error("%s", exc)
        print(f"REFUSED: {args.out} not written: the ONNX bundle does not caption like the checkpoint.")
        for r in exc.reports:
            print("  " + r.summary())
        return 1
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    print(f"wrote {result.path} ({result.manifest.model_version})")
    for r in result.parity:
        print("  parity " + r.summary())
    for s in result.manifest.scores:
        if "metric" in s:
            print(f"  {s['variant']} beam {s['beam_size']} on {s['data']}: {s['metric']} {s['value']}")
    for name, info in result.manifest.variants.items():
        extra = ", ".join(f"{k} {v}" for k, v in info.items() if k.endswith("_delta"))
        print(f"  variant {name}: caption agreement {info['caption_agreement']:.0%} ({extra})")
    return 0
