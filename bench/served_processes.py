"""The served path in P processes of T threads each: total images/s on this machine, interleaved with 1 process of
2 threads and with the tutorial baseline (also run as 2 processes of 1 thread, since it could be split the same way).

This is what ``CAPTIONBOT_WORKER_PROCESSES`` does for a worker (docs/inference.md, "Worker processes"): each process
is a consumer of the job stream with its own onnxruntime session; here the processes get their share of each
round's images straight through a pipe (no Redis: ``bench/queue_overhead.py --processes`` measures that end to end).

  served    image bytes -> decode -> ONNX encoder -> served beam search, int8 variant, served rules, batches of 32
            (the same ``runtime`` path as ``bench/inference_throughput.py``'s "what the worker runs" row)
  tutorial  the tutorial-style per-image PyTorch beam search (``bench/inference_throughput.py``'s BASELINE), batch 1

Each round gives every configuration the same images (``--per-round`` for served, ``--slow-per-round`` for the
tutorial), split into equal contiguous shares, one per process; a configuration's time for the round is the wall
time from handing out the shares to the last process's answer. Processes are started once (spawned, each loading
its own model) and wait on a pipe between rounds, so idle ones take no CPU. ``--photos queued`` adds the served
path on 12 MP phone photos as the bot queues them (``bot/image_shrink.py``), and the baseline on the 12 MP files.
``spinning:PxT`` is the served path with onnxruntime's idle pool threads spinning, as before stop 26
(``--configs served:1x2,spinning:1x2`` measures what letting them sleep gave).

    MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 \\
    .venv/bin/python bench/served_processes.py --rounds 8 [--photos queued] [--json bench/results/X.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BATCH = 32
SETTLE_S = 0.3  # > OpenMP's (200 ms) and onnxruntime's spin-wait after a parallel region
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_CONFIGS = "served:1x2,served:2x1,served:1x1,tutorial:1x2,tutorial:2x1"
SERVED_KINDS = ("served", "spinning")  # spinning: the served path with onnxruntime's threads spinning between runs


def _child(conn, kind: str, threads: int, bundle: str, images: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """One process: load its model on ``threads`` threads, then caption the image indices it is sent."""
    for var in THREAD_VARS:  # numpy's and torch's OpenMP pools: as many as onnxruntime's, as a worker process sets
        os.environ[var] = str(threads)
    sys.path[:0] = [str(REPO), str(REPO / "bench")]
    if kind in SERVED_KINDS:
        from captionbot.inference.captioner import Captioner

        if kind == "spinning":  # the served path as before stop 26: idle onnxruntime pool threads spin
            import captionbot.inference.bundle as bundle_module

            sleeping = bundle_module.session_options

            def spinning(threads: int = 0):  # type: ignore[no-untyped-def]
                opts = sleeping(threads)
                opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
                return opts

            bundle_module.session_options = spinning

        captioner = Captioner.load(Path(bundle), variant="int8", provider="cpu", threads=threads)

        def run(ims: list[bytes]) -> list[list[str]]:  # inference_throughput.runtime, without importing torch
            words: list[list[str]] = []
            for i in range(0, len(ims), BATCH):
                for o in captioner.caption_images(ims[i : i + BATCH], beam_size=3):
                    words.append([] if isinstance(o, Exception) else list(o.words))
            return words
    else:
        import torch
        from captionbot.export.from_bundle import captioner_from_bundle
        from inference_throughput import tutorial_per_image

        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        model, itos = captioner_from_bundle(Path(bundle))
        max_len = model.decoder.cfg.max_len

        def run(ims: list[bytes]) -> list[list[str]]:
            return [[itos[t] for t in toks] for toks in tutorial_per_image(model, ims, max_len)]
    conn.send("ready")
    while (msg := conn.recv()) is not None:
        conn.send(run([images[i] for i in msg]))


class Config:
    """``kind:PxT`` on one image pool: P processes of T threads."""

    def __init__(self, spec: str, pool: str, images: list[bytes], bundle: Path) -> None:
        kind, shape = spec.split(":")
        procs, threads = (int(x) for x in shape.split("x"))
        self.kind, self.procs, self.threads, self.pool = kind, procs, threads, pool
        self.name = f"{kind} {procs} process{'es' if procs > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}"
        if pool != "flickr8k":
            self.name += f" ({pool})"
        ctx = mp.get_context("spawn")
        self.conns = []
        self.workers = []
        for _ in range(procs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_child, args=(child, kind, threads, str(bundle), images), daemon=True)
            p.start()
            self.conns.append(parent)
            self.workers.append(p)
        for c in self.conns:
            assert c.recv() == "ready"
        self.seconds = 0.0
        self.images = 0
        self.outputs: dict[int, list[str]] = {}

    def run(self, indices: list[int]) -> float:
        """Caption ``indices`` split into equal shares, one per process; returns the wall time."""
        share = -(-len(indices) // self.procs)
        parts = [indices[i * share : (i + 1) * share] for i in range(self.procs)]
        t0 = time.perf_counter()
        for conn, part in zip(self.conns, parts, strict=True):
            conn.send(part)
        answers = [conn.recv() for conn in self.conns]
        elapsed = time.perf_counter() - t0
        for part, words in zip(parts, answers, strict=True):
            self.outputs.update(zip(part, words, strict=True))
        return elapsed

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for p in self.workers:
            p.join(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"comma-separated kind:PxT (default {DEFAULT_CONFIGS})")
    ap.add_argument("--photos", choices=("flickr8k", "queued"), default="flickr8k",
                    help="queued: also served 1x2 / 2x1 on 12 MP phone photos as the bot queues them, and the "
                         "tutorial 1x2 / 2x1 on the 12 MP files")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--per-round", type=int, default=64, help="images per round for served configurations")
    ap.add_argument("--slow-per-round", type=int, default=4, help="images per round for the tutorial")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sys.path[:0] = [str(REPO), str(REPO / "bench")]
    from inference_throughput import dev_images

    images = dev_images(max(args.rounds * args.per_round, 64))
    pools = {"flickr8k": images}
    specs = [(s.strip(), "flickr8k") for s in args.configs.split(",") if s.strip()]
    if args.photos == "queued":
        from captionbot.bot.image_shrink import prepare_for_queue
        from phone_photos import phone_photos

        from captionbot.formats import MAX_PIXELS

        print(f"making {BATCH} phone-sized photos (~12 MP) and shrinking them as the bot does ...", flush=True)
        phone = phone_photos(dev_images(BATCH, aspect_kept=True))
        pools["12 MP phone photos"] = phone
        pools["phone photos as the bot queues them"] = [prepare_for_queue(d, MAX_PIXELS) for d in phone]
        specs += [("served:1x2", "phone photos as the bot queues them"),
                  ("served:2x1", "phone photos as the bot queues them"), ("tutorial:1x2", "12 MP phone photos"),
                  ("tutorial:2x1", "12 MP phone photos")]
    print(f"starting {sum(int(s.split(':')[1].split('x')[0]) for s, _ in specs)} processes ...", flush=True)
    configs = [Config(spec, pool, pools[pool], args.bundle) for spec, pool in specs]
    for c in configs:  # warm-up: allocations, thread pools
        c.run(list(range(2 * c.procs)))
    for r in range(args.rounds):
        for c in configs:
            n = args.per_round if c.kind in SERVED_KINDS else args.slow_per_round
            pool = len(pools[c.pool])
            idx = [(r * n + j) % pool for j in range(n)]
            time.sleep(SETTLE_S)  # the last configuration's idle threads stop spinning before this one is timed
            c.seconds += c.run(idx)
            c.images += n
        print(f"round {r + 1}/{args.rounds} (load {os.getloadavg()[0]:.2f})", flush=True)
    for c in configs:
        c.close()

    rows = {c.name: c.images / c.seconds for c in configs}
    by = {(c.kind, c.procs, c.threads, c.pool): c for c in configs}
    base = by.get(("tutorial", 1, 2, "flickr8k"))
    base2 = by.get(("tutorial", 2, 1, "flickr8k"))
    ref = by.get(("served", 1, 2, "flickr8k"))
    print(f"\nbundle {args.bundle}, beam 3, {args.rounds} interleaved rounds ({args.per_round} images/round served, "
          f"{args.slow_per_round} tutorial), load at the end {os.getloadavg()[0]:.2f}")
    print(f"{'':64s} {'images/s':>9s} {'vs tut 1x2':>11s} {'vs tut 2x1':>11s} {'vs served 1x2':>14s}")
    for c in configs:
        ips = rows[c.name]
        cols = [f"{ips / (x.images / x.seconds):10.2f}x" if x else f"{'-':>11s}" for x in (base, base2)]
        vs_ref = f"{ips / (ref.images / ref.seconds):13.2f}x" if ref else f"{'-':>14s}"
        print(f"{c.name:74s} {ips:9.2f} {cols[0]} {cols[1]} {vs_ref}")
    agree = {}
    for c in configs:  # the same captions in P processes as in one (batches differ in size, not in content)
        if ref and c is not ref and c.kind in SERVED_KINDS and c.pool == "flickr8k":
            common = sorted(set(c.outputs) & set(ref.outputs))
            agree[c.name] = sum(c.outputs[i] == ref.outputs[i] for i in common) / max(1, len(common))
            print(f"{c.name}: captions identical to served 1x2 on {agree[c.name]:.0%} of {len(common)} images")
    if args.json:
        args.json.write_text(json.dumps({"images_per_s": rows, "agree_with_served_1x2": agree,
                                         "rounds": args.rounds, "per_round": args.per_round,
                                         "slow_per_round": args.slow_per_round,
                                         "load_at_end": os.getloadavg()[0]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
