"""``vggish-rt bench``: examples per second of the engine, host arrays in and out.

Times ``Embedder.embed_examples`` (or ``embed_windows``) on seeded random
inputs already in host memory, with embeddings copied back to host memory:
the figure a job from a ``.npy`` in page cache can reach. Each repeat embeds
``examples`` rows after a warm-up (which also runs cuDNN's algorithm search);
the result is the median of the repeats. A repeat ends when its embeddings
are in host memory, so GPU work is complete when the clock stops.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.embedder import Embedder

GFLOP_PER_EXAMPLE = 1.73  # 0.864 GMAC (performance.md); 92% in the convolutions


def benchmark(embedder: Embedder, seconds: float = 10.0, kind: str = "examples", examples: int | None = None,
              repeats: int | None = None) -> dict[str, Any]:
    """Measure ``embedder``; returns a dict with examples_per_s and the configuration."""
    batch = embedder.batch_size
    examples = examples or batch * 8 * embedder.devices
    rng = np.random.default_rng(0)
    shape = (examples, params.NUM_FRAMES, params.NUM_BANDS) if kind == "examples" else (examples, params.EXAMPLE_SAMPLES)
    inputs = (rng.normal(-2.0, 1.5, shape) if kind == "examples" else rng.uniform(-0.5, 0.5, shape)).astype(np.float32)
    run = embedder.embed_examples if kind == "examples" else embedder.embed_windows
    started = time.perf_counter()
    run(inputs[: batch * embedder.devices * 2])  # warm-up: sessions, algorithm search
    warmup_s = time.perf_counter() - started
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < (repeats or 3) or (repeats is None and time.perf_counter() < deadline):
        started = time.perf_counter()
        run(inputs)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    rate = examples / median
    return {"examples_per_s": round(rate, 1), "device": str(embedder.placement), "precision": embedder.precision,
            "batch_size": batch, "input": kind, "frontend": embedder.frontend if kind == "windows" else None,
            "examples_per_repeat": examples, "repeats": len(times), "median_s": round(median, 4),
            "min_s": round(min(times), 4), "warmup_s": round(warmup_s, 2),
            "achieved_tflops": round(rate * GFLOP_PER_EXAMPLE / 1000, 1)}
