"""Every input checked before work, from its header only: how many examples it gives, or why it cannot.

A job probes its inputs beside its start-up (sessions, decoding workers): the
sum is the progress bar's total (so audio jobs get an ETA too), and with
``on_error='fail'`` a bad input anywhere stops the job in seconds rather than
when it is reached. Nothing is decoded: audio gives its frames and rate
(libsndfile's header, or FFmpeg's container; compressed formats' lengths are
the container's estimate), spectrogram files their header or size, and a raw
``.dat`` its first rows for the float32 check.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from vggish_rt.engine import params
from vggish_rt.engine.audio import audio_length
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.inputs import is_spectrogram, open_spectrograms, printable, refuse_float32_dat
from vggish_rt.engine.sources import ReadOptions
from vggish_rt.engine.windows import count_windows

_PROBE_CHUNK = 64  # inputs a thread probes at a time


@dataclass
class ProbeReport:
    """``examples``: the inputs' examples, summed (0 for each bad one); ``failures``: (input number, reason)
    of each bad input, in input order."""

    examples: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)


def input_examples(path: Path, options: ReadOptions = ReadOptions()) -> int:
    """The examples ``path`` gives, read from its header; raises VggishError where reading it would fail
    at its start (unreadable, empty, no audio track, absurd rate, bad spectrogram layout or dtype)."""
    if is_spectrogram(path):
        spectrograms = open_spectrograms(path, options.dat_dtype)
        if path.suffix.lower() == ".dat":
            refuse_float32_dat(path, spectrograms.read(0, 4))
        return len(spectrograms)
    frames, rate = audio_length(path)
    samples = frames if rate == params.SAMPLE_RATE else round(frames * params.SAMPLE_RATE / rate)
    return count_windows(samples, options.hop, options.pad_short, options.pad_tail)


def probe_inputs(sources: list[Path], options: ReadOptions = ReadOptions()) -> ProbeReport:
    """:func:`input_examples` of every source, on a pool of threads (header reads release the GIL)."""
    def probe(chunk_start: int) -> list[tuple[int, int, str | None]]:
        probed = []
        for number in range(chunk_start, min(chunk_start + _PROBE_CHUNK, len(sources))):
            try:
                probed.append((number, input_examples(sources[number], options), None))
            except VggishError as exc:
                probed.append((number, 0, printable(str(exc))))
            except OSError as exc:  # removed or unreadable since it was listed
                probed.append((number, 0, printable(f"{sources[number]}: cannot be read ({exc.strerror or exc})")))
        return probed

    report = ProbeReport()
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="vggish-probe") as pool:
        for probed in pool.map(probe, range(0, len(sources), _PROBE_CHUNK)):
            for number, examples, error in probed:
                report.examples += examples
                if error is not None:
                    report.failures.append((number, error))
    return report
