"""Every training setting, written once: its type, default, and the ``captionbot train`` option it becomes.

No torch here: ``captionbot --help`` builds the ``train`` options from these fields without loading it. The fields
are in the order the options are listed (by group); ``dataclass_options`` turns them into argparse options.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from captionbot.training.dataclass_options import setting

DATA, MODEL, OPTIMISATION = "data", "model", "optimisation"  # option groups of `captionbot train --help`


@dataclass(kw_only=True)
class TrainConfig:
    # --- data (the sources themselves are the command's own --flickr8k/--coco/--karpathy options) -------------
    val_split: str = setting("dev", group=DATA, help="split to validate on (default: dev; Karpathy val = dev)")
    val_limit: int | None = setting(  # 0: no validation (every epoch counts as best)
        None, group=DATA, help="validate on the first N images of the split (default: all; 0 turns validation off)")
    min_count: int = setting(5, group=DATA, help="words seen fewer times become <unk> (default: 5)")
    max_len: int = setting(22, group=DATA, help="longest caption in words; longer ones are left out")
    flip_augment: bool = setting(
        False, group=DATA, help="also train on mirrored images (second feature cache), with left/right swapped")

    # --- model ---------------------------------------------------------------------------------------------
    encoder: str = setting("efficientnet_lite0", group=MODEL,
                           help="efficientnet_lite0 (default), efficientnet_lite1/2, resnet101, vgg16")
    cache_dir: Path = setting(Path("cache"), group=MODEL,
                              help="feature cache folder; one cache per encoder inside (default: ./cache)")
    embed_dim: int = setting(512, group=MODEL, flag="--embed", help="word embedding size (default: 512)")
    hidden_dim: int = setting(512, group=MODEL, flag="--hidden", help="LSTM size (default: 512)")
    attention_dim: int = setting(512, group=MODEL, flag="--attention", help="attention MLP size (default: 512)")
    dropout: float = setting(0.5, group=MODEL, help="dropout before the output layer (default: 0.5)")
    attention_temperature: float | None = setting(
        None, group=MODEL, metavar="T",
        help="attend with softmax(scores / T) (issue 19: T < 1 sharpens the map the decoder uses and the heatmap "
             "shows); given with --init-from it replaces the checkpoint's T (default: the checkpoint's, else 1)")
    no_shared_context: bool = setting(
        False, group=MODEL,
        help="the global vector of efficientnet_lite0_local reaches the initial state and the attention scores, "
             "not each step's context: words must find their evidence in the attended cells (issue 19); given "
             "with --init-from it applies to the checkpoint's decoder")
    fine_tune_blocks: int = setting(
        0, group=MODEL, help="train the encoder's top N blocks too, on cached activations of the blocks below "
                             "(default 0: frozen encoder, cached features)")
    encoder_lr_scale: float = setting(
        0.1, group=MODEL, help="with --fine-tune-blocks: encoder learning rate = --lr x this (default 0.1)")

    # --- optimisation ------------------------------------------------------------------------------------------
    out_dir: Path = setting(group=OPTIMISATION, flag="--out", help="output folder for checkpoints and logs")
    epochs: int = setting(20, group=OPTIMISATION, help="maximum number of epochs (default: 20)")
    batch_size: int = setting(64, group=OPTIMISATION, help="captions per batch (per process; default: 64)")
    lr: float = setting(4e-4, group=OPTIMISATION, help="peak AdamW learning rate (default: 4e-4)")
    weight_decay: float = setting(  # on weight matrices only
        0.01, group=OPTIMISATION, help="AdamW weight decay (default: 0.01)")
    warmup_steps: int = setting(200, group=OPTIMISATION, help="linear warm-up steps before cosine decay")
    grad_clip: float = setting(5.0, group=OPTIMISATION, help="clip the gradient norm to this (default: 5)")
    alpha_c: float = setting(  # lambda in Xu et al.
        1.0, group=OPTIMISATION,
        help="weight of the doubly-stochastic attention regulariser (default: 1.0; 0 turns it off)")
    attention_entropy_weight: float = setting(
        0.0, group=OPTIMISATION, flag="--attention-entropy", metavar="W",
        help="add W x the attention maps' mean normalised entropy to the loss (issue 19: sharper heatmaps; "
             "default 0: off)")
    label_smoothing: float = setting(0.0, group=OPTIMISATION, help="cross-entropy label smoothing (default: 0)")
    word_dropout: float = setting(
        0.0, group=OPTIMISATION, metavar="P",
        help="replace teacher-forced input words by <unk> with probability P (default 0)")
    feature_dropout: float = setting(
        0.0, group=OPTIMISATION, metavar="P", help="dropout on the region features the decoder reads (default 0)")
    global_dropout: float = setting(
        0.0, group=OPTIMISATION, metavar="P",
        help="hide the global vector of efficientnet_lite0_local(7) from a whole caption with probability P, so "
             "the decoder learns to find words in the attended cells too (issue 19; default 0)")
    bf16: bool = setting(
        False, group=OPTIMISATION, help="bfloat16 autocast (about 2x faster on CPUs with AVX512-BF16)")
    beam_size: int = setting(
        3, group=OPTIMISATION, flag="--beam", help="beam size for validation captions (default: 3)")
    keep_epochs: bool = setting(
        False, group=OPTIMISATION, help="also keep OUT/epochN.pt for every epoch (for `captionbot average`)")
    patience: int = setting(
        5, group=OPTIMISATION, help="stop after this many epochs without a better validation CIDEr (default: 5)")
    seed: int = setting(0, group=OPTIMISATION, help="random seed (default: 0)")
    device: str = setting("auto", group=OPTIMISATION, help="auto (cuda when available), cpu, cuda, cuda:1 …")
    threads: int | None = setting(
        None, group=OPTIMISATION,
        help="torch CPU threads (default: all cores; on a busy machine 1 can be several times faster)")
    resume: Path | None = setting(
        None, group=OPTIMISATION, help="continue exactly from a checkpoint (OUT/last.pt)")
    init_from: Path | None = setting(
        None, group=OPTIMISATION,
        help="start from this checkpoint's weights and vocabulary, with a new optimiser and schedule "
             "(e.g. fine-tune the encoder's top blocks of a trained model)")
    max_steps_per_epoch: int | None = setting(  # for quick runs and tests
        None, group=OPTIMISATION, help=argparse.SUPPRESS)
    progress: bool = setting(True, group=OPTIMISATION, flag="--no-progress", help="no progress bar (logs only)")

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
