"""Training loop: teacher forcing on cached features, validation by beam-search CIDEr, checkpoints, early stopping.

Runs as one process, or under ``torchrun`` (DDP) unchanged: the process group is started only when
``WORLD_SIZE`` > 1; every rank computes the same batch list per epoch and takes its share; rank 0 validates,
logs and saves, and tells the others whether to stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from captionbot.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from captionbot.training.data import PAD, UNK, CaptionedImage, Vocab, tokenize
from captionbot.training.dataset import Batch, CaptionFeatureDataset, LengthBucketBatches
from captionbot.training.evaluate import evaluate_images
from captionbot.training.features import FeatureCache
from captionbot.training.model import (
    ENCODERS,
    SHARED_CHANNELS,
    Captioner,
    DecoderConfig,
    Encoder,
    EncoderTrunk,
    attention_entropy,
    doubly_stochastic_penalty,
)
from captionbot.training.sources import DataSource, read_sources
from captionbot.training.train_config import TrainConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_score: float
    best_epoch: int
    epochs_run: int
    step_losses: list[float] = field(default_factory=list)  # cross-entropy of every step this process ran
    history: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------
# process setup
# --------------------------------------------------------------------------------------------------------------


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Starts the process group only under torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu" if device == "auto" else device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_cosine(warmup: int, total: int, floor: float = 0.05):
    """LR factor: linear warm-up for ``warmup`` steps, then cosine decay to ``floor`` at ``total`` steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class EncoderTop(nn.Module):
    """The encoder's top ``blocks`` blocks (and head) as a module: cached trunk activations -> features."""

    def __init__(self, encoder: Encoder, blocks: int) -> None:
        super().__init__()
        self.encoder, self.blocks = encoder, blocks

    def forward(self, trunk: torch.Tensor) -> torch.Tensor:
        return self.encoder.top(trunk, self.blocks)


# --------------------------------------------------------------------------------------------------------------
# a trainer's parts, built in this order (the order of the random draws that seeded runs reproduce)
# --------------------------------------------------------------------------------------------------------------


