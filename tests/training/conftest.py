"""Fixtures for the training tests: a handful of real Flickr8k images and their real encoder features."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from captionbot.training.data import CaptionedImage, read_flickr8k
from captionbot.training.features import FeatureCache


@pytest.fixture(scope="session")
def few_images(data_dir: Path) -> list[CaptionedImage]:
    """12 Flickr8k training images (the first by name), each with its 5 human captions."""
    items = sorted((im for im in read_flickr8k(data_dir / "flickr8k") if im.split == "train"),
                   key=lambda im: im.image_id)
    return items[:12]


@pytest.fixture(scope="session")
def few_features(few_images: list[CaptionedImage], tmp_path_factory: pytest.TempPathFactory) -> FeatureCache:
    """The pretrained EfficientNet-Lite0's region features of ``few_images`` (fp16 cache, torch engine)."""
    return FeatureCache.build(tmp_path_factory.mktemp("features") / "efficientnet_lite0",
                              [im.path for im in few_images], engine="torch")


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on this shared 2-core machine, two threads were 10x slower for these small models."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
