"""``captionbot caption IMG… [--beam K] [--variants N] [--heatmap OUT.png] [--json] [--text] [--bundle DIR]``:
caption files.

One line per image (``path: caption``, then ``Text in image: …`` where text was read), or one JSON object per
image with ``--json`` (``"text"``: the text read, "" if none: by default where the object labels say text is
likely, with ``--text`` or ``CAPTIONBOT_READ_TEXT=1`` in every image the text gate passes, with ``--no-text`` never).
A file that cannot be captioned (missing, not a regular file, over ``CAPTIONBOT_MAX_IMAGE_BYTES``, not an image)
gets its reason on its own line (or ``"error"`` in JSON) while the others are captioned, and makes the exit
status 1.
With several images, ``--heatmap OUT.png`` writes ``OUT-1.png``, ``OUT-2.png``, … in the order given.
``--variants N`` (1-3): up to N different captions of each image (diverse beam search), each on its own line after
the image's line as ``  1. caption (confidence 0.62)``, the first being the image's caption (JSON: ``"variants"``,
a list of ``{"caption", "confidence"}``).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", type=Path, nargs="+", metavar="IMG", help="image files")
    parser.add_argument("--beam", type=int, default=None, help="beam size (default $CAPTIONBOT_BEAM_SIZE or 3)")
    parser.add_argument("--variants", type=_variants, default=1, metavar="N",
                        help="up to N different captions of each image, 1-3 (default 1)")
    parser.add_argument("--heatmap", type=Path, default=None, metavar="OUT.png", help="write attention heatmaps")
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default $CAPTIONBOT_BUNDLE)")
    parser.add_argument("--variant", default=None, help="auto, fp32, int8 or fp16 (default $CAPTIONBOT_VARIANT, auto: "
                        "int8 on CPU when the bundle ships it, else fp32)")
    parser.add_argument("--provider", default=None, help="auto, cpu or cuda (default $CAPTIONBOT_PROVIDER)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (0 = its default)")
    parser.add_argument("--text", action=argparse.BooleanOptionalAction, default=None,
                        help="read text in every image the text gate passes (--no-text: never; default "
                             "$CAPTIONBOT_READ_TEXT, else where the object labels say text is likely)")


def _variants(text: str) -> int:
    from captionbot.formats import MAX_VARIANTS, MIN_VARIANTS

    if not text.isdigit() or not MIN_VARIANTS <= int(text) <= MAX_VARIANTS:
        raise argparse.ArgumentTypeError(f"must be a whole number {MIN_VARIANTS}-{MAX_VARIANTS}, not {text!r}")
    return int(text)


def heatmap_paths(out: Path, n: int) -> list[Path]:
    return [out] if n == 1 else [out.with_name(f"{out.stem}-{i + 1}{out.suffix or '.png'}") for i in range(n)]


def main(args: argparse.Namespace) -> int:
    from captionbot.inference.captioner import Captioner

    from captionbot.formats import BundleError, ImageRejected
    from captionbot.settings import load_settings

    settings = load_settings()
    try:
        captioner = Captioner.load(
            args.bundle or settings.bundle,
            variant=args.variant or settings.variant,
            provider=args.provider or settings.provider,
            threads=settings.threads if args.threads is None else args.threads,
            read_text=settings.read_text if args.text is None else args.text,
        )
    except (BundleError, FileNotFoundError) as exc:
        print(f"error: cannot load the model bundle: {exc}")
        return 2
    captioner.max_pixels = settings.max_pixels
    blobs: dict[int, bytes] = {}
    errors: dict[int, str] = {}
    for i, path in enumerate(args.images):
        try:
            blobs[i] = read_image_file(path, settings.max_image_bytes)
        except (OSError, ValueError) as exc:
            errors[i] = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    order = sorted(blobs)
    outputs = dict(zip(order, captioner.caption_images(
        [blobs[i] for i in order], beam_size=args.beam or settings.beam_size, heatmap=bool(args.heatmap),
        variants=args.variants,
    ), strict=True)) if order else {}
    png_paths = heatmap_paths(args.heatmap, len(args.images)) if args.heatmap else []
    failed = 0
    for i, path in enumerate(args.images):
        out = outputs.get(i)
        record: dict[str, object]
        if out is None:
            failed += 1
            record = {"image": str(path), "error": "unreadable", "message": errors[i]}
            line = f"{path}: error: {errors[i]}"
        elif isinstance(out, ImageRejected):
            failed += 1
            record = {"image": str(path), "error": out.code.value, "message": out.user_message}
            line = f"{path}: {out.user_message}"
        else:
            record = {"image": str(path), "caption": out.caption, "words": out.words, "score": round(out.score, 4),
                      "confidence": round(out.confidence, 3), "labels": out.labels,
                      "model_version": captioner.model_version, "text": out.text}
            line = f"{path}: {out.caption}" + (f"  Text in image: {out.text}" if out.text else "")
            if args.variants > 1:
                record["variants"] = [{"caption": c, "confidence": round(p, 3)} for c, p in out.variants]
                line += "".join(f"\n  {n}. {c} (confidence {p:.2f})" for n, (c, p) in enumerate(out.variants, 1))
            if out.heatmap_png is not None:
                png_paths[i].write_bytes(out.heatmap_png)
                record["heatmap"] = str(png_paths[i])
                line += f"  [heatmap: {png_paths[i]}]"
        print(json.dumps(record) if args.json else line)
    return 1 if failed else 0


def read_image_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``. A named pipe, a device (``/dev/zero``), a directory or
    a larger file raises ``ValueError`` at once, without blocking or reading past the bound."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"file of {info.st_size} bytes is over the {max_bytes}-byte limit")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"file is over the {max_bytes}-byte limit")
    return data
