"""ONNX models read and written at the protobuf wire level, so that the worker needs no ``onnx`` package.

An ONNX file is a protobuf ``ModelProto``. The few edits the runtime makes to a graph at load time (adding a
``Gather`` in front of the decoder step, ``inference/image_rows.py``) and the one-node graphs it builds
(``inference/device.py``) need only the message's top-level fields: each field is a key (field number, wire type)
and a value, and a repeated field (a graph's nodes, inputs, ...) is the same key written again. Nested messages
are left as bytes except where a name is read. Field numbers are those of onnx.proto3 (onnx/onnx, IR version 8).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

# ModelProto
MODEL_GRAPH = 7
# GraphProto
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_VALUE_INFO = 1, 5, 11, 12, 13
# NodeProto
NODE_INPUT, NODE_OUTPUT, NODE_OP_TYPE, NODE_ATTRIBUTE = 1, 2, 4, 5
# AttributeProto: its name, an int value, a tensor value
ATTR_NAME, ATTR_INT, ATTR_TENSOR = 1, 3, 5
# TensorProto: its data type, int64 values (packed or not), raw little-endian bytes
TENSOR_DATA_TYPE, TENSOR_INT64_DATA, TENSOR_RAW_DATA = 2, 7, 9
# ValueInfoProto and TensorProto (initializer) both keep their name in field 1 (TensorProto: field 8)
VALUE_NAME, TENSOR_NAME = 1, 8
FLOAT, INT64 = 1, 7  # TensorProto.DataType

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5  # wire types


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7


def field(number: int, payload: bytes | str | int) -> bytes:
    """One protobuf field: a varint for ints, length-delimited for bytes and strings."""
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | LENGTH) + varint(len(data)) + data


def fields(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """The top-level fields of a message: (field number, wire type, start of the field, end of the field); for a
    length-delimited field its value is ``data[end - length : end]`` (see :func:`value`)."""
    pos, end = 0, len(data)
    while pos < end:
        start = pos
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            _, pos = _read_varint(data, pos)
        elif wire == FIXED64:
            pos += 8
        elif wire == LENGTH:
            length, pos = _read_varint(data, pos)
            pos += length
        elif wire == FIXED32:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {start}")
        if pos > end:
            raise ValueError("truncated protobuf message")
        yield number, wire, start, pos


def value(data: bytes, start: int) -> bytes:
    """The payload of the length-delimited field that starts at ``start``."""
    _, pos = _read_varint(data, start)
    length, pos = _read_varint(data, pos)
    return data[pos : pos + length]


def strings(message: bytes, number: int) -> list[str]:
    """The values of the string field ``number`` (repeated or not) of ``message``."""
    return [value(message, s).decode() for n, w, s, _ in fields(message) if n == number and w == LENGTH]


def tensor_value(name: str, elem_type: int, dims: list[str | int]) -> bytes:
    """ValueInfoProto: a tensor of ``elem_type`` (1 float, 7 int64) with ``dims`` (a str: symbolic, an int:
    fixed)."""
    shape = b"".join(field(1, field(1, d) if isinstance(d, int) else field(2, d)) for d in dims)
    tensor_type = field(1, elem_type) + field(2, shape)
    return field(VALUE_NAME, name) + field(2, field(1, tensor_type))


def node(op_type: str, inputs: list[str], outputs: list[str], name: str) -> bytes:
    """NodeProto of the default domain, without attributes."""
    return (b"".join(field(NODE_INPUT, i) for i in inputs) + b"".join(field(NODE_OUTPUT, o) for o in outputs)
            + field(3, name) + field(4, op_type))


def names_in_graph(graph: bytes) -> set[str]:
    """Every tensor name a graph uses: its inputs, outputs, value infos, initialisers and node inputs/outputs."""
    out: set[str] = set()
    for number, wire, start, _ in fields(graph):
        if wire != LENGTH:
            continue
        if number in (GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_VALUE_INFO):
            out.update(strings(value(graph, start), VALUE_NAME))
        elif number == GRAPH_INITIALIZER:
            out.update(strings(value(graph, start), TENSOR_NAME))
        elif number == GRAPH_NODE:
            n = value(graph, start)
            out.update(strings(n, NODE_INPUT) + strings(n, NODE_OUTPUT))
    return out


def graph_of(model: bytes) -> tuple[bytes, int, int]:
    """(the GraphProto of a ModelProto, start and end of its field in ``model``)."""
    for number, wire, start, end in fields(model):
        if number == MODEL_GRAPH and wire == LENGTH:
            return value(model, start), start, end
    raise ValueError("not an ONNX model: no graph")


def input_dims(graph: bytes, name: str) -> list[str | int] | None:
    """The dimensions of graph input ``name`` (str: symbolic, int: fixed, "" when unnamed), None if absent."""
    for number, wire, start, _ in fields(graph):
        if number != GRAPH_INPUT or wire != LENGTH:
            continue
        info = value(graph, start)
        if strings(info, VALUE_NAME) != [name]:
            continue
        dims: list[str | int] = []
        for t in _sub(info, 2):  # TypeProto
            for tt in _sub(t, 1):  # TypeProto.Tensor
                for shape in _sub(tt, 2):  # TensorShapeProto
                    for n, w, s, _ in fields(shape):
                        if n == 1 and w == LENGTH:
                            dims.append(_dimension(value(shape, s)))
        return dims
    return None


def _sub(message: bytes, number: int) -> list[bytes]:
    return [value(message, s) for n, w, s, _ in fields(message) if n == number and w == LENGTH]


def _dimension(dim: bytes) -> str | int:
    for n, w, s, _ in fields(dim):
        if n == 1 and w == VARINT:
            return _read_varint(dim, s + 1)[0]
        if n == 2 and w == LENGTH:
            return value(dim, s).decode()
    return ""


def _int64(n: int) -> int:
    """A varint read back as the signed int64 it encodes (negative ones are ten-byte two's complement)."""
    return n - (1 << 64) if n >= 1 << 63 else n


def nodes(graph: bytes) -> list[bytes]:
    """The graph's NodeProtos, in order."""
    return _sub(graph, GRAPH_NODE)


def op_type(node_proto: bytes) -> str:
    return "".join(strings(node_proto, NODE_OP_TYPE))


def int_attribute(node_proto: bytes, name: str) -> int | None:
    """The int attribute ``name`` of a node, None where it has none."""
    for attr in _sub(node_proto, NODE_ATTRIBUTE):
        if strings(attr, ATTR_NAME) == [name]:
            for n, w, s, _ in fields(attr):
                if n == ATTR_INT and w == VARINT:
                    return _int64(_read_varint(attr, s + 1)[0])
    return None


def _tensor_ints(tensor: bytes) -> list[int] | None:
    """The values of an int64 TensorProto (packed, repeated or raw), None for any other data type."""
    kinds = [_read_varint(tensor, s + 1)[0] for n, w, s, _ in fields(tensor) if n == TENSOR_DATA_TYPE and w == VARINT]
    if kinds != [INT64]:
        return None
    out: list[int] = []
    for n, w, s, _ in fields(tensor):
        if n == TENSOR_INT64_DATA and w == VARINT:
            out.append(_int64(_read_varint(tensor, s + 1)[0]))
        elif n == TENSOR_INT64_DATA and w == LENGTH:
            packed, pos = value(tensor, s), 0
            while pos < len(packed):
                v, pos = _read_varint(packed, pos)
                out.append(_int64(v))
        elif n == TENSOR_RAW_DATA and w == LENGTH:
            raw = value(tensor, s)
            out += [int.from_bytes(raw[i : i + 8], "little", signed=True) for i in range(0, len(raw), 8)]
    return out


def constant_ints(graph: bytes, name: str) -> list[int] | None:
    """The int64 values of tensor ``name`` where a ``Constant`` node or an initialiser fixes them, else None."""
    for tensor in _sub(graph, GRAPH_INITIALIZER):
        if strings(tensor, TENSOR_NAME) == [name]:
            return _tensor_ints(tensor)
    for n in nodes(graph):
        if op_type(n) == "Constant" and strings(n, NODE_OUTPUT) == [name]:
            for attr in _sub(n, NODE_ATTRIBUTE):
                if strings(attr, ATTR_NAME) == ["value"]:
                    return next((_tensor_ints(t) for t in _sub(attr, ATTR_TENSOR)), None)
    return None


def renamed(node_proto: bytes, inputs: dict[str, str], outputs: dict[str, str]) -> bytes:
    """The node with the inputs and outputs named in ``inputs`` / ``outputs`` renamed; every other field kept."""
    parts = []
    for number, wire, start, end in fields(node_proto):
        names = inputs if number == NODE_INPUT else outputs if number == NODE_OUTPUT else None
        if names is not None and wire == LENGTH:
            name = value(node_proto, start).decode()
            if name in names:
                parts.append(field(number, names[name]))
                continue
        parts.append(node_proto[start:end])
    return b"".join(parts)


def replace_inputs(model: bytes, drop: set[str], add: list[bytes], nodes_first: list[bytes],
                   edit: Callable[[bytes], list[bytes]] | None = None) -> bytes:
    """``model`` with the graph inputs named in ``drop`` removed, the ValueInfoProtos ``add`` appended as inputs
    and the NodeProtos ``nodes_first`` placed before the graph's own nodes (ONNX keeps nodes in topological order:
    what they compute may then feed any node). ``edit``: each of the graph's own nodes -> the nodes to put in its
    place (in order)."""
    graph, g_start, g_end = graph_of(model)
    parts: list[bytes] = []
    placed = False
    for number, wire, start, end in fields(graph):
        if number == GRAPH_NODE and not placed:
            parts += [field(GRAPH_NODE, n) for n in nodes_first]
            placed = True
        if number == GRAPH_INPUT and wire == LENGTH and set(strings(value(graph, start), VALUE_NAME)) & drop:
            continue
        if number == GRAPH_NODE and wire == LENGTH and edit is not None:
            parts += [field(GRAPH_NODE, n) for n in edit(value(graph, start))]
            continue
        parts.append(graph[start:end])
    if not placed:
        parts += [field(GRAPH_NODE, n) for n in nodes_first]
    parts += [field(GRAPH_INPUT, a) for a in add]
    return model[:g_start] + field(MODEL_GRAPH, b"".join(parts)) + model[g_end:]
