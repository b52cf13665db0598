"""Caption throughput on this machine, all methods in one run, interleaved so the ratios are fair even when
other work on the machine comes and goes (each round gives every method its share of images in turn):

  tutorial   PyTorch, one image at a time, written like the widely used Show-Attend-Tell tutorial's
             ``caption_image_beam_search``: encoder on one image, its k beams as a batch of k that shrinks as
             beams end, and, as the tutorial's Attention module does, the encoder-side attention projection
             recomputed at every step. THE BASELINE.
  torch-b1   PyTorch, one image at a time: the one beam search over the PyTorch decoder step (training/decode.py;
             projection computed once per image)
  torch-b32  the same in batches of 32: how much batching alone gives in PyTorch
  runtime    the worker's path: image bytes -> decode -> ONNX encoder on the batch -> batched numpy beam search
             (fp32 and int8 under the evaluated search rules; int8 under the served rules too), batches of 32
  encoder    the ONNX encoder alone, decoding and preprocessing included, batches of 32: the ceiling for the runtime
  decoder    the runtime's batched beam search alone, on features encoded beforehand: the other half of its time

All at beam 3 on the same Flickr8k dev images, with the same model. By default that model is the shipped bundle
(models/default) and the PyTorch methods run a PyTorch captioner rebuilt from its fp32 graphs
(``captionbot.export.from_bundle``), so a fresh clone reruns this without training anything; ``--checkpoint``
benchmarks a training checkpoint instead (exported to a temporary bundle unless ``--bundle`` is its bundle).

``--photos phone`` (or ``both``) adds phone-sized photos: 12-megapixel JPEGs made at run time from real Flickr8k dev
photos (``bench/phone_photos.py``, never committed), for the baseline and for the worker's served path; and the
same photos *as the bot queues them*: through the bot's own ``prepare_for_queue`` (header and integrity check, EXIF
applied, long side shrunk to ``formats.MODEL_MAX_SIDE``, re-encoded; ``bot/image_shrink.py``) once, before the
timed rounds, then through the served path. The worker never receives a 12 MP photo from the bot, so that row is
what is served. The shrink runs in the bot's process, not the worker's: its cost is timed on its own (interleaved
with the rest, two photos a round) and reported as ms per photo, not folded into the worker's images/s.

    MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 \\
    .venv/bin/python bench/inference_throughput.py --threads 2 --photos both \\
        [--checkpoint CKPT [--bundle DIR]] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from captionbot.bot.image_shrink import prepare_for_queue  # noqa: E402
from captionbot.export.compact import fuse_encoder_batchnorm, round_weights_to_fp16  # noqa: E402
from captionbot.export.exporter import ExportOptions, export_bundle  # noqa: E402
from captionbot.export.from_bundle import captioner_from_bundle  # noqa: E402
from captionbot.inference.beam_search import BeamOptions  # noqa: E402
from captionbot.inference.captioner import ENCODER_CHUNK, Captioner, caption_features  # noqa: E402
from captionbot.inference.policy import ENGLISH_SERVED_POLICY  # noqa: E402
from captionbot.inference.preprocess import decode_image, to_array  # noqa: E402
from captionbot.training.checkpoint import load_captioner  # noqa: E402
from captionbot.training.data import read_flickr8k  # noqa: E402
from captionbot.training.decode import decode  # noqa: E402
from phone_photos import phone_photos  # noqa: E402

from captionbot.formats import MAX_PIXELS  # noqa: E402

BEAM = 3
BATCH = 32
SERVED = "runtime int8, served rules (what the worker runs)"
PHONE_BASELINE = "tutorial on 12 MP phone photos (batch 1)"
PHONE_SERVED = "runtime int8, served rules, 12 MP phone photos"
PHONE_QUEUED = "served path, phone photos as the bot queues them"
BOT_SHRINK = "bot: check + shrink a 12 MP photo before queueing (bot process)"


def dev_images(n: int, aspect_kept: bool = False) -> list[bytes]:
    """The first ``n`` Flickr8k dev photos by name (``aspect_kept``: only those not squashed to 224x224)."""
    root = REPO.parent / "shared" / "data" / "flickr8k"
    items = sorted((it for it in read_flickr8k(root) if it.split == "dev"), key=lambda it: it.path.name)
    if aspect_kept:
        items = [it for it in items if decode_image(it.path.read_bytes()).size != (224, 224)]
    return [it.path.read_bytes() for it in items[:n]]


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


@torch.inference_mode()
def tutorial_per_image(model, images: list[bytes], max_len: int) -> list[list[int]]:
    """The tutorial's caption_image_beam_search, ported to this model's modules (same math per step)."""
    enc, dec = model.encoder, model.decoder
    size = (enc.input_size, enc.input_size)
    start, end = 1, 2
    out = []
    for data in images:
        x = torch.from_numpy(to_array(decode_image(data, size=size), size, enc.mean, enc.std))[None]
        k = BEAM
        feats = enc(x).expand(k, -1, -1)  # [k, P, C]
        prev = torch.full((k,), start, dtype=torch.long)
        seqs = prev[:, None]
        top_scores = torch.zeros(k, 1)
        complete, complete_scores = [], []
        h, c, _ = dec.init_state(feats)
        for step in range(1, max_len + 2):
            att_proj = dec.attention.project(feats)  # the tutorial's Attention recomputes this every step
            log_probs, h, c, _ = dec.step(prev, h, c, feats, att_proj)
            log_probs[:, [0, 1, 3]] = float("-inf")
            scores = top_scores.expand_as(log_probs) + log_probs
            top_scores, top_words = (scores[0] if step == 1 else scores.view(-1)).topk(k)
            prev_inds, next_words = top_words // log_probs.size(1), top_words % log_probs.size(1)
            seqs = torch.cat([seqs[prev_inds], next_words[:, None]], dim=1)
            incomplete = [i for i, w in enumerate(next_words.tolist()) if w != end]
            for i in set(range(len(next_words))) - set(incomplete):
                complete.append(seqs[i].tolist())
                complete_scores.append(float(top_scores[i]))
            k -= len(next_words) - len(incomplete)
            if k == 0:
                break
            seqs, prev = seqs[incomplete], next_words[incomplete]
            keep = prev_inds[incomplete]
            h, c, feats = h[keep], c[keep], feats[keep]
            top_scores = top_scores[incomplete][:, None]
        if not complete:  # the tutorial would fail here; take the live beams as they are
            complete = seqs.tolist()
            complete_scores = top_scores.view(-1).tolist()
        best = complete[int(np.argmax(complete_scores))]
        out.append([t for t in best[1:] if t != end])
    return out


@torch.inference_mode()
def torch_per_image(model, images: list[bytes], max_len: int) -> list[list[int]]:
    enc = model.encoder
    size = (enc.input_size, enc.input_size)
    out = []
    for data in images:
        x = torch.from_numpy(to_array(decode_image(data, size=size), size, enc.mean, enc.std))[None]
        hyp = decode(model.decoder, enc(x), BeamOptions(beam_size=BEAM, max_len=max_len))[0]
        out.append(hyp.tokens)
    return out


@torch.inference_mode()
def torch_batched(model, images: list[bytes], max_len: int) -> list[list[int]]:
    enc = model.encoder
    size = (enc.input_size, enc.input_size)
    out = []
    for i in range(0, len(images), BATCH):
        x = torch.from_numpy(np.stack([to_array(decode_image(d, size=size), size, enc.mean, enc.std)
                                       for d in images[i : i + BATCH]]))
        out += [hyp.tokens for hyp in decode(model.decoder, enc(x), BeamOptions(beam_size=BEAM, max_len=max_len))]
    return out


def runtime(captioner: Captioner, images: list[bytes]) -> list[list[str]]:
    words: list[list[str]] = []
    for i in range(0, len(images), BATCH):
        for o in captioner.caption_images(images[i : i + BATCH], beam_size=BEAM):
            words.append([] if isinstance(o, Exception) else o.words)
    return words


def encoder_only(captioner: Captioner, images: list[bytes]) -> None:
    for i in range(0, len(images), BATCH):
        arrays = np.stack([arr for _, arr in captioner.preprocess_many(images[i : i + BATCH])])
        for j in range(0, len(arrays), ENCODER_CHUNK):  # as the runtime does
            captioner.bundle.encode(arrays[j : j + ENCODER_CHUNK])


def decoder_only(captioner: Captioner, features: dict[int, np.ndarray], images: list[bytes]) -> list[list[str]]:
    out = []
    for i in range(0, len(images), BATCH):
        feats = np.stack([features[id(d)] for d in images[i : i + BATCH]])
        out += [[captioner.bundle.itos[t] for t in h.tokens] for h in caption_features(captioner.bundle, feats,
                                                                                      captioner.options)]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="a training checkpoint (default: none; PyTorch is rebuilt from --bundle's graphs)")
    ap.add_argument("--bundle", type=Path, default=None, help="the bundle (default: models/default; with "
                    "--checkpoint: its bundle, or none to export one to a temp dir)")
    ap.add_argument("--photos", choices=("flickr8k", "phone", "both"), default="flickr8k",
                    help="phone/both: also the baseline and the served path on 12 MP phone-sized photos")
    ap.add_argument("--quick", action="store_true", help="3 rounds instead of 8")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--slow-per-round", type=int, default=2, help="images per round for the batch-1 methods")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for PyTorch and onnxruntime alike (0: each library's default)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 3
    logging.basicConfig(level=logging.WARNING)
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.checkpoint is None:  # a fresh clone: PyTorch from the shipped bundle's own weights
        args.bundle = args.bundle or REPO / "models" / "default"
        model, itos = captioner_from_bundle(args.bundle)
        source = f"bundle {args.bundle} (PyTorch rebuilt from its graphs)"
    else:
        model, vocab = load_captioner(args.checkpoint)
        itos = vocab.itos
        source = f"checkpoint {args.checkpoint}"
        if args.bundle is not None:  # the bundle was exported with --fp16-weights: give PyTorch the same weights
            fuse_encoder_batchnorm(model)
            round_weights_to_fp16(model)
    max_len = model.decoder.cfg.max_len
    images = dev_images(max(args.rounds * BATCH, 64))
    tmp = None
    bundle_dir = args.bundle
    if bundle_dir is None:
        tmp = tempfile.TemporaryDirectory()
        bundle_dir = Path(tmp.name) / "bundle"
        print("exporting the checkpoint to a temporary bundle (parity on 16 images, int8 variants) ...", flush=True)
        export_bundle(model, itos, bundle_dir, images[:16],
                      ExportOptions(variants=("int8", "int8-full"), model_version="bench",
                                    decoding=ENGLISH_SERVED_POLICY))
    fp32 = Captioner.load(bundle_dir, provider="cpu", threads=args.threads)
    int8 = Captioner.load(bundle_dir, variant="int8", provider="cpu", threads=args.threads)
    has_full = "int8-full" in fp32.bundle.manifest.variants
    int8_full = Captioner.load(bundle_dir, variant="int8-full", provider="cpu", threads=args.threads) \
        if has_full else None
    served = Captioner.load(bundle_dir, variant="int8", provider="cpu", threads=args.threads)  # users' rules
    for c in (fp32, int8, int8_full or fp32):  # compare under training's rules exactly (empty captions allowed)
        c.options = BeamOptions(beam_size=BEAM, max_len=max_len)

    encoded = {id(d): f for d in images for f in fp32.bundle.encode(fp32.preprocess(d)[1][None])}
    methods = {  # name -> (function, images per round)
        "tutorial: PyTorch per image (batch 1), BASELINE": (lambda ims: tutorial_per_image(model, ims, max_len), 1),
        "PyTorch step per image (batch 1)": (lambda ims: torch_per_image(model, ims, max_len), 1),
        "PyTorch step batched (batch 32)": (lambda ims: torch_batched(model, ims, max_len), BATCH),
        "runtime fp32 (ONNX, batch 32)": (lambda ims: runtime(fp32, ims), BATCH),
        "runtime int8 (ONNX, batch 32)": (lambda ims: runtime(int8, ims), BATCH),
        "runtime int8, served rules (what the worker runs)": (lambda ims: runtime(served, ims), BATCH),
        "encoder only fp32 (ONNX, batch 32): ceiling": (lambda ims: encoder_only(fp32, ims), BATCH),
        "decoder only fp32 (beam search, batch 32)": (lambda ims: decoder_only(fp32, encoded, ims), BATCH),
        "decoder only int8 (beam search, batch 32)": (lambda ims: decoder_only(int8, encoded, ims), BATCH),
    }
    phone: list[bytes] = []
    queued: list[bytes] = []
    if args.photos != "flickr8k":
        print(f"making {BATCH} phone-sized photos (~12 MP JPEGs) from Flickr8k dev photos ...", flush=True)
        phone = phone_photos(dev_images(BATCH, aspect_kept=True))
        queued = [prepare_for_queue(d, MAX_PIXELS) for d in phone]  # what the bot puts on the queue
        methods[PHONE_BASELINE] = (lambda ims: tutorial_per_image(model, ims, max_len), 1)
        methods[PHONE_SERVED] = (lambda ims: runtime(served, ims), BATCH)
        methods[PHONE_QUEUED] = (lambda ims: runtime(served, ims), BATCH)
        methods[BOT_SHRINK] = (lambda ims: [prepare_for_queue(d, MAX_PIXELS) for d in ims] and None, 1)
    pools = {PHONE_BASELINE: phone, PHONE_SERVED: phone, PHONE_QUEUED: queued, BOT_SHRINK: phone}
    if int8_full is not None:
        methods["runtime int8-full (ONNX, batch 32)"] = (lambda ims: runtime(int8_full, ims), BATCH)
        methods["encoder only int8-full (ONNX, batch 32)"] = (lambda ims: encoder_only(int8_full, ims), BATCH)
    for name, (fn, _) in methods.items():  # warm-up: allocations, thread pools
        fn(pools.get(name, images)[:2])
    seconds = dict.fromkeys(methods, 0.0)
    counts = dict.fromkeys(methods, 0)
    outputs: dict[str, list] = {name: [] for name in methods}
    for r in range(args.rounds):
        for name, (fn, per_round) in methods.items():
            pool = pools.get(name, images)
            if per_round == 1:
                ims = [pool[(r * args.slow_per_round + j) % len(pool)] for j in range(args.slow_per_round)]
            else:
                ims = [pool[(r * per_round + j) % len(pool)] for j in range(per_round)]
            t, out = timed(fn, ims)
            seconds[name] += t
            counts[name] += len(ims)
            if out is not None:
                outputs[name] += out
        print(f"round {r + 1}/{args.rounds}", flush=True)
    rows = {name: counts[name] / seconds[name] for name in methods if name != BOT_SHRINK}

    def words(name: str, n: int) -> list[list[str]]:
        out = outputs[name][:n]
        return [o if o and isinstance(o[0], str) else [itos[i] for i in o] for o in out]

    n_slow = counts["tutorial: PyTorch per image (batch 1), BASELINE"]
    fp32_words = words("runtime fp32 (ONNX, batch 32)", n_slow)
    agree_tut = np.mean([a == b for a, b in zip(words("tutorial: PyTorch per image (batch 1), BASELINE", n_slow),
                                                  fp32_words, strict=True)])
    agree_b1 = np.mean([a == b for a, b in zip(words("PyTorch step per image (batch 1)", n_slow),
                                                 fp32_words, strict=True)])
    n_fast = counts["runtime int8 (ONNX, batch 32)"]
    agree_int8 = np.mean([a == b for a, b in zip(words("runtime fp32 (ONNX, batch 32)", n_fast),
                                                   words("runtime int8 (ONNX, batch 32)", n_fast), strict=True)])
    if int8_full is not None:
        full_words = words("runtime int8-full (ONNX, batch 32)", n_fast)
        agree_full = np.mean([a == b for a, b in zip(words("runtime fp32 (ONNX, batch 32)", n_fast), full_words,
                                                       strict=True)])
        print(f"int8-full vs fp32: {agree_full:.0%} identical captions")
    mean_len = np.mean([len(w) for w in words("runtime fp32 (ONNX, batch 32)", n_fast)])

    baseline = rows["tutorial: PyTorch per image (batch 1), BASELINE"]
    print(f"\n{source}, beam {BEAM}, {args.rounds} interleaved rounds "
          f"({args.slow_per_round} image(s)/round for batch-1 methods, {BATCH} for batched ones), "
          f"threads: torch {torch.get_num_threads()}, onnxruntime {args.threads or 'default'}, "
          f"mean caption {mean_len:.1f} words")
    print(f"{'':52s} {'images/s':>9s} {'vs baseline':>12s}")
    for name, ips in rows.items():
        print(f"{name:52s} {ips:9.2f} {ips / baseline:11.1f}x")
    if phone:
        print(f"phone-sized photos ({np.mean([len(d) for d in phone]) / 1e6:.1f} MB JPEGs, 12 MP): served path "
              f"{rows[PHONE_SERVED] / rows[PHONE_BASELINE]:.1f}x the baseline on the same photos, "
              f"{rows[PHONE_SERVED] / rows[SERVED]:.2f}x the served path on Flickr8k")
        n = min(len(outputs[PHONE_QUEUED]), len(queued))  # each photo once
        same = np.mean([a == b for a, b in zip(outputs[PHONE_QUEUED][:n], outputs[PHONE_SERVED][:n], strict=True)])
        print(f"as the bot queues them ({np.mean([len(d) for d in queued]) / 1e6:.2f} MB JPEGs, long side "
              f"{max(decode_image(queued[0]).size)} px): served path "
              f"{rows[PHONE_QUEUED] / rows[PHONE_BASELINE]:.1f}x the baseline on the same 12 MP photos, "
              f"{rows[PHONE_QUEUED] / rows[SERVED]:.2f}x the served path on Flickr8k, "
              f"{rows[PHONE_QUEUED] / rows[PHONE_SERVED]:.2f}x the served path on the 12 MP files; "
              f"captions as from the 12 MP file: {same:.0%} of {n}")
        print(f"bot-side check + shrink (in the bot process, not the worker): "
              f"{1000 * seconds[BOT_SHRINK] / counts[BOT_SHRINK]:.0f} ms per 12 MP photo")
    print(f"captions identical to runtime fp32: tutorial {agree_tut:.0%} (different finished-beam rule), "
          f"PyTorch step batch 1 {agree_b1:.0%}; int8 vs fp32 {agree_int8:.0%}")
    agree_base = agree_b1
    if args.json:
        shrink = {"bot_shrink_ms_per_photo": 1000 * seconds[BOT_SHRINK] / counts[BOT_SHRINK]} if phone else {}
        args.json.write_text(json.dumps({"images_per_s": rows, **shrink, "agree_fp32_vs_torch": agree_base,
                                         "agree_int8_vs_fp32": agree_int8, "mean_words": mean_len}, indent=2))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
