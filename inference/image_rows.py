"""The decoder step with the image features gathered inside the graph: per-image features plus a row -> image
index, instead of the features tiled per beam row.

The batched beam search (``inference/beam_search.py``) runs one decoder row per live hypothesis, so every row needs
its image's features ``[P, C]`` and attention projection ``[P, A]``. Gathered in numpy, that is a fresh
``[N, P, C]`` array (N rows: up to 96 for a batch of 32 at beam 3, 24 MB for the default encoder) each time the
search's rows change, which they do at most steps as images finish at different times. Here the bundle's step graph
gets, at load time, a ``Gather`` in front of its ``features`` and ``att_proj`` inputs (:func:`gather_step_graph`):
it takes ``image_features`` ``[B, P, C]`` and ``image_att_proj`` ``[B, P, A]`` once per batch and ``row_image``
``[N]``, and gathers the rows into onnxruntime's own reused buffers. What the step computes from them is the same
graph as before, so its outputs are bit for bit the tiled step's
(``tests/inference/test_served_captions_unchanged.py``).

Where the step reads ``features`` only through slices within each row (a bundle whose cells carry shared channels,
the global vector of issue 19's local grids, which the step reads as ``features[:, :, :L]`` and
``features[:, 0, L:]``), the gather goes after those slices instead: the step then copies each row's local cells
and one copy of the vector, not every cell's copy of it (196 x 1,392 floats a row for the 14×14 grid, 4.4× the
shipped grid's, which made its steps 1.8× slower). Selecting and gathering commute, so the outputs are the same
bit for bit (``tests/export/test_shared_channel_gather.py``).

The search needs no change for this: it only ever selects rows, and :class:`ImageRows` is an array of per-image
rows that selects by composing the index, never copying. ``Bundle.step`` feeds one to the gathering graph as
(per-image array, index); a plain array still works (the index is then 0..N-1), so old callers and other step
functions (PyTorch's in ``training/decode.py``) are untouched. A bundle whose step graph lacks the expected inputs
(or uses the new names already) keeps its graph as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from captionbot.inference import onnx_wire as wire

FEATURES, ATT_PROJ = "features", "att_proj"  # the step graph's inputs per row (docs/contracts.md)
IMAGE_FEATURES, IMAGE_ATT_PROJ, ROW_IMAGE = "image_features", "image_att_proj", "row_image"


def gather_step_graph(model: bytes, after_slices: bool = True) -> bytes | None:
    """The serialised step graph ``model`` with inputs ``image_features``, ``image_att_proj`` (one row per image)
    and ``row_image`` (int64, one per decoder row) in place of ``features`` and ``att_proj``, which two ``Gather``
    nodes now compute; None where the graph does not have those two inputs as rank-3 tensors or already uses one
    of the new names. ``after_slices``: where the graph reads ``features`` only through slices within rows, gather
    those slices' outputs instead (False: always the whole features, as before; for the bench that compares)."""
    graph, _, _ = wire.graph_of(model)
    dims = {name: wire.input_dims(graph, name) for name in (FEATURES, ATT_PROJ)}
    if any(d is None or len(d) != 3 for d in dims.values()):
        return None
    if wire.names_in_graph(graph) & {IMAGE_FEATURES, IMAGE_ATT_PROJ, ROW_IMAGE}:
        return None
    add = [wire.tensor_value(IMAGE_FEATURES, wire.FLOAT, ["images", *(dims[FEATURES] or [])[1:]]),
           wire.tensor_value(IMAGE_ATT_PROJ, wire.FLOAT, ["images", *(dims[ATT_PROJ] or [])[1:]]),
           # the rows' dimension keeps the graph's own name for it, so that shape inference still sees the gathered
           # features as long as h and c, and the optimiser fuses exactly what it fused before (with a new name:
           # log-probabilities 1e-6 off)
           wire.tensor_value(ROW_IMAGE, wire.INT64, [(dims[FEATURES] or ["rows"])[0] or "rows"])]
    proj = [wire.node("Gather", [IMAGE_ATT_PROJ, ROW_IMAGE], [ATT_PROJ], "row_gather_att_proj")]
    if after_slices and _only_sliced_within_rows(graph, FEATURES):
        return wire.replace_inputs(model, {FEATURES, ATT_PROJ}, add, proj, edit=_gather_after_slice)
    gathers = [wire.node("Gather", [IMAGE_FEATURES, ROW_IMAGE], [FEATURES], "row_gather_features"), *proj]
    return wire.replace_inputs(model, {FEATURES, ATT_PROJ}, add, gathers)


