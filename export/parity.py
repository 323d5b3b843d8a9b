"""Parity inputs and error measures for checking an export against TensorFlow.

Cases: a seeded batch of log-mel-like values, silence (every value ln(0.01)),
and extreme inputs (large constants, alternating signs, wide uniform noise).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from vggish_rt.engine import params

MAX_RELATIVE_ERROR = 1e-5
_SHAPE = (params.NUM_FRAMES, params.NUM_BANDS)


def parity_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """Case name -> float32 [n, 96, 64] log-mel examples."""
    rng = np.random.default_rng(seed)
    checker = np.indices(_SHAPE).sum(axis=0) % 2 * 2.0 - 1.0
    extreme = np.stack([np.full(_SHAPE, 50.0), np.full(_SHAPE, -50.0), 50.0 * checker,
                        rng.uniform(-100.0, 100.0, _SHAPE)])
    return {
        "seeded": rng.normal(-1.0, 2.5, (16, *_SHAPE)).astype(np.float32),
        "silence": np.full((2, *_SHAPE), np.log(params.LOG_OFFSET), np.float32),
        "extreme": extreme.astype(np.float32),
    }


def errors(actual: np.ndarray, expected: np.ndarray) -> dict[str, float]:
    """max_abs, relative (max_abs / max |expected|) and worst cosine similarity."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    max_abs = float(np.abs(actual - expected).max())
    scale = float(np.abs(expected).max())
    relative = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    norms = np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1)
    cosine = np.where(norms > 0, (actual * expected).sum(axis=1) / np.where(norms > 0, norms, 1), 1.0)
    return {"max_abs": max_abs, "relative": relative, "min_cosine": float(cosine.min())}


def cpu_session(model: bytes | Path) -> ort.InferenceSession:
    """An onnxruntime CPU session on a model's bytes or file, without the memory
    arena: the arena keeps a run's activations (a gigabyte for 320 examples)
    after the session is gone; plain allocations give them back, and the
    outputs are bit-identical."""
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def run_cases(session: ort.InferenceSession, cases: dict[str, np.ndarray],
              input_name: str = params.ONNX_FEATURES) -> dict[str, np.ndarray]:
    """Run ``session`` over each case; case -> its first output."""
    return {case: session.run(None, {input_name: x})[0] for case, x in cases.items()}
