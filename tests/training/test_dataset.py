"""Batches of one caption length, each caption once per epoch, disjoint equal shares for DDP ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from captionbot.training.data import CaptionedImage, Vocab, tokenize
from captionbot.training.dataset import CaptionFeatureDataset, LengthBucketBatches
from captionbot.training.features import FeatureCache


def test_every_caption_once_per_epoch_in_batches_without_padding(few_images: list[CaptionedImage],
                                                                   few_features: FeatureCache) -> None:
    vocab = Vocab.build((tokenize(c) for im in few_images for c in im.captions), min_count=1)
    data = CaptionFeatureDataset(few_images, vocab, few_features, max_len=22)
    batches = LengthBucketBatches(data.lengths, batch_size=8, seed=0)
    seen = []
    for idx in batches:
        batch = data.batch(idx)
        assert len(set(batch.lengths.tolist())) == 1  # one length: no step computes on padding
        assert batch.captions.shape[1] == int(batch.lengths[0])
        seen.extend(idx.tolist())
    assert sorted(seen) == list(range(len(data)))
    # the features are the cached rows of each caption's own image
    idx = next(iter(batches))
    batch = data.batch(idx)
    names = [p.name for p in batch.images]
    assert np.array_equal(batch.features.numpy(), few_features.get(names))
    first = [b.tolist() for b in batches]
    batches.set_epoch(1)
    assert [b.tolist() for b in batches] != first


def test_ddp_ranks_get_disjoint_equal_shares() -> None:
    lengths = np.random.default_rng(0).integers(8, 20, size=1000)
    shares = [list(LengthBucketBatches(lengths, 32, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == len(LengthBucketBatches(lengths, 32, 3, 0, 3))
    flat = [i for s in shares for b in s for i in b.tolist()]
    assert len(flat) == len(set(flat)) > 900


def test_mirrored_images_get_left_and_right_swapped(few_images: list[CaptionedImage], few_features: FeatureCache,
                                                     tmp_path: Path) -> None:
    image = CaptionedImage(few_images[0].path, ["A dog turns left", "A man on the right"], "train")
    flipped = FeatureCache.build(tmp_path / "flip", [image.path], engine="torch", flip=True)
    vocab = Vocab.build([tokenize(c) for c in image.captions], min_count=1)
    data = CaptionFeatureDataset([image], vocab, few_features, max_len=22, flipped=flipped)
    batch = data.batch(np.array([0, 1]), flip=np.array([True, False]))
    said = {" ".join(vocab.decode(c.tolist()[1:])) for c in batch.captions}
    assert said == {"a dog turns right", "a man on the right"}
    mirrored_row = next(i for i, c in enumerate(batch.captions) if "turns" in vocab.decode(c.tolist()[1:]))
    assert np.array_equal(batch.features[mirrored_row].numpy(), flipped.get([image.image_id])[0])
    assert not np.array_equal(batch.features[1 - mirrored_row].numpy(), batch.features[mirrored_row].numpy())


def test_captions_longer_than_max_len_are_left_out(few_images: list[CaptionedImage],
                                                    few_features: FeatureCache) -> None:
    image = CaptionedImage(few_images[0].path, ["a dog", "a dog runs fast on grass"], "train")
    vocab = Vocab.build([tokenize(c) for c in image.captions], min_count=1)
    data = CaptionFeatureDataset([image], vocab, few_features, max_len=3)
    assert len(data) == 1 and data.lengths.tolist() == [4]