def _within_rows(graph: bytes, node: bytes) -> bool:
    """Whether ``node`` (a reader of the rank-3 ``features``) only selects along the cell or channel axes, so that
    gathering rows after it gives what gathering before it does: a ``Slice`` whose axes are constants other than 0,
    or a ``Gather`` of ``features`` along axis 1 or 2."""
    inputs = wire.strings(node, wire.NODE_INPUT)
    if wire.op_type(node) == "Slice" and inputs[0] == FEATURES and FEATURES not in inputs[1:] and len(inputs) >= 4:
        axes = wire.constant_ints(graph, inputs[3])
        return axes is not None and len(axes) > 0 and all(a % 3 != 0 for a in axes)
    if wire.op_type(node) == "Gather" and inputs[0] == FEATURES and FEATURES not in inputs[1:]:
        return (wire.int_attribute(node, "axis") or 0) % 3 != 0
    return False


def _only_sliced_within_rows(graph: bytes, name: str) -> bool:
    """Whether every node that reads ``name`` is one :func:`_within_rows` accepts (and some node reads it)."""
    readers = [n for n in wire.nodes(graph) if name in wire.strings(n, wire.NODE_INPUT)]
    return bool(readers) and all(_within_rows(graph, n) for n in readers)


def _gather_after_slice(node: bytes) -> list[bytes]:
    """A reader of ``features`` that slices within rows reads the per-image features instead, and its output is
    then gathered per row: with shared channels (a global vector repeated in every cell, ``shared_dim``) the step
    copies only the parts it reads, not every cell's copy of the vector, at each step."""
    if FEATURES not in wire.strings(node, wire.NODE_INPUT):
        return [node]
    (out,) = wire.strings(node, wire.NODE_OUTPUT)
    per_image = f"{out}/per_image"
    return [wire.renamed(node, {FEATURES: IMAGE_FEATURES}, {out: per_image}),
            wire.node("Gather", [per_image, ROW_IMAGE], [out], f"row_gather_{out}")]


class ImageRows:
    """Rows of a per-image array: row ``i`` is ``images[rows[i]]``. Indexing selects rows by composing ``rows`` (no
    copy); anything else sees the gathered array (``np.asarray``)."""

    __slots__ = ("images", "rows")

    def __init__(self, images: np.ndarray, rows: np.ndarray | None = None) -> None:
        self.images = images
        self.rows = np.arange(len(images), dtype=np.int64) if rows is None else rows

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> ImageRows:
        return ImageRows(self.images, np.asarray(self.rows[index], dtype=np.int64))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.images[self.rows]
        return out if dtype is None else out.astype(dtype, copy=False)


def per_image(features: Any, att_proj: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image_features, image_att_proj, row_image) for the gathering step from what the search passes: two
    :class:`ImageRows` over the same rows as they are; plain row arrays with the index 0..N-1."""
    if isinstance(features, ImageRows) and isinstance(att_proj, ImageRows) and (
            features.rows is att_proj.rows or np.array_equal(features.rows, att_proj.rows)):
        return features.images, att_proj.images, features.rows
    f, a = np.asarray(features), np.asarray(att_proj)
    return f, a, np.arange(len(f), dtype=np.int64)
