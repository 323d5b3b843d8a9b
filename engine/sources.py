"""Inputs as a stream of blocks: audio files as windows, spectrogram files as examples.

Audio is decoded block by block (:func:`~vggish_rt.engine.audio.audio_stream`)
and cut into 15,600-sample windows as it comes; spectrogram files are read a
chunk at a time. Either way memory stays bounded whatever the
input's size.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vggish_rt.engine import params, resampling
from vggish_rt.engine.audio import RESAMPLERS, audio_length, audio_stream
from vggish_rt.engine.errors import ArgumentError, VggishError
from vggish_rt.engine.inputs import DAT_DTYPES, is_spectrogram, open_spectrograms, peak_magnitude, refuse_float32_dat
from vggish_rt.engine.rowkind import EXAMPLES, RowKind, audio_rows
from vggish_rt.engine.windows import DEFAULT_HOP, Hop, WindowStream, window_times

# Log-mel values lie within about [ln 0.01, 20]; far above, a file is not log-mel,
# and the network's activations overflow (float16 above 65,504): a failed input.
MAX_ABS_LOG_MEL = 1_000.0


@dataclass(frozen=True)
class ReadOptions:
    """How inputs become rows: audio's windows (``hop``, ``pad_short``, ``pad_tail``, see engine.windows) and
    ``resampler``; a raw ``.dat``'s value type, ``dat_dtype`` 'float64' (the seed's) or 'float32'."""

    hop: Hop = DEFAULT_HOP
    pad_short: bool = False
    pad_tail: bool = False
    resampler: str = "soxr"
    dat_dtype: str = "float64"

    def __post_init__(self) -> None:  # a bad value is the caller's error, not every input's
        if self.resampler not in RESAMPLERS:
            raise ArgumentError("resampler", self.resampler, f"expected one of {', '.join(RESAMPLERS)}")
        if self.dat_dtype not in DAT_DTYPES:
            raise ArgumentError("dat_dtype", self.dat_dtype, f"expected one of {', '.join(DAT_DTYPES)}")


WindowOptions = ReadOptions  # its name before dat_dtype joined it; kept for existing code


@dataclass
class Block:
    """Consecutive examples of one source.

    ``windows``: float32 [n, 15600] 16 kHz audio (audio sources), or None;
    ``examples``: float32 [n, 96, 64] log-mel (spectrogram sources), or None.
    ``index``: int64 [n], the examples' positions in their source;
    ``start_s``/``end_s``: float64 [n] seconds, NaN for spectrograms.
    ``release``: set when the rows are views of memory to be given back (a
    decoding worker's shared-memory slot, engine.decoding); the batcher calls
    it once it has copied every row. ``rate``: the audio's rate; at another
    than 16 kHz, ``windows`` holds native rows (engine.resampling) instead.
    """

    source: Path
    index: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    windows: np.ndarray | None = None
    examples: np.ndarray | None = None
    release: Callable[[], None] | None = None
    rate: int = params.SAMPLE_RATE

    def __len__(self) -> int:
        return len(self.index)

    @property
    def kind(self) -> RowKind:
        """Its rows' kind: log-mel examples, or audio rows at its rate."""
        return EXAMPLES if self.windows is None else audio_rows(self.rate)


@dataclass
class InputRows:
    """A block of input ``number``'s rows on its way to a batch, with their ``metadata`` (the --metadata
    table's cells, one list a row; empty without a table)."""

    number: int
    block: Block
    metadata: list[list[str]] = field(default_factory=list)


def _window_block(source: Path, windows: np.ndarray, first: int, hop: Hop, rate: int = params.SAMPLE_RATE) -> Block:
    start_s, end_s = window_times(len(windows), hop, first * hop.samples)
    return Block(source, np.arange(first, first + len(windows)), start_s, end_s, windows=windows, rate=rate)


def audio_rate(source: Path, options: ReadOptions) -> int:
    """The rate an audio file's rows keep: 16 kHz, or with ``resampler='onnx'`` the file's own (from its
    header; VggishError as reading it would raise). Its rows' kind is ``rowkind.audio_rows`` of it."""
    return audio_length(source)[1] if options.resampler == resampling.IN_GRAPH else params.SAMPLE_RATE


def audio_blocks(source: Path, options: ReadOptions = ReadOptions()) -> Iterator[Block]:
    """Window blocks of one audio file, in order (no block for a clip too short to give an example); with
    ``resampler='onnx'``, a file at another rate than 16 kHz gives native rows (engine.resampling)."""
    audio = audio_stream(source, options.resampler)
    if audio.rate != params.SAMPLE_RATE:
        resampling.check_rate(audio.rate, options.hop, str(source))
        stream = resampling.NativeRowStream(audio.rate, options.hop, options.pad_short, options.pad_tail)
    else:
        stream = WindowStream(options.hop, options.pad_short, options.pad_tail)
    for samples in audio.blocks:
        first = stream.emitted
        windows = stream.push(samples)
        if len(windows):
            yield _window_block(source, windows, first, options.hop, audio.rate)
    first = stream.emitted
    tail = stream.finish()
    if len(tail):
        yield _window_block(source, tail, first, options.hop, audio.rate)


def spectrogram_blocks(source: Path, chunk: int = 256, start: int = 0, stop: int | None = None,
                       dat_dtype: str = "float64") -> Iterator[Block]:
    """Example blocks of a ``.npy``/``.dat`` spectrogram file, rows [start, stop), as float32 (a ``.dat`` read as
    ``dat_dtype``)."""
    spectrograms = open_spectrograms(source, dat_dtype)
    stop = len(spectrograms) if stop is None else min(stop, len(spectrograms))
    for first in range(start, stop, chunk):
        examples = spectrograms.read(first, min(first + chunk, stop))
        if first == 0:
            refuse_float32_dat(source, examples)
        examples = examples.astype(np.float32, copy=False)
        peak = peak_magnitude(examples)
        if not np.isfinite(peak):
            raise VggishError(f"{source}: rows {first}..{first + len(examples) - 1} hold NaN or Inf")
        if peak > MAX_ABS_LOG_MEL:
            raise VggishError(f"{source}: rows {first}..{first + len(examples) - 1} hold values of magnitude {peak:.3g} "
                              f"(log-mel values lie within about [-5, 20]; above {MAX_ABS_LOG_MEL:g} a file is not log-mel)")
        nan = np.full(len(examples), np.nan)
        yield Block(source, np.arange(first, first + len(examples)), nan, nan, examples=examples)


def input_blocks(source: Path, options: ReadOptions = ReadOptions(), chunk: int = 256, start: int = 0,
                 stop: int | None = None) -> Iterator[Block]:
    """One input's blocks, as every job reads it: a ``.npy``/``.dat`` file's log-mel examples (rows [start,
    stop), ``chunk`` a block), any other file's audio windows (or native rows). A bad input raises VggishError
    naming it, after the blocks it gave; so does an OSError while it is read (a file removed or cut short
    under the job)."""
    try:
        yield from (spectrogram_blocks(source, chunk, start, stop, options.dat_dtype) if is_spectrogram(source)
                    else audio_blocks(source, options))
    except OSError as exc:
        raise VggishError(f"{source}: cannot be read ({exc.strerror or exc}); was it removed or changed while the "
                          "job ran?") from None


def skip_rows(blocks: Iterable[Block], skip: int) -> Iterator[Block]:
    """``blocks`` without the rows whose example index is below ``skip`` (a resumed job's first input). A block
    that loses rows is copied, and the memory it viewed given back (``release``)."""
    for block in blocks:
        keep = block.index >= skip
        if keep.all():
            yield block
            continue
        kept = Block(block.source, block.index[keep], block.start_s[keep], block.end_s[keep],
                     None if block.windows is None else block.windows[keep],
                     None if block.examples is None else block.examples[keep], rate=block.rate)
        if block.release is not None:
            block.release()
        if len(kept):
            yield kept
