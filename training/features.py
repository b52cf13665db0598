"""Feature cache: run the frozen encoder once per image and keep the region features on disk.

Why: with a frozen encoder, the features of an image never change, so encoding it once per caption per epoch
(five captions, tens of epochs) is pure waste. The cache is fp16 and memory-mapped ([N, P, C] in
``features.f16.npy`` plus ``index.json``), so a training process pages in only what a batch needs.

Images are preprocessed with ``captionbot.inference.preprocess`` — the very code the production runtime uses — and, by
default, encoded with the encoder exported to ONNX and run on onnxruntime (about 18x faster than torch eager on
this CPU; ``engine="torch"`` runs the same network in torch, channels_last).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from captionbot.inference.preprocess import decode_image, to_array
from captionbot.training.model import Encoder, EncoderTrunk
from tqdm import tqdm

log = logging.getLogger(__name__)

FEATURES_FILE = "features.f16.npy"
INDEX_FILE = "index.json"


def _load_pixels(path: Path, enc: Encoder | EncoderTrunk, flip: bool) -> np.ndarray:
    img = decode_image(path.read_bytes(), size=(enc.input_size, enc.input_size))
    x = to_array(img, (enc.input_size, enc.input_size), enc.mean, enc.std)
    return x[:, :, ::-1].copy() if flip else x


def _batches(paths: list[Path], enc: Encoder | EncoderTrunk, batch_size: int, flip: bool) -> Iterator[np.ndarray]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        for i in range(0, len(paths), batch_size):
            yield np.stack(list(pool.map(lambda p: _load_pixels(p, enc, flip), paths[i : i + batch_size])))


class _OnnxEncoder:
    """The encoder exported to a temporary ONNX file and run on onnxruntime."""

    def __init__(self, enc: Encoder | EncoderTrunk, threads: int = 0) -> None:
        import onnxruntime as ort

        self._tmp = tempfile.TemporaryDirectory()
        path = Path(self._tmp.name) / "encoder.onnx"
        dummy = torch.zeros(1, 3, enc.input_size, enc.input_size)
        torch.onnx.export(enc.eval(), (dummy,), str(path), input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, opset_version=17,
                          dynamo=False)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"images": x})[0]


class FeatureCache:
    """fp16 memory-mapped region features [N, P, C] with an image-name -> row index."""

    def __init__(self, out_dir: Path, features: np.ndarray, index: dict[str, int], meta: dict) -> None:
        self.out_dir = out_dir
        self.features = features
        self.index = index
        self.meta = meta

    @classmethod
    def build(
        cls,
        out_dir: Path,
        images: list[Path],
        arch: str = "efficientnet_lite0",
        batch_size: int = 32,
        engine: str = "onnx",
        flip: bool = False,
        encoder: Encoder | EncoderTrunk | None = None,
    ) -> FeatureCache:
        """Encode ``images`` (deduplicated by name) into ``out_dir``; reuse a complete cache that is already there."""
        out_dir = Path(out_dir)
        unique = list({p.name: p for p in images}.values())
        if (out_dir / INDEX_FILE).is_file():
            cache = cls.open(out_dir)
            if cache.meta.get("arch") == arch and cache.meta.get("flip", False) == flip and all(
                p.name in cache.index for p in unique
            ):
                return cache
        enc = (encoder or Encoder(arch, pretrained=True)).eval()
        run = _OnnxEncoder(enc) if engine == "onnx" else None
        if run is None:
            enc = enc.to(memory_format=torch.channels_last)
        out_dir.mkdir(parents=True, exist_ok=True)
        P, C = enc.grid * enc.grid, enc.channels
        feats = np.lib.format.open_memmap(out_dir / FEATURES_FILE, mode="w+", dtype=np.float16,
                                          shape=(len(unique), P, C))
        row = 0
        with tqdm(total=len(unique), desc=f"encoding {arch}{' (flipped)' if flip else ''}", unit="img") as bar:
            for x in _batches(unique, enc, batch_size, flip):
                if run is not None:
                    f = run(x)
                else:
                    with torch.inference_mode():
                        xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
                        f = enc(xt).float().numpy()
                feats[row : row + len(x)] = f.astype(np.float16)
                row += len(x)
                bar.update(len(x))
        feats.flush()
        meta = {"arch": arch, "flip": flip, "engine": engine, "count": len(unique)}
        index = {p.name: i for i, p in enumerate(unique)}
        (out_dir / INDEX_FILE).write_text(json.dumps({"meta": meta, "index": index}))
        log.info("feature cache %s: %d images, [%d, %d] each", out_dir, len(unique), P, C)
        return cls.open(out_dir)

    @classmethod
    def open(cls, out_dir: Path) -> FeatureCache:
        out_dir = Path(out_dir)
        doc = json.loads((out_dir / INDEX_FILE).read_text())
        feats = np.load(out_dir / FEATURES_FILE, mmap_mode="r")
        return cls(out_dir, feats, doc["index"], doc.get("meta", {}))

    def get(self, names: list[str]) -> np.ndarray:
        """float32 features [len(names), P, C] for the named images."""
        rows = [self.index[n] for n in names]
        return np.asarray(self.features[rows], dtype=np.float32)
