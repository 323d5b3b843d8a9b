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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from vggish_rt.engine import params, resampling
from vggish_rt.engine.audio import WAV_SUFFIXES, audio_length, wav_layout
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.inputs import is_spectrogram, open_spectrograms, printable, refuse_float32_dat
from vggish_rt.engine.sources import ReadOptions
from vggish_rt.engine.windows import count_windows

T = TypeVar("T")


@dataclass
class ProbeReport:
    """``examples``: the inputs' examples, summed (0 for each bad one); ``failures``: (input number, reason)
    of each bad input, in input order."""

    examples: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)

    def add(self, number: int, examples: int, error: str | None) -> None:
        self.examples += examples
        if error is not None:
            self.failures.append((number, error))


def input_examples(path: Path, options: ReadOptions = ReadOptions(), head: bytes = b"", size: int = 0) -> int:
    """The examples ``path`` gives, read from its header; raises VggishError where reading it would fail
    at its start (unreadable, empty, no audio track, absurd rate, bad spectrogram layout or dtype). ``head``
    and ``size``: the file's first bytes and size when already read (a WAV's length is parsed from them)."""
    if is_spectrogram(path):
        spectrograms = open_spectrograms(path, options.dat_dtype)
        if path.suffix.lower() == ".dat":
            refuse_float32_dat(path, spectrograms.read(0, 4))
        return len(spectrograms)
    wav = wav_layout(head, size) if head and Path(path).suffix.lower() in WAV_SUFFIXES else None
    frames, rate = (wav.frames, wav.rate) if wav is not None else audio_length(path)
    if options.resampler == resampling.IN_GRAPH and rate != params.SAMPLE_RATE:
        resampling.check_rate(rate, options.hop, str(path))
    return examples_in(frames, rate, options)


def examples_in(frames: int, rate: int, options: ReadOptions = ReadOptions()) -> int:
    """The examples ``frames`` samples at ``rate`` Hz give once resampled to 16 kHz and cut by ``options``."""
    if rate == params.SAMPLE_RATE:
        samples = frames
    elif options.resampler == resampling.IN_GRAPH:  # resampy's length, which the graph's resampler keeps
        samples = resampling.output_length(frames, rate)
    else:
        samples = round(frames * params.SAMPLE_RATE / rate)
    return count_windows(samples, options.hop, options.pad_short, options.pad_tail)


def probe_input(number: int, path: Path, options: ReadOptions, head: bytes = b"",
                size: int = 0) -> tuple[int, int, str | None]:
    """(number, examples, None), or (number, 0, the reason) for a bad input (see :func:`input_examples`)."""
    try:
        return number, input_examples(path, options, head, size), None
    except VggishError as exc:
        return number, 0, printable(str(exc))
    except OSError as exc:  # removed or unreadable since it was listed
        return number, 0, printable(f"{path}: cannot be read ({exc.strerror or exc})")


def probe_inputs(sources: list[Path], options: ReadOptions = ReadOptions()) -> ProbeReport:
    """:func:`input_examples` of every source, on a pool of threads (header reads release the GIL)."""
    report = ProbeReport()
    for probed in in_chunks(len(sources), lambda start, stop: [probe_input(n, sources[n], options)
                                                                for n in range(start, stop)], "vggish-probe"):
        for entry in probed:
            report.add(*entry)
    return report


def in_chunks(count: int, work: Callable[[int, int], T], name: str, chunk: int = 64) -> Iterator[T]:
    """``work(start, stop)`` over items [0, count) in chunks of ``chunk``, on a pool of up to 8 threads named
    ``name``, results in order (for work whose reads release the GIL: headers, hashes)."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix=name) as pool:
        yield from pool.map(lambda start: work(start, min(start + chunk, count)), range(0, count, chunk))
