"""Several GPUs from one process: sessions per GPU and the interpreter's switch interval.

    python3 bench/gpu/threads.py MODEL_DIR [--precision fp16] [--seconds 3] [--out threads.json]

For 1 GPU and for every GPU of the machine, 2 and 3 sessions per GPU, each
with Python's default switch interval (5 ms) and with 0.5 ms: a worker thread
coming back from onnxruntime or a copy (both release the GIL) waits for the
GIL up to one interval when another thread holds it. Timed by engine.bench
(host float32 in, embeddings back in host memory), batch 1024.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vggish_rt.engine.bench import benchmark
from vggish_rt.engine.embedder import Embedder
from vggish_rt.engine.session import cuda_device_count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path("threads.json"))
    arguments = parser.parse_args()
    default_interval = sys.getswitchinterval()
    results = []
    for gpus in sorted({1, cuda_device_count()}):
        for sessions in (2, 3):
            embedder = Embedder(arguments.model, device="cuda:" + ",".join(map(str, range(gpus))),
                                precision=arguments.precision, batch_size=1024, sessions_per_device=sessions)
            for interval in (default_interval, 0.0005):
                sys.setswitchinterval(interval)
                rate = benchmark(embedder, arguments.seconds)
                results.append({"gpus": gpus, "sessions_per_gpu": sessions, "switch_interval_s": interval, **rate})
                print(json.dumps(results[-1]), flush=True)
            sys.setswitchinterval(default_interval)
            del embedder
    arguments.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