def start_process(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process, with its thread count set and its random generators seeded."""
    rank, world, device = setup_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + rank)
    return rank, world, device


def load_starting_point(cfg: TrainConfig) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(checkpoint to resume, checkpoint to start from): ``cfg.resume`` wins over ``cfg.init_from``."""
    ckpt = load_checkpoint(cfg.resume) if cfg.resume else None
    init = load_checkpoint(cfg.init_from) if cfg.init_from and ckpt is None else None
    if init is not None and init.get("encoder_fine_tuned") and not cfg.fine_tune_blocks:
        raise SystemExit(f"{cfg.init_from} has a fine-tuned encoder: continue it with --fine-tune-blocks, since "
                         "cached features of the pretrained encoder would not match its weights")
    return ckpt, init


def choose_vocab(start: dict[str, Any] | None, vocab: Vocab | None, train_images: list[CaptionedImage],
                 min_count: int) -> Vocab:
    """The starting checkpoint's vocabulary, else ``vocab``, else one built from the training captions."""
    if start is not None:
        return Vocab.from_dict(start["vocab"])
    if vocab is not None:
        return vocab
    return Vocab.build((tokenize(c) for im in train_images for c in im.captions), min_count)


def build_model(cfg: TrainConfig, vocab_size: int, start: dict[str, Any] | None,
                start_weights: dict[str, Any] | None) -> Captioner:
    """The captioner: shaped like the starting checkpoint (with ``start_weights`` loaded), or new from ``cfg``.

    A new one has the pretrained encoder. A resumed checkpoint's weights are loaded later, with its optimiser.
    """
    if start is not None:
        dcfg = DecoderConfig(**start["decoder_config"])
    else:
        dcfg = DecoderConfig(vocab_size=vocab_size, feature_dim=ENCODERS[cfg.encoder][3], embed_dim=cfg.embed_dim,
                             hidden_dim=cfg.hidden_dim, attention_dim=cfg.attention_dim, dropout=cfg.dropout,
                             max_len=cfg.max_len, shared_dim=SHARED_CHANNELS.get(cfg.encoder, 0))
    if cfg.attention_temperature is not None and cfg.resume is None:  # a resumed run keeps what it started with
        dcfg.attention_temperature = cfg.attention_temperature
    for flag, used in (("--global-dropout", cfg.global_dropout > 0), ("--no-shared-context", cfg.no_shared_context)):
        if used and dcfg.shared_dim == 0:
            raise ValueError(f"{flag} needs an encoder with a global vector in every cell "
                             f"(efficientnet_lite0_local or _local7); {cfg.encoder} has none")
    if cfg.no_shared_context and cfg.resume is None:
        dcfg.shared_in_context = False
    model = Captioner(dcfg, arch=cfg.encoder, pretrained=start is None)
    if start_weights is not None:
        model.load_state_dict(start_weights)
    elif start is None:
        # Draw the word embeddings a second time (same U(-0.1, 0.1) as Decoder.__init__). The random stream the
        # shipped default model (1.0.0) was trained with included this draw; without it every later draw
        # (dropout masks, batch order) shifts, and `make model` gives another model: dev CIDEr 0.488, not 0.516.
        nn.init.uniform_(model.decoder.embedding.weight, -0.1, 0.1)
    return model


def hide_global(feats: torch.Tensor, shared_dim: int, p: float) -> torch.Tensor:
    """Zero the last ``shared_dim`` channels (the global vector) of every cell of an image with probability ``p``:
    that caption is then learnt from the local cells alone (its initial state, scores and context)."""
    hidden = torch.rand(feats.size(0), 1, 1, device=feats.device) < p
    local, shared = feats[:, :, :-shared_dim], feats[:, :, -shared_dim:]
    return torch.cat([local, shared.masked_fill(hidden, 0.0)], dim=2)


def distributed(module: nn.Module, world: int, device: torch.device) -> nn.Module:
    """``module`` wrapped for DDP when more than one process trains; ``module`` itself otherwise."""
    if world <= 1:
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def fine_tuned_encoder(model: Captioner, blocks: int, device: torch.device) -> Encoder:
    """The captioner's encoder on ``device`` with its top ``blocks`` blocks trainable.

    It stays in eval mode (BatchNorm statistics frozen: batches of a few dozen images would only add noise to them),
    but gradients reach its top blocks.
    """
    encoder = model.encoder.to(device).eval()
    encoder.fine_tune_top(blocks)
    return encoder


def param_groups(cfg: TrainConfig, decoder: nn.Module, encoder: Encoder | None) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on the decoder's weight matrices only; the encoder's blocks at a lower rate."""
    params = [p for p in decoder.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if encoder is not None:
        enc_params = [p for p in encoder.parameters() if p.requires_grad]
        groups.append({"params": enc_params, "weight_decay": 0.0, "lr": cfg.lr * cfg.encoder_lr_scale})
    return groups


def lr_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                batches_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up then cosine decay over the run's steps (``cfg.max_steps_per_epoch`` shortens an epoch)."""
    steps_per_epoch = batches_per_epoch
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup_steps, cfg.epochs * steps_per_epoch))


# --------------------------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------------------------


