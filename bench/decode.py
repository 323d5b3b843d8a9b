"""Decoding speed per core: FFmpeg through PyAV (AAC in M4A and in an MP4 with video, Opus in WebM) and libsndfile
(WAV, FLAC), as times real time on one core.

    python bench/decode.py [--seconds 300] [--repeats 3]

Each file holds ``--seconds`` of 48 kHz stereo (a chirp in noise), encoded here by PyAV or soundfile. Two figures a
file, each the best of ``--repeats``: ``decode`` (the codec to float32 frames at the file's rate: PyAV's decoder and
format conversion, or libsndfile's read) and ``pipeline`` (engine.audio.load_audio: decode, channel average, soxr to
16 kHz mono: what a decoding worker does before windowing). The process is pinned to one core.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_ffmpeg import RATE, encode, signal  # noqa: E402  (the tests' encoder: one way to make these files)

from vggish_rt.engine.audio import load_audio  # noqa: E402


def decode_only(path: Path) -> int:
    """Decode to float32 at the file's own rate; returns the frames decoded."""
    if path.suffix in (".wav", ".flac"):
        return len(sf.read(path, dtype="float32")[0])
    import av

    frames = 0
    with av.open(str(path)) as container:
        to_float = av.AudioResampler(format="flt")
        for frame in container.decode(container.streams.audio[0]):
            for converted in to_float.resample(frame):
                frames += converted.samples
    return frames


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    samples = signal(arguments.seconds)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        files = {"aac.m4a": encode(work / "aac.m4a", "mp4", "aac", samples),
                 "aac+video.mp4": encode(work / "v.mp4", "mp4", "aac", samples, video=True),
                 "opus.webm": encode(work / "o.webm", "webm", "libopus", samples)}
        sf.write(work / "w.wav", samples.T, RATE, subtype="PCM_16")
        sf.write(work / "f.flac", samples.T, RATE, subtype="PCM_16")
        files.update({"pcm16.wav": work / "w.wav", "flac": work / "f.flac"})
        for name, path in files.items():
            decode = best_of(arguments.repeats, lambda: decode_only(path))
            pipeline = best_of(arguments.repeats, lambda: load_audio(path))
            print(json.dumps({"file": name, "seconds": arguments.seconds,
                              "decode_x_real_time": round(arguments.seconds / decode),
                              "pipeline_x_real_time": round(arguments.seconds / pipeline)}), flush=True)


if __name__ == "__main__":
    main()
