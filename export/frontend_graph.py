"""The log-mel frontend as an ONNX graph, and its composition with the network.

waveform float32 [N, 15600] (16 kHz windows) -> log-mel float32 [N, 96, 64]:

1. frames: Gather with a constant index matrix [96, 400] (hop 160);
2. periodic Hann and the 512-point DFT (zero padding of 400 samples) folded
   into one real basis B [400, 514] = hann[n] * [cos(2 pi k n / 512) | -sin(...)];
   MatMuls give real and imaginary parts of bins k = 0..256. GPUs run float32
   MatMuls in TF32 by default (10-bit mantissas), which wrecks quiet bins, whose
   values come from cancelling sums (max log-mel error 0.93, measured): so each
   factor is split into a part exact in 11 bits and the rest, x = x_hi + x_lo,
   B = B_hi + B_lo, and x B = x_hi B_hi + x_hi B_lo + x_lo B_hi, whose products
   TF32 computes exactly (the "3xTF32" scheme; about 5% more arithmetic);
3. magnitude sqrt(re^2 + im^2); MatMul with the mel matrix [257, 64];
4. log(mel + 0.01).

Only onnx and NumPy are needed here (no TensorFlow); the constants come from
the NumPy frontend, so the two cannot drift apart. The waveform is expected in
[-1, 1] (as decoders give it); the float16 split needs |x| < 65504.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vggish_rt.engine import params
from vggish_rt.engine.frontend import mel_matrix, periodic_hann

LOG_MEL = "log_mel"
_P = "frontend/"


def frontend_model(opset: int, ir_version: int) -> onnx.ModelProto:
    """The frontend alone: input ``waveform`` [N,15600] -> output ``log_mel`` [N,96,64]."""
    frame_starts = np.arange(params.NUM_FRAMES) * params.HOP_LENGTH_SAMPLES
    frame_index = (frame_starts[:, None] + np.arange(params.WINDOW_LENGTH_SAMPLES)[None, :]).astype(np.int64)
    n = np.arange(params.WINDOW_LENGTH_SAMPLES)[:, None]
    k = np.arange(params.NUM_BINS)[None, :]
    angle = 2.0 * np.pi * n * k / params.FFT_LENGTH
    basis = (periodic_hann()[:, None] * np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)).astype(np.float32)
    basis_hi = basis.astype(np.float16).astype(np.float32)
    initializers = [
        numpy_helper.from_array(frame_index, _P + "frame_index"),
        numpy_helper.from_array(basis_hi, _P + "dft_basis_hi"),
        numpy_helper.from_array(basis - basis_hi, _P + "dft_basis_lo"),
        numpy_helper.from_array(mel_matrix().astype(np.float32), _P + "mel_matrix"),
        numpy_helper.from_array(np.array(params.LOG_OFFSET, np.float32), _P + "log_offset"),
        numpy_helper.from_array(np.array([params.NUM_BINS, params.NUM_BINS], np.int64), _P + "split_sizes"),
    ]
    node = helper.make_node
    nodes = [
        node("Gather", [params.ONNX_WAVEFORM, _P + "frame_index"], [_P + "frames"], axis=1, name=_P + "frames"),
        node("Cast", [_P + "frames"], [_P + "frames_fp16"], to=TensorProto.FLOAT16, name=_P + "round_hi"),
        node("Cast", [_P + "frames_fp16"], [_P + "frames_hi"], to=TensorProto.FLOAT, name=_P + "frames_hi"),
        node("Sub", [_P + "frames", _P + "frames_hi"], [_P + "frames_lo"], name=_P + "frames_lo"),
        node("MatMul", [_P + "frames_hi", _P + "dft_basis_hi"], [_P + "dft_hh"], name=_P + "dft_hh"),
        node("MatMul", [_P + "frames_hi", _P + "dft_basis_lo"], [_P + "dft_hl"], name=_P + "dft_hl"),
        node("MatMul", [_P + "frames_lo", _P + "dft_basis_hi"], [_P + "dft_lh"], name=_P + "dft_lh"),
        node("Add", [_P + "dft_hl", _P + "dft_lh"], [_P + "dft_small"], name=_P + "dft_small"),
        node("Add", [_P + "dft_hh", _P + "dft_small"], [_P + "spectrum"], name=_P + "dft"),
        node("Split", [_P + "spectrum", _P + "split_sizes"], [_P + "re", _P + "im"], axis=-1, name=_P + "split"),
        node("Mul", [_P + "re", _P + "re"], [_P + "re2"], name=_P + "re2"),
        node("Mul", [_P + "im", _P + "im"], [_P + "im2"], name=_P + "im2"),
        node("Add", [_P + "re2", _P + "im2"], [_P + "power"], name=_P + "power"),
        node("Sqrt", [_P + "power"], [_P + "magnitude"], name=_P + "magnitude"),
        node("MatMul", [_P + "magnitude", _P + "mel_matrix"], [_P + "mel"], name=_P + "mel"),
        node("Add", [_P + "mel", _P + "log_offset"], [_P + "mel_offset"], name=_P + "offset"),
        node("Log", [_P + "mel_offset"], [LOG_MEL], name=_P + "log"),
    ]
    graph = helper.make_graph(
        nodes, "vggish_frontend",
        [helper.make_tensor_value_info(params.ONNX_WAVEFORM, TensorProto.FLOAT, ["N", params.EXAMPLE_SAMPLES])],
        [helper.make_tensor_value_info(LOG_MEL, TensorProto.FLOAT, ["N", params.NUM_FRAMES, params.NUM_BANDS])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def end_to_end(network: onnx.ModelProto) -> onnx.ModelProto:
    """Frontend then ``network`` (input ``features``): ``waveform`` [N,15600] -> ``embedding`` [N,128]."""
    opset = next(o.version for o in network.opset_import if o.domain in ("", "ai.onnx"))
    frontend = frontend_model(opset, network.ir_version)
    merged = onnx.compose.merge_models(frontend, network, io_map=[(LOG_MEL, params.ONNX_FEATURES)])
    merged.graph.name = f"{network.graph.name}_e2e"
    return merged
