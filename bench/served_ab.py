"""The served path at an earlier commit against the working tree, interleaved (ABAB), at 1 and 2 threads.

Each side runs in its own process, which imports ``captionbot`` from a tree of links laid out as installed (the
Makefile's typecheck does the same): the working tree for "now", ``git archive REF`` unpacked into a temporary
folder for "before". Both load the same bundle and variant as the worker does (``Captioner.load``, CPU provider,
``--threads`` onnxruntime and decode threads) and caption the same Flickr8k dev photos in batches of 32, one side
then the other, the order swapped every round, so machine load hits both alike. Reported: each side's images/s
over all rounds, the ratio (now / before) and the median of the per-round ratios, and whether the two gave the
same answers (a sha256 over every caption, score, confidence and label).

    .venv/bin/python bench/served_ab.py --before main [--now REF] [--variant int8] [--threads 1 2] [--rounds 6] \
        [--photos 64] [--json bench/results/served_ab.json]

``--now REF`` compares two commits (one change's effect) instead of REF and the working tree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
BATCH = 32
PACKAGES = ("bot", "inference", "export", "training")  # installed as captionbot.<name> (setup.py's package map)


def link_tree(source: Path, dest: Path) -> Path:
    """``dest``/captionbot laid out as installed, every entry a link into the checkout ``source``; returns
    ``dest`` (for PYTHONPATH)."""
    pkg = dest / "captionbot"
    pkg.mkdir(parents=True)
    for f in (source / "captionbot").iterdir():
        if f.suffix == ".py" or (f / "__init__.py").is_file():
            (pkg / f.name).symlink_to(f)
    for name in PACKAGES:
        (pkg / name).symlink_to(source / name)
    return dest


def checkout(ref: str, dest: Path) -> str:
    """``git archive ref`` unpacked into ``dest``; returns the commit it names."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, check=True, capture_output=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return commit


def serve(args: argparse.Namespace) -> int:
    """Child: load the captioner, then caption the photos each time a line comes on stdin; print one JSON line of
    (wall seconds, CPU seconds, answers' sha256) per run."""
    from captionbot.inference.captioner import Captioner, CaptionOutput

    photos = [Path(p).read_bytes() for p in json.loads(Path(args.serve).read_text())]
    captioner = Captioner.load(args.bundle, variant=args.variant, provider="cpu", threads=args.threads[0])
    captioner.caption_images(photos[:4])  # warm-up
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        digest = hashlib.sha256()
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(photos), BATCH):
            for out in captioner.caption_images(photos[i : i + BATCH]):
                if isinstance(out, CaptionOutput):
                    digest.update(repr((out.caption, out.score, out.confidence, out.labels)).encode())
                else:
                    digest.update(repr(out).encode())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(json.dumps({"wall": wall, "cpu": cpu, "answers": digest.hexdigest()}), flush=True)
    return 0


class Side:
    """One side's child process."""

    def __init__(self, name: str, tree: Path, photo_list: Path, args: argparse.Namespace, threads: int) -> None:
        self.name = name
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", str(photo_list), "--bundle", str(args.bundle),
               "--variant", args.variant, "--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, env=env, cwd=tempfile.gettempdir(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self._read()  # ready

    def _read(self) -> dict[str, Any]:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        line = out.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the child process ended (exit {self.proc.wait()})")
        return json.loads(line)

    def run(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def compare(trees: dict[str, Path], photo_list: Path, n_photos: int, args: argparse.Namespace,
            threads: int) -> dict[str, Any]:
    """ABAB rounds of the two sides at ``threads``; the summary."""
    sides = {name: Side(name, tree, photo_list, args, threads) for name, tree in trees.items()}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    try:
        for r in range(args.rounds):
            for name in (("before", "now") if r % 2 == 0 else ("now", "before")):
                runs[name].append(sides[name].run())
    finally:
        for side in sides.values():
            side.close()
    wall = {name: sum(x["wall"] for x in rs) for name, rs in runs.items()}
    cpu = {name: sum(x["cpu"] for x in rs) for name, rs in runs.items()}
    per_round = [b["wall"] / n["wall"] for b, n in zip(runs["before"], runs["now"], strict=True)]
    answers = {name: {x["answers"] for x in rs} for name, rs in runs.items()}
    return {
        "threads": threads,
        "images_per_s": {name: n_photos * args.rounds / s for name, s in wall.items()},
        "speedup_wall": wall["before"] / wall["now"],
        "speedup_wall_median_round": statistics.median(per_round),
        "speedup_cpu": cpu["before"] / cpu["now"],
        "same_answers": len(answers["before"] | answers["now"]) == 1,
        "rounds_wall_s": {name: [round(x["wall"], 4) for x in rs] for name, rs in runs.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="main", help="the git ref to compare against")
    ap.add_argument("--now", default=None, help="a git ref in place of the working tree (one change's effect)")
    ap.add_argument("--bundle", type=Path, default=REPO / "models" / "default")
    ap.add_argument("--variant", default="int8")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--photos", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args)
    args.bundle = args.bundle.resolve()
    root = REPO.parent / "shared" / "data" / "flickr8k"
    names = sorted((root / "Flickr_8k.devImages.txt").read_text().split())[: args.photos]
    with tempfile.TemporaryDirectory(prefix="served_ab_") as tmp:
        tmp_dir = Path(tmp)
        photo_list = tmp_dir / "photos.json"
        photo_list.write_text(json.dumps([str(root / "images" / n) for n in names]))
        before = checkout(args.before, tmp_dir / "before")
        if args.now:
            now = f"{args.now} ({checkout(args.now, tmp_dir / 'now')})"
            trees = {"before": link_tree(tmp_dir / "before", tmp_dir / "before_pkg"),
                     "now": link_tree(tmp_dir / "now", tmp_dir / "now_pkg")}
        else:
            now = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
            if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                              capture_output=True, text=True).stdout.strip():
                now += " + uncommitted changes"
            trees = {"before": link_tree(tmp_dir / "before", tmp_dir / "before_pkg"),
                     "now": link_tree(REPO, tmp_dir / "now_pkg")}
        report: dict[str, Any] = {
            "before": f"{args.before} ({before})", "now": now,
            "variant": args.variant, "photos": len(names), "rounds": args.rounds,
            "load_average_at_start": os.getloadavg(), "results": [],
        }
        for threads in args.threads:
            result = compare(trees, photo_list, len(names), args, threads)
            report["results"].append(result)
            print(f"{threads} thread(s): before {result['images_per_s']['before']:.1f} images/s, now "
                  f"{result['images_per_s']['now']:.1f}: {result['speedup_wall']:.3f}x (median round "
                  f"{result['speedup_wall_median_round']:.3f}x, CPU time {result['speedup_cpu']:.3f}x), same answers: "
                  f"{result['same_answers']}", flush=True)
        report["load_average_at_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
