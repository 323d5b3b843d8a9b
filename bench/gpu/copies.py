"""Host <-> device copies: onnxruntime's OrtValue copies (which hold the GIL) against engine.cudart's (which release it).

    python3 bench/gpu/copies.py MODEL_DIR [--seconds 3] [--out copies.json]

For 1 GPU and for every GPU of the machine, fp32 (TF32) and fp16: one
Embedder (the default configuration: two sessions per GPU, batch 1024), timed
by engine.bench (host float32 in, embeddings back in host memory) with the
runner's copies done by engine.cudart (the engine's path) and, on the same
sessions, by ``OrtValue.update_inplace`` / ``OrtValue.numpy`` (the path before).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vggish_rt.engine.bench import benchmark
from vggish_rt.engine.embedder import Embedder
from vggish_rt.engine.runner import Runner
from vggish_rt.engine.session import cuda_device_count


def _ortvalue_to_device(self: Runner, host: np.ndarray) -> None:
    self._input.update_inplace(host)


def _ortvalue_to_host(self: Runner) -> np.ndarray:
    return self._output.numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path("copies.json"))
    arguments = parser.parse_args()
    cudart_copies = (Runner._to_device, Runner._to_host)
    results = []
    for gpus in sorted({1, cuda_device_count()}):
        for precision in ("fp16", "fp32"):
            embedder = Embedder(arguments.model, device="cuda:" + ",".join(map(str, range(gpus))),
                                precision=precision, batch_size=1024)
            for copies, (to_device, to_host) in (("cudart", cudart_copies),
                                                 ("ortvalue", (_ortvalue_to_device, _ortvalue_to_host))):
                Runner._to_device, Runner._to_host = to_device, to_host
                rate = benchmark(embedder, arguments.seconds)
                results.append({"gpus": gpus, "precision": precision, "copies": copies, **rate})
                print(json.dumps(results[-1]), flush=True)
            Runner._to_device, Runner._to_host = cudart_copies
            del embedder
    arguments.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
