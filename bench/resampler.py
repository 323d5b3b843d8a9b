"""The resamplers side by side: accuracy against the reference's (resampy), and a decoding worker's cost.

    python bench/resampler.py [--model DIR] [--device cpu] [--precision fp32] [--seconds 40] [--repeats 3]

Accuracy: one 16-bit WAV per rate (48, 44.1, 32, 22.05 and 8 kHz; tones in noise, ``--seconds`` long),
embedded through ``Embedder.embed`` with each resampler; for ``soxr`` (the default) and ``onnx`` (resampy's
filter in the end-to-end graph, engine.resampling), the largest absolute difference and the least cosine of
their embeddings against ``resampy``'s (the reference's), and the embedding's largest magnitude for scale.

Cost: what a decoding worker does for one 48 kHz file of ``--seconds``, on one core (best of ``--repeats``):
engine.sources.audio_blocks with each resampler (decode, channel average, then soxr or resampy and 16 kHz
windows, or the native rows the graph resamples), as examples per second.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from vggish_rt.engine import Embedder
from vggish_rt.engine.sources import ReadOptions, audio_blocks

RATES = (48000, 44100, 32000, 22050, 8000)
RESAMPLERS = ("soxr", "resampy", "onnx")


def write_file(directory: Path, rate: int, seconds: float) -> Path:
    rng = np.random.default_rng(rate)
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 2900 * t) + 0.05 * rng.standard_normal(len(t))
    path = directory / f"{rate}.wav"
    sf.write(path, wave.astype(np.float32), rate, subtype="PCM_16")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    warnings.simplefilter("ignore")
    embedder = Embedder(arguments.model, device=arguments.device, precision=arguments.precision)
    results: dict = {"device": str(embedder.placement), "precision": arguments.precision, "seconds": arguments.seconds,
                     "accuracy_against_resampy": {}, "worker_examples_per_s_one_core_48k": {}}
    with tempfile.TemporaryDirectory() as work:
        files = [write_file(Path(work), rate, arguments.seconds) for rate in RATES]
        embeddings = {name: [e.embeddings for e in embedder.embed(files, options=ReadOptions(resampler=name))]
                      for name in RESAMPLERS}
        for name in ("soxr", "onnx"):
            for rate, got, reference in zip(RATES, embeddings[name], embeddings["resampy"]):
                rows = min(len(got), len(reference))
                got, reference = got[:rows], reference[:rows]
                cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
                results["accuracy_against_resampy"][f"{name}_{rate}"] = {
                    "max_abs": float(np.abs(got - reference).max()), "min_cosine": float(cosine.min()),
                    "max_magnitude": float(np.abs(reference).max())}
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        for name in RESAMPLERS:
            best = float("inf")
            for _ in range(arguments.repeats):
                start = time.perf_counter()
                rows = sum(len(block) for block in audio_blocks(files[0], ReadOptions(resampler=name)))
                best = min(best, time.perf_counter() - start)
            results["worker_examples_per_s_one_core_48k"][name] = round(rows / best)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
