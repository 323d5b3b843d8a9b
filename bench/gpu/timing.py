"""Timing helpers shared by the GPU benchmarks: GPU-resident onnxruntime runs, timed with a device sync."""
from __future__ import annotations

import time

import numpy as np

from vggish_rt.engine.session import create_session, onnxruntime


def resident_session(model: bytes, options: dict[str, str], batch: int, dtype=np.float32):
    """A CUDA session with input and output bound on the device: (session, binding)."""
    ort = onnxruntime()
    session = create_session(model, "cuda", 0, cuda_options=options)
    x = np.random.default_rng(0).normal(-2, 1.5, (batch, 96, 64)).astype(dtype)
    binding = session.io_binding()
    binding.bind_ortvalue_input("features", ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    binding.bind_ortvalue_output("embedding", ort.OrtValue.ortvalue_from_shape_and_type([batch, 128], np.float32, "cuda", 0))
    return session, binding


def timed(step, synchronize, batch: int, repeats: int = 30, runs: int = 5) -> float:
    """Median examples/s of ``runs`` timings of ``repeats`` calls of ``step`` (each ``batch`` examples),
    each timing closed by ``synchronize`` (the GPU is done when the clock stops)."""
    for _ in range(3):
        step()
    synchronize()
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(repeats):
            step()
        synchronize()
        rates.append(batch * repeats / (time.perf_counter() - started))
    return float(np.median(rates))


def resident_rate(model: bytes, options: dict[str, str], synchronize, batch: int = 1024, dtype=np.float32) -> float:
    """GPU-resident examples/s of ``model`` (no host copies)."""
    session, binding = resident_session(model, options, batch, dtype)
    return timed(lambda: session.run_with_iobinding(binding), synchronize, batch)
