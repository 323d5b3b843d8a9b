"""CPU side of the audio path, one core: decode + resample + window, and the NumPy log-mel.

    python bench/frontend_cpu.py [--seconds-of-audio 600] [--json]

Makes a 48 kHz 16-bit WAV of noise and tones, then times (medians of 3):
1. decode + resample (soxr HQ) + cut windows: engine.sources.audio_blocks;
2. the NumPy log-mel on those windows: engine.frontend.log_mel_examples;
3. the reference's way, for comparison: float64 frames one clip at a time
   (tests' transcription of mel_features.py), on 200 examples.
Pinned to one core with os.sched_setaffinity, so figures are per core.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.sources import audio_blocks


def median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds-of-audio", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    os.environ["OMP_NUM_THREADS"] = "1"
    rng = np.random.default_rng(0)
    n = int(arguments.seconds_of_audio * 48000)
    t = np.arange(n) / 48000
    audio = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench48k.wav"
        sf.write(path, audio, 48000, subtype="PCM_16")
        blocks = list(audio_blocks(path))
        windows = np.concatenate([b.windows for b in blocks])
        decode_s = median_time(lambda: list(audio_blocks(path)))
    logmel_s = median_time(lambda: log_mel_examples(windows))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_frontend import reference_log_mel

    clip = windows[0].astype(np.float64)
    reference_s = median_time(lambda: [reference_log_mel(clip) for _ in range(200)])
    result = {"examples": len(windows), "decode_resample_window_examples_per_s": round(len(windows) / decode_s),
              "numpy_log_mel_examples_per_s": round(len(windows) / logmel_s),
              "reference_log_mel_examples_per_s": round(200 / reference_s), "cores": 1}
    print(f"decode 48 kHz WAV + resample (soxr HQ) + window: {result['decode_resample_window_examples_per_s']:,} examples/s")
    print(f"NumPy log-mel (float32, vectorised):              {result['numpy_log_mel_examples_per_s']:,} examples/s")
    print(f"reference-style log-mel (float64, frame loop):    {result['reference_log_mel_examples_per_s']:,} examples/s")
    if arguments.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
