"""Training examples from cached features: one row per caption, batched by caption length.

Why batches of one length: the decoder unrolls one LSTM step per word, so a batch costs as many steps as its
longest caption. Grouping captions of the same length means every step of every batch does useful work, with
no padding and no masking waste (the common recipe pads to a fixed length and computes on the padding).
Why features from the cache: the encoder is frozen, so each image is encoded once per dataset, not once per
caption per epoch; a batch is a gather of fp16 rows from a memory-mapped array.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captionbot.training.data import PAD, CaptionedImage, Vocab, tokenize
from captionbot.training.features import FeatureCache

log = logging.getLogger(__name__)

# When an image is mirrored, so are its directions.
FLIP_WORDS = {"left": "right", "right": "left"}


@dataclass
class Batch:
    features: torch.Tensor  # [B, P, C] float32
    captions: torch.Tensor  # [B, T] int64: <start> w1 … wn <end> (<pad>)
    lengths: torch.Tensor  # [B] tokens incl. <start>/<end>, sorted descending
    images: list[Path]  # [B] the image of each caption

    @property
    def size(self) -> int:
        return self.captions.size(0)


class CaptionFeatureDataset:
    """Every caption of the given images, encoded, with the cache row of its image's features.

    Captions longer than ``max_len`` words are left out (the model would otherwise learn to stop mid-sentence).
    With ``flipped`` (a cache of horizontally mirrored images), each caption gets, per epoch, the mirrored
    features with probability 1/2 and its words left/right swapped.
    """

    def __init__(
        self,
        images: list[CaptionedImage],
        vocab: Vocab,
        cache: FeatureCache,
        max_len: int,
        flipped: FeatureCache | None = None,
    ) -> None:
        self.cache = cache
        self.flipped = flipped
        rows, tokens, tokens_flipped, skipped = [], [], [], 0
        self.paths: list[Path] = []
        for item in images:
            for text in item.captions:
                words = tokenize(text)
                if not words or len(words) > max_len:
                    skipped += 1
                    continue
                rows.append(cache.index[item.image_id])
                self.paths.append(item.path)
                tokens.append(vocab.encode(words, max_len))
                tokens_flipped.append(vocab.encode([FLIP_WORDS.get(w, w) for w in words], max_len))
        if skipped:
            log.info("left out %d captions that are empty or longer than %d words", skipped, max_len)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.lengths = np.asarray([len(t) for t in tokens], dtype=np.int64)
        T = int(self.lengths.max()) if len(tokens) else 2
        self.tokens = np.full((len(tokens), T), PAD, dtype=np.int64)
        self.tokens_flipped = np.full((len(tokens), T), PAD, dtype=np.int64)
        for i, (t, tf) in enumerate(zip(tokens, tokens_flipped, strict=True)):
            self.tokens[i, : len(t)] = t
            self.tokens_flipped[i, : len(tf)] = tf
        if flipped is not None:
            self.flipped_rows = np.asarray([flipped.index[name] for name in _names_of(cache, self.rows)])

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, idx: np.ndarray, flip: np.ndarray | None = None) -> Batch:
        """The captions ``idx`` (any order) as a length-sorted batch; ``flip`` [len(idx)] bool picks mirrored ones."""
        order = np.argsort(-self.lengths[idx], kind="stable")
        idx = idx[order]
        T = int(self.lengths[idx].max())
        tokens = self.tokens[idx, :T].copy()
        if flip is not None and self.flipped is not None and flip.any():
            flip = flip[order]
            feats = np.empty((len(idx), *self.cache.features.shape[1:]), dtype=np.float16)
            feats[~flip] = self.cache.features[self.rows[idx[~flip]]]
            feats[flip] = self.flipped.features[self.flipped_rows[idx[flip]]]
            tokens[flip] = self.tokens_flipped[idx[flip], :T]
        else:
            feats = self.cache.features[self.rows[idx]]
        return Batch(
            features=torch.from_numpy(np.asarray(feats)).float(),
            captions=torch.from_numpy(tokens),
            lengths=torch.from_numpy(self.lengths[idx].copy()),
            images=[self.paths[i] for i in idx],
        )


def _names_of(cache: FeatureCache, rows: np.ndarray) -> list[str]:
    by_row = {r: n for n, r in cache.index.items()}
    return [by_row[int(r)] for r in rows]


class LengthBucketBatches:
    """Per epoch: captions grouped by length, shuffled within each length, cut into batches, batches shuffled.

    The order depends only on (seed, epoch), so every DDP rank computes the same list and takes its own share
    (``rank::world_size``, cut to the same count on every rank so no rank waits for a step the others skip).
    """

    def __init__(
        self, lengths: np.ndarray, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches: list[np.ndarray] = []
        for length in np.unique(self.lengths):
            members = np.flatnonzero(self.lengths == length)
            rng.shuffle(members)
            batches.extend(np.array_split(members, math.ceil(len(members) / self.batch_size)))
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def __len__(self) -> int:
        n = sum(math.ceil(c / self.batch_size) for c in np.unique(self.lengths, return_counts=True)[1])
        return n // self.world_size

    def __iter__(self) -> Iterator[np.ndarray]:
        batches = self._all_batches()
        per_rank = len(batches) // self.world_size
        yield from batches[self.rank :: self.world_size][:per_rank]

    def flips(self, n: int, batch_no: int) -> np.ndarray:
        """Which captions of batch ``batch_no`` this epoch use mirrored features (deterministic per epoch)."""
        return np.random.default_rng([self.seed, self.epoch, batch_no, 1]).random(n) < 0.5
