"""A researcher trains on (a slice of) Flickr8k from the command line, then scores the best checkpoint."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from captionbot.inference.beam_search import BeamOptions
from captionbot.training.checkpoint import load_captioner, load_checkpoint
from captionbot.training.decode import decode
from captionbot.training.features import FeatureCache

from captionbot.cli import main as captionbot


@pytest.fixture
def small_flickr8k(data_dir: Path, tmp_path: Path) -> Path:
    """A Flickr8k folder with the real caption and split files but only 12 train and 4 dev images."""
    src, root = data_dir / "flickr8k", tmp_path / "flickr8k"
    (root / "images").mkdir(parents=True)
    for f in ("Flickr8k.token.txt", "Flickr_8k.trainImages.txt", "Flickr_8k.devImages.txt"):
        (root / f).symlink_to(src / f)
    names = (sorted((src / "Flickr_8k.trainImages.txt").read_text().split())[:12]
             + sorted((src / "Flickr_8k.devImages.txt").read_text().split())[:4])
    for name in names:
        shutil.copy(src / "images" / name, root / "images" / name)
    return root


def test_train_then_evaluate_the_best_checkpoint(small_flickr8k: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    # the command would build this cache itself (with the ONNX engine); the torch engine is quicker for 16 images
    FeatureCache.build(cache / "efficientnet_lite0", sorted((small_flickr8k / "images").iterdir()), engine="torch")
    rc = captionbot(["train", "--flickr8k", str(small_flickr8k), "--out", str(out), "--cache-dir", str(cache),
                     "--epochs", "2", "--batch-size", "16", "--embed", "32", "--hidden", "32", "--attention", "32",
                     "--min-count", "1", "--beam", "2", "--threads", "1", "--no-progress", "--keep-epochs"])
    assert rc == 0
    # every epoch kept, and the kept epochs average into a checkpoint that loads like any other
    assert captionbot(["average", str(out / "epoch1.pt"), str(out / "epoch2.pt"), "--out", str(out / "avg.pt")]) == 0
    assert load_captioner(out / "avg.pt")[1].itos == load_captioner(out / "epoch2.pt")[1].itos
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all("val_CIDEr" in h and "val_Bleu_4" in h for h in history)
    assert (out / "tb").is_dir() and any((out / "tb").iterdir())

    ckpt = load_checkpoint(out / "best.pt")
    assert {"model", "decoder_config", "encoder_arch", "vocab", "optimizer", "scheduler", "rng", "epoch", "step",
            "best_score"} <= set(ckpt)
    assert ckpt["decoder_config"]["hidden_dim"] == 32 and ckpt["encoder_arch"] == "efficientnet_lite0"

    model, vocab = load_captioner(out / "best.pt")
    assert not model.training and len(vocab) == ckpt["decoder_config"]["vocab_size"]
    report_path = tmp_path / "eval" / "dev.json"
    rc = captionbot(["evaluate", str(out / "best.pt"), "--flickr8k", str(small_flickr8k), "--split", "dev",
                     "--beam", "2", "--cache-dir", str(cache), "--out", str(report_path),
                     "--metrics", "BLEU,ROUGE_L,CIDEr,SPICE"])  # METEOR's Java start takes 10 s: see test_metrics
    assert rc == 0
    report = json.loads(report_path.read_text())
    assert report["images"] == 4 and report["beam_size"] == 2
    assert set(report["scores"]) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr", "SPICE"}
    assert report["scores"]["SPICE"] is None and "unavailable" in report["notes"]["SPICE"]
    captions = {c["image_id"]: c["caption"] for c in json.loads((tmp_path / "eval" / "dev.captions.json").read_text())}
    # the reported captions are what the loaded model says for those images
    feats = FeatureCache.open(cache / "efficientnet_lite0")
    ids = sorted(captions)
    hyps = decode(model.eval().decoder, torch.from_numpy(feats.get(ids)),
                  BeamOptions(beam_size=2, max_len=model.decoder.cfg.max_len))
    assert [captions[i] for i in ids] == [" ".join(vocab.decode(h.tokens)) for h in hyps]


def test_bad_paths_get_a_clear_message_not_a_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert captionbot(["train", "--flickr8k", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
        assert captionbot(["train", "--out", str(tmp_path / "o")]) == 2
        assert captionbot(["evaluate", str(tmp_path / "missing.pt"), "--flickr8k", str(tmp_path)]) == 2
    assert "does not exist" in caplog.text and "no data" in caplog.text


def test_the_same_command_trains_under_torchrun_with_two_processes(small_flickr8k: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache"
    FeatureCache.build(cache / "efficientnet_lite0", sorted((small_flickr8k / "images").iterdir()), engine="torch")
    args = ["train", "--flickr8k", str(small_flickr8k), "--cache-dir", str(cache), "--epochs", "1", "--batch-size",
            "4", "--embed", "16", "--hidden", "16", "--attention", "16", "--min-count", "1", "--val-limit", "0",
            "--threads", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "captionbot.cli"]
    done = subprocess.run([*torchrun, *args, "--out", str(tmp_path / "ddp")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert captionbot([*args, "--out", str(tmp_path / "single")]) == 0
    ddp, single = load_checkpoint(tmp_path / "ddp" / "last.pt"), load_checkpoint(tmp_path / "single" / "last.pt")
    # each of the two processes took every other batch: half the optimizer steps, all the captions
    assert ddp["step"] == single["step"] // 2 > 0
    assert ddp["history"][0]["captions_per_s"] > 0
