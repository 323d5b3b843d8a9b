"""Reduced-precision variants of an exported ONNX model (no TensorFlow needed)."""
from __future__ import annotations

import numpy as np
import onnx

from vggish_rt.engine import params


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """float16 inside, float32 at the boundary: every float initializer becomes
    float16, a Cast follows the input and a Cast produces the output.
    """
    half = onnx.ModelProto()
    half.CopyFrom(model)
    graph = half.graph
    for tensor in graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT:
            array = onnx.numpy_helper.to_array(tensor).astype(np.float16)
            tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
    features_half, embedding_half = f"{params.ONNX_FEATURES}_fp16", f"{params.ONNX_EMBEDDING}_fp16"
    for node in graph.node:
        node.input[:] = [features_half if name == params.ONNX_FEATURES else name for name in node.input]
        node.output[:] = [embedding_half if name == params.ONNX_EMBEDDING else name for name in node.output]
    graph.node.insert(0, onnx.helper.make_node("Cast", [params.ONNX_FEATURES], [features_half],
                                               to=onnx.TensorProto.FLOAT16, name="cast_features_fp16"))
    graph.node.append(onnx.helper.make_node("Cast", [embedding_half], [params.ONNX_EMBEDDING],
                                            to=onnx.TensorProto.FLOAT, name="cast_embedding_fp32"))
    del graph.value_info[:]
    half.graph.name = "vggish_fp16"
    return half
