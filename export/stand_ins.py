"""Small stand-ins for the fully connected weights while tf2onnx converts the graph.

tf2onnx copies every constant between protobuf messages in each of its
optimizer passes: with the 271 MB of fc weights in the graph, conversion took
85 s and 17.5 GB on 2 cores. The fc layers' hidden width (4096) appears in no
attribute and no other constant, so the frozen graph is converted with that
width shrunk to 1 in fc1's weights and biases and fc2's weights (a consistent,
smaller network; conv weights, shapes of every graph input and output, and the
flatten constant are untouched). The small network is what the export composes
(float16, frontend, post-processor); the real arrays are put back into each
model's initializers, by value, only to serialize it. Each distinct real array (by shape and bytes)
gets one distinct stand-in, so tf2onnx merges exactly the constants it would
have merged (the demo's equal fc1 biases share one initializer). The files are
byte-identical to converting the real graph (tests/test_export.py).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from vggish_rt.engine.errors import VggishError

FC_WIDTH = 4096  # fc1's width: the dimension the stand-ins shrink to 1
# Group g's stand-in holds -(32768 + 32 g) everywhere: exact in float16 as in
# float32 (so the float16 variant keeps the stand-ins apart), and a value no
# trained weight has.
_STAND_IN_BASE, _STAND_IN_STEP = -32768.0, -32.0


@dataclass
class StandIns:
    """The real fc arrays (float32, the checkpoint's shapes), one per group of equal arrays."""

    real: list[np.ndarray]

    def stand_in(self, group: int, dtype: type = np.float32) -> np.ndarray:
        """Group ``group``'s stand-in: its real shape with FC_WIDTH shrunk to 1."""
        shape = tuple(1 if d == FC_WIDTH else d for d in self.real[group].shape)
        return np.full(shape, _STAND_IN_BASE + _STAND_IN_STEP * group, dtype)

    def put_back(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """A copy of ``model`` (converted with the stand-ins, perhaps cast to float16
        or composed with other graphs) with each stand-in initializer replaced by its
        real array in the stand-in's dtype.

        Raises VggishError when a group's stand-in is missing or has changed shape,
        rather than write a model with wrong weights.
        """
        groups = {(dtype, self.stand_in(g, dtype).tobytes()): g
                  for g in range(len(self.real)) for dtype in (np.float32, np.float16)}
        real = onnx.ModelProto()
        real.CopyFrom(model)
        found: set[int] = set()
        for tensor in real.graph.initializer:
            if tensor.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                continue
            values = numpy_helper.to_array(tensor)
            group = groups.get((values.dtype.type, values.tobytes()))
            if group is None:
                continue
            if values.shape != self.stand_in(group).shape:
                raise VggishError(f"export: the stand-in for the weights of shape {list(self.real[group].shape)} "
                                  f"became {tensor.name} of shape {list(values.shape)}; nothing written")
            tensor.CopyFrom(numpy_helper.from_array(self.real[group].astype(values.dtype), tensor.name))
            found.add(group)
        missing = set(range(len(self.real))) - found
        if missing:
            shapes = ", ".join(str(list(self.real[g].shape)) for g in sorted(missing))
            raise VggishError(f"export: the weights of shape {shapes} are missing from the converted model; nothing written")
        return real


def shrink_fc(graph_def: object) -> StandIns:
    """Replace, in place, every Const of the frozen ``graph_def`` with a dimension
    of FC_WIDTH by its stand-in; returns the real arrays to put back."""
    from tensorflow.python.framework import tensor_util

    groups: dict[tuple[tuple[int, ...], str], int] = {}
    stand_ins = StandIns([])
    for node in graph_def.node:
        tensor = node.attr["value"].tensor if node.op == "Const" else None
        if tensor is None or FC_WIDTH not in [d.size for d in tensor.tensor_shape.dim]:
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
