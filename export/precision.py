"""Reduced-precision variants of an exported ONNX model (no TensorFlow needed)."""
from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from vggish_rt.engine import params
from vggish_rt.export.parity import cpu_session, run_cases


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


# Tried in this order when int8 loses too much: the first convolution (one input
# channel, the least arithmetic and the rawest input), then the embedding layer.
INT8_FALLBACK_ORDER = ("vggish/conv1/BiasAdd", "vggish/fc2/MatMul", "vggish/fc1/fc1_1/MatMul")
INT8_MIN_MEAN_COSINE, INT8_MIN_WORST_COSINE = 0.99, 0.98


def to_int8(model: Path, calibration: np.ndarray, held_out: np.ndarray, reference: np.ndarray) -> tuple[bytes, dict]:
    """Static QDQ int8 quantization of the float32 model file ``model`` with
    onnxruntime's tools, checked against the float model.

    ``calibration`` and ``held_out``: float32 log-mel examples [N,96,64] of audio
    (not random values); ``reference``: the float model's embeddings [N,128] of
    ``held_out``. Weights int8 per channel (7-bit range, safe on CPUs
    without VNNI), activations uint8 (onnxruntime's fast u8s8 path on x86),
    MinMax calibration. Layers of INT8_FALLBACK_ORDER are kept in float, one at a
    time, until embeddings on ``held_out`` have mean cosine >= 0.99 and worst
    >= 0.98 against float32. Returns (model bytes, accuracy record).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Examples(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(calibration, max(1, len(calibration) // 32)))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {params.ONNX_FEATURES: np.ascontiguousarray(batch, np.float32)}

    record: dict = {}
    with tempfile.TemporaryDirectory(prefix="vggish-rt-int8-") as tmp:
        target = Path(tmp) / "int8.onnx"
        for kept in range(len(INT8_FALLBACK_ORDER) + 1):
            excluded = list(INT8_FALLBACK_ORDER[:kept])
            with _root_log_errors_only():  # the tool's advice to pre-process is a warning on the root logger
                quantize_static(str(model), str(target), Examples(), quant_format=QuantFormat.QDQ, per_channel=True,
                                reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                op_types_to_quantize=["Conv", "MatMul"], nodes_to_exclude=excluded)
            quantized = target.read_bytes()
            got = run_cases(cpu_session(quantized), {"held_out": held_out})["held_out"]
            cosine = (got * reference).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1))
            record = {"mean_cosine": float(cosine.mean()), "worst_cosine": float(cosine.min()),
                      "kept_in_float": excluded, "examples": len(held_out), "calibration_examples": len(calibration)}
            if record["mean_cosine"] >= INT8_MIN_MEAN_COSINE and record["worst_cosine"] >= INT8_MIN_WORST_COSINE:
                return quantized, record
    raise ValueError(f"int8 quantization keeps losing accuracy even with {excluded} in float: {record}")


@contextlib.contextmanager
def _root_log_errors_only() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