class Trainer:
    """Trains ``Captioner.decoder`` on cached features of ``train_images``; validates on ``val_images``.

    With ``cfg.fine_tune_blocks`` = N > 0, ``cache`` (and ``flipped``) hold the activations that enter the encoder's
    top N blocks (``prepare_features`` builds them), and those blocks train with the decoder.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        train_images: list[CaptionedImage],
        val_images: list[CaptionedImage],
        cache: FeatureCache,
        flipped: FeatureCache | None = None,
        vocab: Vocab | None = None,
    ) -> None:
        self.cfg = cfg
        self.rank, self.world, self.device = start_process(cfg)
        self.is_main = self.rank == 0
        ckpt, init = load_starting_point(cfg)
        start = ckpt if ckpt is not None else init
        self.vocab = choose_vocab(start, vocab, train_images, cfg.min_count)
        self.cache = cache
        self.val_images = val_images
        self.val_paths = {im.image_id: im.path for im in val_images}
        self.data = CaptionFeatureDataset(train_images, self.vocab, cache, cfg.max_len,
                                          flipped if cfg.flip_augment else None)
        self.batches = LengthBucketBatches(self.data.lengths, cfg.batch_size, cfg.seed, self.rank, self.world)
        self.model = build_model(cfg, len(self.vocab), start, init["model"] if init is not None else None)
        self.decoder = self.model.decoder.to(self.device)
        self.train_module = distributed(self.decoder, self.world, self.device)
        self.encoder: Encoder | None = None
        self.encoder_top: nn.Module | None = None
        if cfg.fine_tune_blocks > 0:
            self.encoder = fine_tuned_encoder(self.model, cfg.fine_tune_blocks, self.device)
            self.encoder_top = distributed(EncoderTop(self.encoder, cfg.fine_tune_blocks), self.world, self.device)
        groups = param_groups(cfg, self.decoder, self.encoder)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        self.trainable = [p for g in groups for p in g["params"]]
        self.scheduler = lr_schedule(self.optimizer, cfg, len(self.batches))
        self.epoch = 0
        self.step = 0
        self.best_score = -1.0
        self.best_epoch = -1
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        self.step_losses: list[float] = []
        if ckpt is not None:
            self._restore(ckpt)
        self.writer = self._open_writer(len(train_images)) if self.is_main else None

    def _open_writer(self, n_images: int) -> SummaryWriter:
        """Rank 0's TensorBoard writer in ``out_dir/tb`` (a resumed run's later steps are purged); logs the setup."""
        from torch.utils.tensorboard import SummaryWriter

        self.cfg.out_dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(self.cfg.out_dir / "tb"), purge_step=self.step or None)
        log.info("training %d captions (%d images), vocab %d, %d batches/epoch on %d process(es), device %s",
                 len(self.data), n_images, len(self.vocab), len(self.batches), self.world, self.device)
        return writer

    # --- one epoch ------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.cfg.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def validation_features(self, image_ids: list[str]) -> np.ndarray:
        """Validation features: from the cache, or cached trunk activations through the fine-tuned top blocks."""
        if self.encoder is None:
            return self.cache.get(image_ids)
        with torch.no_grad(), self._autocast():
            trunk = torch.from_numpy(self.cache.get(image_ids)).to(self.device)
            return self.encoder.top(trunk, self.cfg.fine_tune_blocks).float().cpu().numpy()

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total loss to minimise, cross-entropy alone, attention entropy) for one length-sorted batch."""
        feats = batch.features.to(self.device, non_blocking=True)
        if self.encoder_top is not None:
            with self._autocast():
                feats = self.encoder_top(feats)
        caps = batch.captions.to(self.device, non_blocking=True)
        lengths = batch.lengths.to(self.device)
        inputs = caps
        if self.cfg.word_dropout > 0:  # the previous word is sometimes unknown: lean on the image, not the words
            hide = torch.rand(caps.shape, device=caps.device) < self.cfg.word_dropout
            hide[:, 0] = False  # <start> stays
            inputs = caps.masked_fill(hide & (caps != PAD), UNK)
        if self.cfg.feature_dropout > 0:
            feats = F.dropout(feats, self.cfg.feature_dropout)
        if self.cfg.global_dropout > 0:
            feats = hide_global(feats, self.decoder.cfg.shared_dim, self.cfg.global_dropout)
        with self._autocast():
            logits, alphas = self.train_module(feats, inputs, lengths)
        targets = caps[:, 1:]
        mask = targets != PAD
        ce = F.cross_entropy(logits[mask].float(), targets[mask], label_smoothing=self.cfg.label_smoothing)
        total = ce
        if self.cfg.alpha_c > 0:
            total = total + self.cfg.alpha_c * doubly_stochastic_penalty(alphas.float(), lengths)
        entropy = attention_entropy(alphas.float(), lengths)
        if self.cfg.attention_entropy_weight > 0:
            total = total + self.cfg.attention_entropy_weight * entropy
        return total, ce, entropy.detach()

    def train_epoch(self) -> dict[str, float]:
        cfg = self.cfg
        self.train_module.train()
        self.batches.set_epoch(self.epoch)
        n_batches = len(self.batches)
        if cfg.max_steps_per_epoch:
            n_batches = min(n_batches, cfg.max_steps_per_epoch)
        bar = tqdm(total=n_batches, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="batch", dynamic_ncols=True,
                   disable=not (self.is_main and cfg.progress),
                   mininterval=0.2 if sys.stderr.isatty() else 30.0)  # a log file gets a line every 30 s
        t0 = time.perf_counter()
        seen = 0
        ce_sum = 0.0
        entropy_sum = 0.0
        ema = None
        for i, idx in enumerate(self.batches):
            if i >= n_batches:
                break
            flip = self.batches.flips(len(idx), i) if self.data.flipped is not None else None
            batch = self.data.batch(idx, flip)
            total, ce, entropy = self.loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            ce_v = float(ce.detach())
            self.step_losses.append(ce_v)
            ce_sum += ce_v
            entropy_sum += float(entropy)
            seen += batch.size
            ema = ce_v if ema is None else 0.98 * ema + 0.02 * ce_v
            rate = seen * self.world / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{ema:.3f}", cap_s=f"{rate:.0f}", refresh=False)
            bar.update(1)
            if self.writer is not None and self.step % 20 == 0:
                self.writer.add_scalar("train/loss", ce_v, self.step)
                self.writer.add_scalar("train/total_loss", float(total.detach()), self.step)
                self.writer.add_scalar("train/grad_norm", float(grad_norm), self.step)
                self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
        bar.close()
        elapsed = time.perf_counter() - t0
        steps = max(1, min(n_batches, len(self.batches)))
        return {"loss": ce_sum / steps, "attention_entropy": entropy_sum / steps,
                "captions_per_s": seen * self.world / elapsed, "train_seconds": elapsed}

    # --- validation -------------------------------------------------------------------------------------------
    def validate(self) -> dict[str, float | None]:
        """Beam-search captions for the validation images, scored with BLEU and CIDEr (pycocoevalcap)."""
        images = self.val_images[: self.cfg.val_limit] if self.cfg.val_limit else self.val_images
        report = evaluate_images(self.decoder, self.validation_features, images, self.vocab, self.cfg.beam_size,
                                 metrics=("BLEU", "CIDEr"), split=self.cfg.val_split, device=self.device,
                                 progress=self.cfg.progress)
        log.info("epoch %d validation: %s", self.epoch, report.summary())
        for i, (k, v) in enumerate(report.captions.items()):
            if i >= 3:
                break
            log.info("  %s: %s", k, v)
        return report.scores

    # --- checkpoints ------------------------------------------------------------------------------------------
    def checkpoint_fields(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "decoder_config": self.decoder.cfg.to_dict(),
            "encoder_arch": self.cfg.encoder,
            "encoder_fine_tuned": self.encoder is not None,
            "vocab": self.vocab.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "train_config": self.cfg.to_dict(),
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.epoch, self.step = ckpt["epoch"], ckpt["step"]
        self.best_score, self.best_epoch = ckpt["best_score"], ckpt["best_epoch"]
        self.bad_epochs, self.history = ckpt["bad_epochs"], ckpt["history"]
        set_rng_state(ckpt["rng"])
        if self.rank:  # each rank keeps its own dropout stream, as in an uninterrupted run
            torch.manual_seed(self.cfg.seed + self.rank + 1000 * self.epoch)
        log.info("resumed from %s at epoch %d, step %d (best CIDEr %.4f)", self.cfg.resume, self.epoch, self.step,
                 self.best_score)

    # --- the whole run ---------------------------------------------------------------------------------------
    def run_epoch(self) -> bool:
        """Train one epoch, validate, log, checkpoint (last, and best when better); True when it is time to stop."""
        cfg = self.cfg
        stats = self.train_epoch()
        stop = False
        if self.is_main:
            scores = self.validate() if cfg.val_limit != 0 and self.val_images else {}
            score = scores.get("CIDEr") or 0.0
            improved = score > self.best_score or not scores
            self.epoch += 1
            if improved:
                self.best_score, self.best_epoch, self.bad_epochs = score, self.epoch, 0
            else:
                self.bad_epochs += 1
            record = {"epoch": self.epoch, "step": self.step, **stats, **{f"val_{k}": v for k, v in scores.items()}}
            self.history.append(record)
            assert self.writer is not None
            for k, v in record.items():
                if isinstance(v, float):
                    self.writer.add_scalar(f"epoch/{k}", v, self.epoch)
            self.writer.flush()
            fields = self.checkpoint_fields()
            save_checkpoint(cfg.out_dir / "last.pt", **fields)
            if improved:
                save_checkpoint(cfg.out_dir / "best.pt", **fields)
            if cfg.keep_epochs:
                save_checkpoint(cfg.out_dir / f"epoch{self.epoch}.pt", **fields)
            (cfg.out_dir / "history.json").write_text(json.dumps(self.history, indent=1))
            log.info("epoch %d: loss %.4f, %.0f captions/s, val CIDEr %s (best %.4f at epoch %d)%s",
                     self.epoch, stats["loss"], stats["captions_per_s"], scores.get("CIDEr"), self.best_score,
                     self.best_epoch, "" if improved else f", {self.bad_epochs} without improvement")
            stop = scores != {} and self.bad_epochs >= cfg.patience
        else:
            self.epoch += 1
        if self.world > 1:
            flag = torch.tensor([1 if stop else 0], device=self.device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        if stop:
            log.info("early stop: no better validation CIDEr for %d epochs", cfg.patience)
        return stop

    def fit(self) -> TrainResult:
        """Epochs until ``cfg.epochs`` or early stopping."""
        epochs_run = 0
        while self.epoch < self.cfg.epochs:
            epochs_run += 1
            if self.run_epoch():
                break
        if self.writer is not None:
            self.writer.close()
        return TrainResult(self.best_score, self.best_epoch, epochs_run, self.step_losses, self.history)


# --------------------------------------------------------------------------------------------------------------
# from data sources to a trained model
# --------------------------------------------------------------------------------------------------------------


def prepare_features(cfg: TrainConfig, images: list[CaptionedImage]) -> tuple[FeatureCache, FeatureCache | None]:
    """The feature cache(s) for ``images`` under ``cache_dir/<encoder>`` (built on rank 0 if missing)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    paths = [im.path for im in images]
    name, arch, encoder = cfg.encoder, cfg.encoder, None
    if cfg.fine_tune_blocks > 0:  # what enters the top blocks, computed once by the pretrained layers below them
        name = arch = f"{cfg.encoder}_below_top{cfg.fine_tune_blocks}"
        if rank == 0:
            encoder = EncoderTrunk(Encoder(cfg.encoder, pretrained=True), cfg.fine_tune_blocks)
    wanted = [(cfg.cache_dir / name, False)]
    if cfg.flip_augment:
        wanted.append((cfg.cache_dir / f"{name}_flip", True))
    caches: list[FeatureCache] = []
    for out_dir, flip in wanted:
        if rank == 0:
            caches.append(FeatureCache.build(out_dir, paths, arch=arch, flip=flip, encoder=encoder))
        if world > 1:
            if not dist.is_initialized():
                setup_distributed(cfg.device)
            dist.barrier()
            if rank != 0:
                caches.append(FeatureCache.open(out_dir))
    return caches[0], (caches[1] if len(caches) > 1 else None)


def train(cfg: TrainConfig, sources: list[DataSource]) -> TrainResult:
    """Read the sources, cache features, train, validate and checkpoint into ``cfg.out_dir``."""
    items = read_sources(sources)
    # train on every image outside the validation and test splits (Flickr8k's 91 images in no split included)
    train_images = [im for im in items if im.split not in (cfg.val_split, "test")]
    val_images = sorted((im for im in items if im.split == cfg.val_split), key=lambda im: im.image_id)
    if not train_images:
        raise SystemExit(f"no training images in {[s.paths[0] for s in sources]}")
    if not val_images and cfg.val_limit != 0:
        log.warning("no images in split %r: validation (and early stopping) is off", cfg.val_split)
    cache, flipped = prepare_features(cfg, items)
    trainer = Trainer(cfg, train_images, val_images, cache, flipped)
    return trainer.fit()
