"""The reference post-processor as an ONNX graph, composed after the e2e model.

embedding float32 [N,128] -> quantized_embedding uint8 [N,128], computed in
float64 exactly as ``engine.postprocess.Postprocessor.postprocess`` does::

    Y = (E - mu^T) @ P^T                     # = (P @ (E.T - mu)).T
    q = uint8(floor((clip(Y, -2, 2) + 2) * 255 / 4))

The same float64 operations in the same order, so the bytes equal the NumPy
post-processor's (the MatMul's summation order may differ, which in float64
moves a value by ~1e-16: a bin boundary is never that close in practice; the
export checks equality on demo audio and refuses to write otherwise).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vggish_rt.engine import params

ONNX_QUANTIZED = "quantized_embedding"
_P = "postprocess/"


def postprocess_model(eigen_vectors: np.ndarray, means: np.ndarray, opset: int, ir_version: int) -> onnx.ModelProto:
    """PCA params (eigen_vectors [128,128] rows = output dims, means [128,1]) as a graph
    ``embedding`` float32 [N,128] -> ``quantized_embedding`` uint8 [N,128]."""
    scale = 255.0 / (params.QUANTIZE_MAX_VAL - params.QUANTIZE_MIN_VAL)
    constants = {
        "means": np.asarray(means, np.float64).reshape(1, -1),
        "projection": np.ascontiguousarray(np.asarray(eigen_vectors, np.float64).T),
        "min": np.array(params.QUANTIZE_MIN_VAL, np.float64),
        "max": np.array(params.QUANTIZE_MAX_VAL, np.float64),
        "scale": np.array(scale, np.float64),
    }
    node = helper.make_node
    nodes = [
        node("Cast", [params.ONNX_EMBEDDING], [_P + "embedding64"], to=TensorProto.DOUBLE, name=_P + "to_float64"),
        node("Sub", [_P + "embedding64", _P + "means"], [_P + "centred"], name=_P + "centre"),
        node("MatMul", [_P + "centred", _P + "projection"], [_P + "projected"], name=_P + "project"),
        node("Clip", [_P + "projected", _P + "min", _P + "max"], [_P + "clipped"], name=_P + "clip"),
        node("Sub", [_P + "clipped", _P + "min"], [_P + "shifted"], name=_P + "shift"),
        node("Mul", [_P + "shifted", _P + "scale"], [_P + "scaled"], name=_P + "scale"),
        node("Floor", [_P + "scaled"], [_P + "floored"], name=_P + "truncate"),  # astype(uint8) truncates
        node("Cast", [_P + "floored"], [ONNX_QUANTIZED], to=TensorProto.UINT8, name=_P + "to_uint8"),
    ]
    graph = helper.make_graph(
        nodes, "vggish_postprocess",
        [helper.make_tensor_value_info(params.ONNX_EMBEDDING, TensorProto.FLOAT, ["N", params.EMBEDDING_SIZE])],
        [helper.make_tensor_value_info(ONNX_QUANTIZED, TensorProto.UINT8, ["N", params.EMBEDDING_SIZE])],
        [numpy_helper.from_array(value, _P + name) for name, value in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def with_postprocessing(model: onnx.ModelProto, eigen_vectors: np.ndarray, means: np.ndarray) -> onnx.ModelProto:
    """``model`` (output ``embedding``) followed by the post-processor: uint8 [N,128] out."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    tail = postprocess_model(eigen_vectors, means, opset, model.ir_version)
    merged = onnx.compose.merge_models(model, tail, io_map=[(params.ONNX_EMBEDDING, params.ONNX_EMBEDDING)])
    merged.graph.name = f"{model.graph.name}_pca"
    return merged
