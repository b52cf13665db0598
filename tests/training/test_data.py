"""Caption files that cover more images than the folder holds: the missing ones are skipped and counted."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from captionbot.training.data import read_coco, read_flickr8k, read_karpathy


def partial_image_folder(tmp_path: Path, data_dir: Path, names: list[str]) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in names:
        shutil.copy(data_dir / "flickr8k" / "images" / name, folder / name)
    return folder


def test_flickr8k_reader_skips_missing_images_and_says_how_many(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = data_dir / "flickr8k"
    root = tmp_path / "flickr8k"
    root.mkdir()
    for f in ("Flickr8k.token.txt", "Flickr_8k.trainImages.txt", "Flickr_8k.devImages.txt"):
        (root / f).symlink_to(src / f)
    train = (src / "Flickr_8k.trainImages.txt").read_text().split()[:3]
    dev = (src / "Flickr_8k.devImages.txt").read_text().split()[:2]
    partial_image_folder(root, data_dir, train + dev)
    total = len({line.split("#")[0] for line in (src / "Flickr8k.token.txt").read_text().splitlines() if line})
    with caplog.at_level(logging.WARNING):
        items = read_flickr8k(root)
    assert sorted(im.image_id for im in items) == sorted(train + dev)
    assert {im.image_id: im.split for im in items} == {**dict.fromkeys(train, "train"), **dict.fromkeys(dev, "dev")}
    assert all(len(im.captions) == 5 for im in items)
    assert f"{total - 5} of {total} captioned images are not in the image folder" in caplog.text


def test_coco_and_karpathy_readers_skip_missing_images(
    data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = sorted(p.name for p in (data_dir / "flickr8k" / "images").iterdir())[:3]
    folder = partial_image_folder(tmp_path, data_dir, names[:2])  # the third image is missing
    coco = {"images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
            "annotations": [{"image_id": i, "caption": f"caption {k} of {n}"} for i, n in enumerate(names)
                            for k in range(2)]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    karpathy = {"images": [{"filename": n, "split": s, "sentences": [{"raw": "A dog."}, {"raw": "A cat."}]}
                           for n, s in zip(names, ("train", "val", "restval"), strict=True)]}
    (tmp_path / "karpathy.json").write_text(json.dumps(karpathy))
    with caplog.at_level(logging.WARNING):
        coco_items = read_coco(tmp_path / "coco.json", folder)
        karpathy_items = read_karpathy(tmp_path / "karpathy.json", folder)
    assert [im.image_id for im in coco_items] == names[:2]
    assert coco_items[0].captions == [f"caption 0 of {names[0]}", f"caption 1 of {names[0]}"]
    assert [(im.image_id, im.split) for im in karpathy_items] == [(names[0], "train"), (names[1], "dev")]
    assert caplog.text.count("1 of 3 captioned images are not in the image folder") == 2
