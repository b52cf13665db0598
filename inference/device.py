"""The decoder with onnxruntime I/O binding: the search's state stays where the model runs (the GPU under CUDA).

Without binding, every decoder step copies the features ``[N,P,C]``, ``att_proj`` ``[N,P,A]`` and ``h``/``c`` from
host to device and back. Here they are uploaded once per batch (``init``) and then live on the device as
:class:`DeviceArray`: each step sends only the word ids ``[N]`` up and brings only what the search reads on the
host down, ``log_probs`` ``[N,V]`` and ``alpha`` ``[N,P]``. When the search drops or reorders hypotheses, the rows
are gathered on the device too (a one-node ``Gather`` graph, :func:`gather_graph`), so the batched beam search
(``inference/beam_search.py``, which only ever selects rows) runs unchanged over device arrays.

Selected by :func:`wants_io_binding`: on when the bundle's first provider is CUDA (``CAPTIONBOT_IO_BINDING`` may
force it on or off). On the CPU provider the same code runs with "device" = host memory, which is how the tests
check that it captions exactly as the plain path (``tests/inference/test_io_binding.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
from captionbot.inference import onnx_wire as wire

from captionbot.formats import SpecialIds

if TYPE_CHECKING:
    from captionbot.inference.beam_search import BeamOptions, Hypothesis
    from captionbot.inference.bundle import Bundle

CUDA = "CUDAExecutionProvider"


def wants_io_binding(providers: list[str], setting: bool | None = None) -> bool:
    """I/O binding for these providers: ``setting`` (``CAPTIONBOT_IO_BINDING``) forces it on or off; None: on for
    CUDA."""
    if setting is not None:
        return setting
    return bool(providers) and providers[0] == CUDA


def gather_graph(rank: int = 2) -> bytes:
    """The serialised ONNX model ``rows = Gather(data, indices, axis=0)`` for float32 ``data`` of ``rank``
    dimensions and int64 ``indices`` [K] (opset 13), written field by field so that the worker needs no ``onnx``
    package (a test checks it with ``onnx.checker``)."""
    dims: list[str | int] = [f"d{i}" for i in range(rank)]
    node = wire.node("Gather", ["data", "indices"], ["rows"], "gather")
    graph = (wire.field(1, node) + wire.field(2, "gather_rows") + wire.field(11, wire.tensor_value("data", 1, dims))
             + wire.field(11, wire.tensor_value("indices", 7, ["k"]))
             + wire.field(12, wire.tensor_value("rows", 1, ["k", *dims[1:]])))
    opset = wire.field(1, "") + wire.field(2, 13)
    return wire.field(1, 8) + wire.field(2, "captionbot") + wire.field(7, graph) + wire.field(8, opset)  # ir_version 8


class Device:
    """Where the bound tensors live (``cuda``:0 or ``cpu``) and the row gatherer that runs there."""

    def __init__(self, providers: list[str], options: ort.SessionOptions | None = None) -> None:
        self.kind = "cuda" if providers and providers[0] == CUDA else "cpu"
        self.id = 0
        self.providers = providers
        self.options = options
        self._gatherers: dict[int, ort.InferenceSession] = {}  # by rank: h/c are 2-D, features/att_proj 3-D

    def _gatherer(self, rank: int) -> ort.InferenceSession:
        if rank not in self._gatherers:
            self._gatherers[rank] = ort.InferenceSession(gather_graph(rank), sess_options=self.options,
                                                         providers=self.providers)
        return self._gatherers[rank]

    def upload(self, array: np.ndarray) -> DeviceArray:
        value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array, dtype=np.float32), self.kind, self.id)
        return DeviceArray(value, self)

    def gather(self, value: ort.OrtValue, rows: np.ndarray) -> ort.OrtValue:
        gatherer = self._gatherer(len(value.shape()))
        binding = gatherer.io_binding()
        binding.bind_ortvalue_input("data", value)
        binding.bind_cpu_input("indices", np.ascontiguousarray(rows, dtype=np.int64))
        binding.bind_output("rows", self.kind, self.id)
        gatherer.run_with_iobinding(binding)
        return binding.get_outputs()[0]


class DeviceArray:
    """A float32 tensor on the device; ``a[rows]`` (a numpy int array) gathers rows there, as numpy would."""

    def __init__(self, value: ort.OrtValue, device: Device) -> None:
        self.value = value
        self.device = device

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape())

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: np.ndarray) -> DeviceArray:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return DeviceArray(self.device.gather(self.value, rows), self.device)

    def numpy(self) -> np.ndarray:
        return self.value.numpy()


class BoundDecoder:
    """``decoder_init`` and ``decoder_step`` of a bundle, run with I/O binding on ``device``."""

    def __init__(self, bundle: Bundle, device: Device) -> None:
        self.bundle = bundle
        self.device = device

    def init(self, features: np.ndarray) -> tuple[DeviceArray, DeviceArray, DeviceArray, DeviceArray]:
        """Upload the batch's features once; returns (features, h, c, att_proj), all on the device."""
        feats = self.device.upload(features)
        session = self.bundle.decoder_init
        binding = session.io_binding()
        binding.bind_ortvalue_input("features", feats.value)
        names = [o.name for o in session.get_outputs()]
        for name in names:
            binding.bind_output(name, self.device.kind, self.device.id)
        session.run_with_iobinding(binding)
        out = dict(zip(names, binding.get_outputs(), strict=True))
        return (feats, DeviceArray(out["h"], self.device), DeviceArray(out["c"], self.device),
                DeviceArray(out["att_proj"], self.device))

    def step(self, word: np.ndarray, h: DeviceArray, c: DeviceArray, features: DeviceArray,
             att_proj: DeviceArray) -> tuple[np.ndarray, DeviceArray, DeviceArray, np.ndarray]:
        """One decoder step: word ids up, log-probabilities and attention down, the state stays on the device."""
        session = self.bundle.decoder_step
        binding = session.io_binding()
        binding.bind_cpu_input("word", np.ascontiguousarray(word, dtype=np.int64))
        for name, value in (("h", h), ("c", c), ("features", features), ("att_proj", att_proj)):
            if self.bundle.row_gather and name in ("features", "att_proj"):  # a graph that gathers rows itself
                name = f"image_{name}"  # (inference/image_rows.py): given the rows, each row its own "image"
            binding.bind_ortvalue_input(name, value.value)
        if self.bundle.row_gather:
            binding.bind_cpu_input("row_image", np.arange(len(word), dtype=np.int64))
        # outputs in the graph's order (log_probs, h_out, c_out, alpha): log_probs and alpha to the host (the search
        # ranks the one, the hypotheses keep the other), the new state stays on the device
        names = [o.name for o in session.get_outputs()]
        for name, on_device in zip(names, (False, True, True, False), strict=True):
            if on_device:
                binding.bind_output(name, self.device.kind, self.device.id)
            else:
                binding.bind_output(name)
        session.run_with_iobinding(binding)
        log_probs, h_out, c_out, alpha = binding.get_outputs()
        return log_probs.numpy(), DeviceArray(h_out, self.device), DeviceArray(c_out, self.device), alpha.numpy()


def bound_caption_features(bundle: Bundle, device: Device, feats: np.ndarray,
                           options: BeamOptions) -> list[Hypothesis]:
    """:func:`captionbot.inference.captioner.caption_features` with the decoder state on the device."""
    from captionbot.inference.beam_search import beam_search

    decoder = BoundDecoder(bundle, device)
    features, h, c, att_proj = decoder.init(feats)
    return beam_search(decoder.step, features, h, c, att_proj, options, SpecialIds.of(bundle.itos))
