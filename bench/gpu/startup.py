"""Where a job's start-up goes: imports, the Embedder, each session, the first batch (cuDNN's search).

    python3 bench/gpu/startup.py MODEL_DIR [--precision fp16] [--kind windows]

Prints seconds per phase, in a fresh process (run it as the job runs: once).
"""
from __future__ import annotations

import argparse
import json
import time

started = time.perf_counter()
import numpy as np  # noqa: E402

from vggish_rt.engine import Embedder, params  # noqa: E402
from vggish_rt.engine.rowkind import RowKind  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--kind", default="windows", choices=["windows", "examples"])
    arguments = parser.parse_args()
    phases = {"imports": time.perf_counter() - started}
    clock = time.perf_counter()
    embedder = Embedder(arguments.model, precision=arguments.precision)
    phases["embedder"] = time.perf_counter() - clock
    for slot in range(embedder.sessions_per_device):
        clock = time.perf_counter()
        runner = embedder._runner(RowKind(arguments.kind), 0, slot)
        phases[f"session_{slot}"] = time.perf_counter() - clock
        shape = (embedder.batch_size, params.EXAMPLE_SAMPLES) if arguments.kind == "windows" else \
            (embedder.batch_size, params.NUM_FRAMES, params.NUM_BANDS)
        batch = np.random.default_rng(0).uniform(-0.5, 0.5, shape).astype(np.float32)
        clock = time.perf_counter()
        runner(batch)
        phases[f"first_batch_{slot}"] = time.perf_counter() - clock
    phases["total"] = time.perf_counter() - started
    print(json.dumps({k: round(v, 3) for k, v in phases.items()}))


if __name__ == "__main__":
    main()
