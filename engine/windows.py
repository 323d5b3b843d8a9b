"""Cutting 16 kHz audio into the windows examples are made of, with their times.

An example needs 15,600 samples (400 + 95 x 160). Window i starts at sample
``i * hop_samples``; the hop is a whole number of 10 ms frames (0.96 s = 96
frames, the reference's). Times: ``start_s = i * hop_samples / 16000`` and
``end_s = start_s + 0.96`` (the reference's example window).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import ArgumentError


@dataclass(frozen=True)
class Hop:
    """An example hop rounded to whole 10 ms frames."""

    frames: int
    requested_seconds: float

    @classmethod
    def from_seconds(cls, seconds: float) -> "Hop":
        if not (seconds > 0.0 and np.isfinite(seconds)):
            raise ArgumentError("hop", seconds, "must be a positive number of seconds")
        frames = int(round(seconds / params.STFT_HOP_SECONDS))
        if frames < 1:
            raise ArgumentError("hop", seconds, "is shorter than one 10 ms frame")
        return cls(frames, seconds)

    @property
    def samples(self) -> int:
        return self.frames * params.HOP_LENGTH_SAMPLES

    @property
    def seconds(self) -> float:
        return self.frames * params.STFT_HOP_SECONDS

    @property
    def rounded(self) -> bool:
        """True when the requested hop was not a whole number of frames."""
        return abs(self.seconds - self.requested_seconds) > 1e-9


DEFAULT_HOP = Hop(params.NUM_FRAMES, params.EXAMPLE_HOP_SECONDS)


def count_windows(num_samples: int, hop: Hop = DEFAULT_HOP, pad_short: bool = False, pad_tail: bool = False) -> int:
    """How many examples ``num_samples`` of 16 kHz audio give (see :func:`cut_windows`)."""
    if num_samples <= 0:
        return 0
    if num_samples < params.EXAMPLE_SAMPLES:
        return 1 if (pad_short or pad_tail) else 0
    beyond_first = num_samples - params.EXAMPLE_SAMPLES
    if pad_tail:  # until the last sample is covered
        return 1 + -(-beyond_first // hop.samples)
    return 1 + beyond_first // hop.samples


def cut_windows(waveform: np.ndarray, hop: Hop = DEFAULT_HOP, pad_short: bool = False, pad_tail: bool = False) -> np.ndarray:
    """16 kHz mono samples [S] -> windows float32 [N, 15600].

    Default (the reference): only complete windows; a clip under 0.975 s gives
    none. ``pad_short``: a clip shorter than one window gives one window,
    zero-padded. ``pad_tail``: also keep the windows that run past the end,
    zero-padded (implies ``pad_short``). A view of ``waveform`` when no padding
    is needed, else a copy.
    """
    waveform = np.asarray(waveform, np.float32)
    count = count_windows(len(waveform), hop, pad_short, pad_tail)
    if count == 0:
        return np.empty((0, params.EXAMPLE_SAMPLES), np.float32)
    needed = (count - 1) * hop.samples + params.EXAMPLE_SAMPLES
    if needed > len(waveform):
        waveform = np.concatenate([waveform, np.zeros(needed - len(waveform), np.float32)])
    view = np.lib.stride_tricks.sliding_window_view(waveform, params.EXAMPLE_SAMPLES)
    return view[:: hop.samples][:count]


def window_times(count: int, hop: Hop = DEFAULT_HOP, offset_samples: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(start_s, end_s), float64 [count] each, for windows cut with ``hop``."""
    start = (offset_samples + np.arange(count, dtype=np.int64) * hop.samples) / params.SAMPLE_RATE
    return start, start + params.EXAMPLE_WINDOW_SECONDS


class WindowStream:
    """Cuts windows from 16 kHz audio arriving in blocks; the same windows as
    :func:`cut_windows` on the whole signal, with memory bounded by one block.

    ``push(samples)`` returns the windows completed so far (float32 [k, 15600], a
    read-only view of memory the stream never writes again);
    ``finish()`` returns the padded windows that ``pad_short``/``pad_tail`` add.
    ``emitted`` counts windows returned, so window i starts at ``i * hop.samples``.
    """

    def __init__(self, hop: Hop = DEFAULT_HOP, pad_short: bool = False, pad_tail: bool = False) -> None:
        self.hop, self.pad_short, self.pad_tail = hop, pad_short, pad_tail
        self.emitted = 0
        self.total_samples = 0
        self._buffer = np.empty(0, np.float32)  # starts at the next window's first sample
        self._skip = 0                           # samples to drop before the next window (hop > window)

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, np.float32)
        self.total_samples += len(samples)
        dropped = min(self._skip, len(samples))
        self._skip -= dropped
        buffer = np.concatenate([self._buffer, samples[dropped:]])
        if len(buffer) < params.EXAMPLE_SAMPLES:
            self._buffer = buffer
            return np.empty((0, params.EXAMPLE_SAMPLES), np.float32)
        count = 1 + (len(buffer) - params.EXAMPLE_SAMPLES) // self.hop.samples
        windows = cut_windows(buffer, self.hop)[:count]  # a view: ``buffer`` is new at every push, never written
        consumed = count * self.hop.samples
        self._skip = max(0, consumed - len(buffer))
        self._buffer = buffer[consumed:].copy()
        self.emitted += count
        return windows

    def finish(self) -> np.ndarray:
        extra = count_windows(self.total_samples, self.hop, self.pad_short, self.pad_tail) - self.emitted
        if extra <= 0:
            return np.empty((0, params.EXAMPLE_SAMPLES), np.float32)
        padded = np.zeros((extra - 1) * self.hop.samples + params.EXAMPLE_SAMPLES, np.float32)
        padded[: len(self._buffer)] = self._buffer
        self.emitted += extra
        return np.array(cut_windows(padded, self.hop)[:extra])
