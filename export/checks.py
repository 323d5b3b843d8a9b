"""What the export checks its models on (generated audio, never random log-mel
values alone), and the end-to-end checks that refuse a drifting model.

The inputs depend on no model, so they are made while TensorFlow's half of the
export runs (export.tf_process).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from onnxruntime import InferenceSession

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.postprocess import Postprocessor
from vggish_rt.engine.windows import cut_windows
from vggish_rt.export.demo import DEMO_SEED, demo_audio
from vggish_rt.export.frontend_graph import frontend_model
from vggish_rt.export.parity import cpu_session, errors, parity_inputs, run_cases

E2E_MAX_LOG_MEL_ERROR, E2E_MAX_RELATIVE_ERROR = 1e-3, 1e-4


@dataclass
class CheckInputs:
    """float32 inputs: log-mel examples [N,96,64] and 16 kHz windows [N,15600]."""

    cases: dict[str, np.ndarray]       # parity cases against TensorFlow (export.parity)
    calibration: np.ndarray            # int8 calibration examples
    held_out: np.ndarray               # int8 accuracy examples
    e2e_windows: np.ndarray            # the e2e model's check windows ...
    e2e_log_mel: np.ndarray            # ... and their NumPy-frontend log-mel examples
    pca_windows: np.ndarray            # vggish.e2e.pca.onnx's byte-for-byte check
    demo_pca_examples: np.ndarray | None  # the demo PCA fit's examples (demo export only)

    @classmethod
    def make(cls, demo: bool) -> CheckInputs:
        e2e_windows = _windows(DEMO_SEED + 1, clips=12, seconds=3.0)
        return cls(parity_inputs(), _examples(DEMO_SEED + 2, clips=48, seconds=3.0),
                   _examples(DEMO_SEED + 3, clips=24, seconds=3.0), e2e_windows, log_mel_examples(e2e_windows),
                   _windows(DEMO_SEED + 4, clips=12, seconds=3.0),
                   _examples(DEMO_SEED, clips=64, seconds=5.0) if demo else None)


def check_end_to_end(e2e: InferenceSession, inputs: CheckInputs, fp32_embeddings: np.ndarray,
                     ir_version: int, opset: int) -> dict[str, Any]:
    """The e2e model against the NumPy frontend + the network (``fp32_embeddings``:
    the network's output on ``inputs.e2e_log_mel``); raises VggishError on drift."""
    frontend = cpu_session(frontend_model(opset, ir_version).SerializeToString())
    log_mel = run_cases(frontend, {"audio": inputs.e2e_windows}, params.ONNX_WAVEFORM)["audio"]
    log_mel_error = float(np.abs(log_mel - inputs.e2e_log_mel).max())
    embedding_error = errors(run_cases(e2e, {"audio": inputs.e2e_windows}, params.ONNX_WAVEFORM)["audio"], fp32_embeddings)
    if log_mel_error > E2E_MAX_LOG_MEL_ERROR or embedding_error["relative"] > E2E_MAX_RELATIVE_ERROR:
        raise VggishError(f"end-to-end model check failed: log-mel error {log_mel_error:.3g} (limit {E2E_MAX_LOG_MEL_ERROR}), "
                          f"embedding relative error {embedding_error['relative']:.3g} (limit {E2E_MAX_RELATIVE_ERROR})")
    return {"log_mel_max_abs": log_mel_error, "embedding": embedding_error, "examples": len(inputs.e2e_windows)}


def check_postprocessing(e2e_pca: InferenceSession, inputs: CheckInputs, e2e_embeddings: np.ndarray,
                         pca: tuple[np.ndarray, np.ndarray]) -> int:
    """vggish.e2e.pca.onnx against the e2e model's embeddings of ``inputs.pca_windows``
    (``e2e_embeddings``) through the NumPy post-processor: every byte equal, or VggishError."""
    quantized = run_cases(e2e_pca, {"audio": inputs.pca_windows}, params.ONNX_WAVEFORM)["audio"]
    expected = Postprocessor(*pca).postprocess(e2e_embeddings)
    mismatches = int((quantized != expected).sum())
    if mismatches:
        raise VggishError(f"vggish.e2e.pca.onnx differs from the NumPy post-processor in {mismatches} of "
                          f"{expected.size} bytes on demo audio; nothing written")
    return mismatches


def _windows(seed: int, clips: int, seconds: float) -> np.ndarray:
    return np.concatenate([cut_windows(clip) for clip in demo_audio(seed, clips, seconds)])


def _examples(seed: int, clips: int, seconds: float) -> np.ndarray:
    return np.concatenate([log_mel_examples(cut_windows(clip)) for clip in demo_audio(seed, clips, seconds)])
