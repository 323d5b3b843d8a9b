"""Small stand-ins for the fully connected weights while tf2onnx converts the graph.

tf2onnx copies every constant between protobuf messages in each of its
optimizer passes: with the 271 MB of fc weights in the graph, conversion took
85 s and 17.5 GB on 2 cores. The fc layers' hidden width (4096) appears in no
attribute and no other constant, so the frozen graph is converted with that
width shrunk to 1 in fc1's weights and biases and fc2's weights (a consistent,
smaller network; conv weights, shapes of every graph input and output, and the
flatten constant are untouched). Each distinct real array (by shape and bytes)
gets one distinct stand-in, so tf2onnx merges exactly the constants it would
have merged (the demo's equal fc1 biases share one initializer).

The small network is also what the export composes (float16, frontend,
post-processor): the real arrays go into a model only as its bytes are written
to the file (``StandIns.write_real``), so no 289 MB message or string is ever
built. The files are byte-identical to converting the real graph
(tests/test_export.py, bench/export.py).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import onnx

from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.protobuf import LENGTH_DELIMITED, fields, key, varint

# Group g's stand-in holds -(32768 + 32 g) everywhere: exact in float16 as in
# float32 (so the float16 variant keeps the stand-ins apart), and a value no
# trained weight has.
_STAND_IN_BASE, _STAND_IN_STEP = -32768.0, -32.0


@dataclass
class StandIns:
    """The real fc arrays (float32, the checkpoint's shapes), one per group of equal arrays."""

    real: list[np.ndarray]
    fc_width: int  # fc1's width (export.checkpoint.Widths.fc): the dimension the stand-ins shrink to 1

    def stand_in(self, group: int, dtype: type = np.float32) -> np.ndarray:
        """Group ``group``'s stand-in: its real shape with ``fc_width`` shrunk to 1."""
        shape = tuple(1 if d == self.fc_width else d for d in self.real[group].shape)
        return np.full(shape, _STAND_IN_BASE + _STAND_IN_STEP * group, dtype)

    def write_real(self, model: bytes, file: BinaryIO) -> tuple[str, int]:
        """Write serialized ``model`` (converted with the stand-ins, perhaps cast to
        float16 or composed with other graphs) to ``file`` with each stand-in
        initializer replaced by its real array in the stand-in's dtype: the bytes
        ``SerializeToString`` gives for the model holding the real arrays, spliced
        in while writing instead of built in memory. Returns (sha256, bytes written).

        Raises VggishError when a group's stand-in is missing or has changed shape,
        rather than write a model with wrong weights.
        """
        view, chunks, found = memoryview(model), [], set()
        try:
            for number, wire, start, payload, end in fields(view, 0, len(view)):
                if number != _MODEL_GRAPH or wire != LENGTH_DELIMITED:
                    chunks.append(view[start:end])
                    continue
                graph: list[bytes | memoryview] = []
                for inner, inner_wire, inner_start, inner_payload, inner_end in fields(view, payload, end):
                    real = (self._real_tensor(view[inner_payload:inner_end])
                            if inner == _GRAPH_INITIALIZER and inner_wire == LENGTH_DELIMITED else None)
                    if real is None:
                        graph.append(view[inner_start:inner_end])
                        continue
                    group, tensor = real
                    found.add(group)
                    graph += [key(_GRAPH_INITIALIZER), varint(sum(len(c) for c in tensor)), *tensor]
                chunks += [key(_MODEL_GRAPH), varint(sum(len(c) for c in graph)), *graph]
        except ValueError as exc:  # not protobuf: engine.protobuf's words
            raise VggishError(f"export: the converted model is not a serialized ONNX model ({exc}); nothing written") from None
        missing = set(range(len(self.real))) - found
        if missing:
            shapes = ", ".join(str(list(self.real[g].shape)) for g in sorted(missing))
            raise VggishError(f"export: the weights of shape {shapes} are missing from the converted model; nothing written")
        digest, size = hashlib.sha256(), 0
        for chunk in chunks:
            digest.update(chunk)
            size += file.write(chunk)
        return digest.hexdigest(), size

    def _real_tensor(self, serialized: memoryview) -> tuple[int, list[bytes | memoryview]] | None:
        """(group, the real TensorProto's serialized pieces) if ``serialized`` is a stand-in, else None."""
        tensor = onnx.TensorProto.FromString(bytes(serialized))
        dtype = _DTYPES.get(tensor.data_type)
        if dtype is None or not tensor.HasField("raw_data"):
            return None
        for group in range(len(self.real)):
            stand_in = self.stand_in(group, dtype)
            if tensor.raw_data != stand_in.tobytes():
                continue
            if tuple(tensor.dims) != stand_in.shape:
                raise VggishError(f"export: the stand-in for the weights of shape {list(self.real[group].shape)} "
                                  f"became {tensor.name} of shape {list(tensor.dims)}; nothing written")
            values = np.ascontiguousarray(self.real[group].astype(dtype, copy=False))
            header = onnx.TensorProto(dims=values.shape, data_type=tensor.data_type, name=tensor.name)
            data = memoryview(values).cast("B")
            return group, [header.SerializeToString(), key(_TENSOR_RAW_DATA), varint(len(data)), data]
        return None


# Field numbers in onnx.proto, and the dtypes a stand-in may take.
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9
_DTYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16}


def shrink_fc(graph_def: object, fc_width: int) -> StandIns:
    """Replace, in place, every Const of the frozen ``graph_def`` with a dimension
    of ``fc_width`` by its stand-in; returns the real arrays to put back."""
    from tensorflow.python.framework import tensor_util

    groups: dict[tuple[tuple[int, ...], str], int] = {}
    stand_ins = StandIns([], fc_width)
    for node in graph_def.node:
        tensor = node.attr["value"].tensor if node.op == "Const" else None
        if tensor is None or fc_width not in [d.size for d in tensor.tensor_shape.dim]:
            continue
        array = tensor_util.MakeNdarray(tensor)
        if array.dtype != np.float32:
            raise VggishError(f"export: constant {node.name} has dtype {array.dtype}, expected float32")
        key = (array.shape, hashlib.sha256(array.data).hexdigest())
        if key not in groups:
            groups[key] = len(stand_ins.real)
            stand_ins.real.append(array)
        tensor.CopyFrom(tensor_util.make_tensor_proto(stand_ins.stand_in(groups[key])))
    return stand_ins
