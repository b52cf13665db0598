"""GPU caption throughput, ready to run on a GPU machine in under 5 minutes (and on a CPU, as a smoke test).

The served path exactly as the worker runs it (``Captioner.caption_images``: decode and resize, the encoder with
its label head, the batched beam search, the guided second pass), in batches, on the bundle's graphs, for each
configuration in turn:

  io-binding   the GPU worker's default: decoder with I/O binding, its state on the device (inference/device.py)
  plain        the same without binding: every step copies features, att_proj, h and c in and out
  fp16+bind    all three graphs converted to float16 (float32 at their inputs/outputs, as export's fp16 variant),
               with binding; its captions compared with io-binding's, image by image (needs the ``onnx`` package;
               by default only where CUDA runs: the CPU provider has few fp16 kernels)

Prints images/s per configuration and the share of time per stage: decode (JPEG decode and resize, host
threads), encoder, decoder init, decoder steps (each step's session call, transfers included), row gathers
(on-device reordering of the beams), and the rest (the search's ranking on the host, labels, guided-pass
bookkeeping). Needs only numpy, Pillow and onnxruntime (onnxruntime-gpu for CUDA) besides this repository; it
finds the code from its own location, so no install is needed. On a GPU machine:

    python bench/gpu_throughput.py --images /path/to/flickr8k/images --seconds 30 --json gpu.json

CPU smoke test (seconds): ``python bench/gpu_throughput.py --n 16 --batch 8 --seconds 2 --provider cpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _import_path() -> None:
    """Make ``captionbot.inference`` importable from this checkout when the package is not installed (setup.py maps
    inference/ to captionbot.inference; here the folder is added to the package's path instead)."""
    sys.path.insert(0, str(REPO))
    import captionbot

    try:
        import captionbot.inference
    except ImportError:
        captionbot.__path__.append(str(REPO))


_import_path()

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from captionbot.inference.bundle import GRAPH_FILES, Bundle, load_bundle, session_options  # noqa: E402
from captionbot.inference.captioner import Captioner, CaptionOutput  # noqa: E402
from captionbot.inference.device import Device  # noqa: E402

STAGES = ("decode", "encoder", "decoder init", "decoder steps", "row gathers", "rest")


class Clock:
    """Seconds spent per stage."""

    def __init__(self) -> None:
        self.spent: defaultdict[str, float] = defaultdict(float)

    def add(self, stage: str, seconds: float) -> None:
        self.spent[stage] += seconds


class TimedSession:
    """An onnxruntime session whose ``run`` / ``run_with_iobinding`` add their time to a stage."""

    def __init__(self, session: ort.InferenceSession, stage: str, clock: Clock) -> None:
        self._session, self._stage, self._clock = session, stage, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            self._clock.add(self._stage, time.perf_counter() - t0)

    def run_with_iobinding(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._session.run_with_iobinding(*args, **kwargs)
        finally:
            self._clock.add(self._stage, time.perf_counter() - t0)


class TimedDevice(Device):
    def __init__(self, device: Device, clock: Clock) -> None:
        super().__init__(device.providers, device.options)
        self.clock = clock

    def gather(self, value: ort.OrtValue, rows: np.ndarray) -> ort.OrtValue:
        t0 = time.perf_counter()
        try:
            return super().gather(value, rows)
        finally:
            self.clock.add("row gathers", time.perf_counter() - t0)


class TimedCaptioner(Captioner):
    """The served captioner, with its decode step timed."""

    clock: Clock

    def preprocess_many(self, images: Sequence[bytes]) -> list[Any]:
        t0 = time.perf_counter()
        try:
            return super().preprocess_many(images)
        finally:
            self.clock.add("decode", time.perf_counter() - t0)


def timed_captioner(bundle: Bundle, threads: int, clock: Clock) -> TimedCaptioner:
    timed = replace(
        bundle,
        encoder=TimedSession(bundle.encoder, "encoder", clock),
        decoder_init=TimedSession(bundle.decoder_init, "decoder init", clock),
        decoder_step=TimedSession(bundle.decoder_step, "decoder steps", clock),
        device=TimedDevice(bundle.device, clock) if bundle.device is not None else None,
    )
    captioner = TimedCaptioner(timed, decode_threads=threads or os.cpu_count() or 1, label_led_text=False)
    captioner.clock = clock
    return captioner


def fp16_bundle(bundle: Bundle, out_dir: Path, threads: int) -> Bundle:
    """The bundle with float16 graphs (float32 I/O), made as export makes its fp16 variant."""
    from captionbot.export.variants import make_fp16

    make_fp16(bundle.path, out_dir)
    opts = session_options(threads)
    sessions = [ort.InferenceSession(str(out_dir / name), sess_options=opts, providers=bundle.providers)
                for name in GRAPH_FILES]
    return replace(bundle, encoder=sessions[0], decoder_init=sessions[1], decoder_step=sessions[2],
                   variant="fp16", device=Device(bundle.providers, opts))


def find_images(arg: str | None, n: int) -> list[bytes]:
    """``n`` photos: from ``arg`` (a folder of .jpg), else the Flickr8k dev images of the shared data."""
    if arg:
        paths = sorted(Path(arg).glob("*.jpg"))
    else:
        roots = [Path(os.environ["CAPTIONBOT_DATA"])] if os.environ.get("CAPTIONBOT_DATA") else []
        roots += [REPO.parent / "shared" / "data", REPO / "shared" / "data"]
        root = next((r / "flickr8k" for r in roots if (r / "flickr8k" / "images").is_dir()), None)
        if root is None:
            sys.exit("no images: pass --images DIR (a folder of .jpg photos) or set CAPTIONBOT_DATA")
        listed = root / "Flickr_8k.devImages.txt"
        names = listed.read_text().split() if listed.is_file() else []
        paths = [root / "images" / name for name in sorted(names)] or sorted((root / "images").glob("*.jpg"))
    if not paths:
        sys.exit(f"no .jpg images in {arg}")
    return [p.read_bytes() for p in paths[:n]]


def run_config(name: str, bundle: Bundle, images: list[bytes], batch: int, beam: int, seconds: float,
               threads: int) -> tuple[dict[str, Any], list[str]]:
    """Caption ``images`` in batches until ``seconds`` have passed (at least once through); one warm-up batch
    first. Returns the figures and the captions of the first pass."""
    warm = timed_captioner(bundle, threads, Clock())
    warm.caption_images(images[:batch], beam_size=beam)
    clock = Clock()
    captioner = timed_captioner(bundle, threads, clock)
    captions: list[str] = []
    done, start = 0, time.perf_counter()
    while True:
        for i in range(0, len(images), batch):
            outs = captioner.caption_images(images[i:i + batch], beam_size=beam)
            if len(captions) < len(images):
                captions += [o.caption if isinstance(o, CaptionOutput) else f"<{o.code}>" for o in outs]
            done += len(outs)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    measured = {s: clock.spent.get(s, 0.0) for s in STAGES[:-1]}
    measured["rest"] = max(elapsed - sum(measured.values()), 0.0)
    share = {s: round(v / elapsed, 4) for s, v in measured.items()}
    figures = {"config": name, "provider": bundle.providers[0], "variant": bundle.variant,
               "io_binding": bundle.device is not None, "images": done, "seconds": round(elapsed, 2),
               "images_per_s": round(done / elapsed, 1), "share": share}
    print(f"{name:>11}  {figures['images_per_s']:8.1f} img/s  ({done} images in {elapsed:.1f} s)  "
          + "  ".join(f"{s} {100 * share[s]:.0f}%" for s in STAGES), flush=True)
    return figures, captions


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--images", default=None, help="folder of .jpg photos (default: Flickr8k dev images)")
    ap.add_argument("--n", type=int, default=256, help="images (default 256)")
    ap.add_argument("--batch", type=int, default=32, help="images per worker batch (default 32)")
    ap.add_argument("--beam", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0, help="per configuration, after one warm-up batch")
    ap.add_argument("--provider", default="auto", choices=("auto", "cuda", "cpu"))
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--fp16", choices=("auto", "on", "off"), default="auto", help="auto: only where CUDA runs")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    print(f"onnxruntime {ort.__version__}, providers available: {ort.get_available_providers()}", flush=True)
    images = find_images(args.images, args.n)
    bound = load_bundle(args.bundle, provider=args.provider, threads=args.threads, io_binding=True)
    plain = replace(bound, device=None)
    print(f"{len(images)} images, batch {args.batch}, beam {args.beam}, bundle {bound.model_version} on "
          f"{bound.providers[0]}", flush=True)
    results, reference = [], []
    for name, bundle in (("io-binding", bound), ("plain", plain)):
        figures, captions = run_config(name, bundle, images, args.batch, args.beam, args.seconds, args.threads)
        results.append(figures)
        reference = reference or captions
    cuda = bound.providers[0] == "CUDAExecutionProvider"
    if args.fp16 == "on" or (args.fp16 == "auto" and cuda):
        try:
            with tempfile.TemporaryDirectory(prefix="captionbot-fp16-") as tmp:
                half = fp16_bundle(bound, Path(tmp), args.threads)
                figures, captions = run_config("fp16+bind", half, images, args.batch, args.beam, args.seconds,
                                               args.threads)
            same = sum(a == b for a, b in zip(reference, captions, strict=True))
            figures["identical_captions_vs_fp32"] = round(same / len(reference), 4)
            print(f"fp16 captions identical to fp32's: {same}/{len(reference)}", flush=True)
            results.append(figures)
        except ImportError as exc:
            print(f"fp16 skipped: {exc} (pip install onnx)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": ort.get_device(), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
