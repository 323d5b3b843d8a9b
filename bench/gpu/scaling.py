"""Multi-GPU scaling: 1, 2 and 4 GPUs (as many as the machine has), from host memory and from disk.

    python3 bench/gpu/scaling.py MODEL_DIR [--examples 300000] [--dtype float32] [--out scaling.json]

Host memory: engine.bench (host float32 arrays in, embeddings back in host
memory) on cuda:0, cuda:0,1, cuda:0,1,2,3, fp32 and fp16, batch 1024.
Disk: the whole CLI job, ``vggish-rt embed X.npy --precision fp16 --out Y.npy``,
on a .npy of EXAMPLES log-mel examples written first (float32 by default;
``--dtype float16`` halves the file, but NumPy's float16 -> float32 conversion
then runs at about 55,000 rows/s on one core and bounds the job); examples/s is
EXAMPLES over the command's wall time, start-up (sessions, cuDNN's algorithm
search) included; ``steady_examples_per_s`` subtracts the wall time of the same
command on a 2,048-example file. The file sits in the page cache after it is written, as a
file read twice would; no cache is dropped.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vggish_rt.engine.bench import benchmark
from vggish_rt.engine.embedder import Embedder
from vggish_rt.engine.session import cuda_device_count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--examples", type=int, default=300_000)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "float64"])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=Path("scaling.json"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/scaling"))
    parser.add_argument("--only", choices=["host", "disk"], default=None, help="measure one source only")
    arguments = parser.parse_args()
    counts = [g for g in (1, 2, 4) if g <= cuda_device_count()]
    results = []
    for precision in ("fp32", "fp16") if arguments.only != "disk" else ():
        for gpus in counts:
            device = "cuda:" + ",".join(map(str, range(gpus)))
            embedder = Embedder(arguments.model, device=device, precision=precision, batch_size=1024)
            rate = benchmark(embedder, arguments.seconds)["examples_per_s"]
            results.append({"source": "host memory", "precision": precision, "gpus": gpus, "examples_per_s": rate})
            print(json.dumps(results[-1]), flush=True)
            del embedder
    if arguments.only == "host":
        arguments.out.write_text(json.dumps(results, indent=1))
        return
    arguments.work.mkdir(parents=True, exist_ok=True)
    data = arguments.work / "examples.npy"
    array = np.lib.format.open_memmap(data, mode="w+", dtype=arguments.dtype, shape=(arguments.examples, 96, 64))
    rng = np.random.default_rng(0)
    chunk = rng.normal(-2.0, 1.5, (10_000, 96, 64)).astype(arguments.dtype)
    for start in range(0, arguments.examples, len(chunk)):
        array[start:start + len(chunk)] = chunk[: arguments.examples - start]
    array.flush()
    del array
    small = arguments.work / "small.npy"
    np.save(small, chunk[:2048])

    def job_seconds(source: Path, device: str) -> float:
        out = arguments.work / "out.npy"
        started = time.perf_counter()
        job = subprocess.run([sys.executable, "-m", "vggish_rt.cli", "embed", str(source), "--model", arguments.model,
                              "--device", device, "--precision", "fp16", "--out", str(out)], capture_output=True, text=True)
        if job.returncode != 0:
            raise SystemExit(job.stderr[-2000:])
        out.unlink()
        return time.perf_counter() - started

    for gpus in counts:
        device = "cuda:" + ",".join(map(str, range(gpus)))
        start_up = job_seconds(small, device)  # sessions, cuDNN's search, 2,048 examples
        wall = job_seconds(data, device)
        results.append({"source": f"disk (.npy {arguments.dtype}, CLI job)", "precision": "fp16", "gpus": gpus,
                        "examples": arguments.examples, "wall_s": round(wall, 2), "start_up_s": round(start_up, 2),
                        "examples_per_s": round(arguments.examples / wall, 1),
                        "steady_examples_per_s": round((arguments.examples - 2048) / (wall - start_up), 1)})
        print(json.dumps(results[-1]), flush=True)
    arguments.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
