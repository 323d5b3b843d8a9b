"""Resampling inside the end-to-end graph (``--resampler onnx``): resampy's filter, run by the session.

The reference resamples with resampy (``kaiser_best``: a Kaiser-windowed sinc
of 50 zero crossings, rolloff 0.917, beta 12.98). Done on the CPU, with soxr
(the default) or resampy, resampling bounds a 48 kHz job on 16 cores. With
``--resampler onnx``, audio at another rate than 16 kHz reaches the session as
decoded: each example's window of native-rate samples with the filter's reach
on either side (a *native row*), and a convolution in front of the
end-to-end graph turns it into the 15,600 samples at 16 kHz that resampy
gives. On a GPU the session does that work; the decoding workers only decode.

Exactness. Resampy computes output sample n at input time ``t = n * r / 16000``
as a sum over the input samples within 50 zero crossings, each weighted by its
filter table (8,192 points per crossing, linearly interpolated) at the
distance its loop steps through (``int(scale * 8192)`` table points a sample,
``scale = min(1, 16000 / r)``). The weights here are that same function,
evaluated exactly (the table is the closed form to 3e-16) at the same
distances, so the only differences from resampy are the table's interpolation
(below 1e-8) and float32 sums: at most 5.4e-7 on signals within +-0.7 at 48,
44.1, 32, 22.05, 11.025 and 8 kHz on the CPU (tests/test_resampling.py checks
1e-6); on a GPU, see below. Samples before
the start and after the end are zeros, as in resampy; its output length,
``int(frames * 16000 / r)``, decides the windows, and a window padded by
``--pad-tail``/``--pad-short`` has its samples after that length set to zero
(the row's last value carries how many are real).

Structure. With ``g = gcd(r, 16000)``, every ``Q = r / g`` input samples give
``P = 16000 / g`` output samples with the same ``P`` sets of weights (48 kHz:
3 -> 1; 44.1 kHz: 441 -> 160; blocks of at least 16 outputs: 48 -> 16 at
48 kHz). The row is read as blocks of ``Q`` samples, one channel for each
sample of a block ([N, Q, blocks]), and one Conv of stride 1 with ``P``
output channels and a kernel of ``T`` blocks computes them all (the filter's
taps in block order, zero past its reach): a GEMM over ``Q x T`` inputs. A
window starts on a whole input sample when the hop is (0.96 s: any rate that
is a multiple of 25 Hz), which every common rate is; other rates are refused
with a clear error.

GPUs. Float32 convolutions run in TF32 there (11-bit products) by default, so
the front splits samples and weights, ``x = x_hi + x_lo``, ``w = w_hi + w_lo``
(the hi parts exact in 11 bits), and sums ``x_hi w_hi + x_hi w_lo + x_lo w_hi``
in the same Conv (three times the input channels), whose products TF32
computes exactly: the frontend's scheme for its DFT (export/frontend_graph.py).
Measured on an H200 (fp32 samples of a tone with a quiet partial, against the
CPU provider): at most 1.9e-6 (48 kHz), 1.6e-6 (44.1), 1.2e-6 (32), 9.5e-7
(22.05), 4.8e-7 (8); 375,000 (48 kHz) to 1.3 million (8 kHz) rows/s
GPU-resident. The first version, one input channel and a stride-``Q`` kernel,
was exact at 48 kHz only because cuDNN happened to pick a non-TF32 algorithm
for it; at 44.1 and 22.05 kHz it was off by 2.2e-4 and 2.8e-4, and at
44.1 kHz it ran 175,000 rows/s.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import ArgumentError, VggishError
from vggish_rt.engine.graph import with_front
from vggish_rt.engine.rowkind import RowKind, audio_rows
from vggish_rt.engine.windows import Hop, count_windows

IN_GRAPH = "onnx"  # the --resampler value
# resampy's kaiser_best filter (resampy/data/kaiser_best.npz, reproduced to 3e-16 by this closed form)
ZERO_CROSSINGS = 50
ROLLOFF = 0.9173473712608761
BETA = 12.984585247040012
TABLE_POINTS = 8192  # per zero crossing: resampy's tap spacing is int(scale * TABLE_POINTS) of them
MIN_BLOCK_OUTPUTS = 16  # output channels of the Conv at least (48 kHz's 3 -> 1 becomes 48 -> 16)
_WIDEST_RATE = 48_000  # batches of native rows are sized for this rate's rows (engine.embedder._batch_rows)
RESAMPLED = "waveform_16k"  # the front's output: the end-to-end graph's 16 kHz windows


def output_length(frames: int, rate: int) -> int:
    """Samples at 16 kHz that resampy makes of ``frames`` samples at ``rate``."""
    return frames if rate == params.SAMPLE_RATE else int(frames * float(params.SAMPLE_RATE) / float(rate))


def row_shape(row_kind: RowKind) -> tuple[int, ...]:
    """One row's shape: log-mel examples (96, 64), 16 kHz windows (15600,), native rows (row_width,)."""
    if not row_kind.audio:
        return (params.NUM_FRAMES, params.NUM_BANDS)
    return (front(row_kind.rate).row_width,) if row_kind.native else (params.EXAMPLE_SAMPLES,)


def sized_kinds(kinds: tuple[RowKind, ...], resampler: str) -> tuple[RowKind, ...]:
    """The kinds a job's batch buffers are sized for: its ``kinds``, and 48 kHz native rows when audio is
    resampled in the graph (rates met later; wider rows then come in smaller batches: engine.embedder)."""
    audio = any(k.audio for k in kinds)
    return (*kinds, audio_rows(_WIDEST_RATE)) if audio and resampler == IN_GRAPH else kinds


def batch_rows(row_kind: RowKind, batch_size: int) -> int:
    """Rows in a batch of ``row_kind``: ``batch_size``, fewer for native rows wider than 48 kHz's (a batch
    then holds as many floats as one of 48 kHz rows)."""
    if not row_kind.audio or row_kind.rate <= _WIDEST_RATE:  # rows no wider than 48 kHz's
        return batch_size
    return max(1, batch_size * front(_WIDEST_RATE).row_width // row_shape(row_kind)[0])


def _kaiser_sinc(u: np.ndarray) -> np.ndarray:
    """resampy's kaiser_best filter at ``u`` zero crossings (0 beyond ZERO_CROSSINGS)."""
    inside = np.abs(u) <= ZERO_CROSSINGS
    taper = np.i0(BETA * np.sqrt(np.clip(1.0 - (u / ZERO_CROSSINGS) ** 2, 0.0, None))) / np.i0(BETA)
    return np.where(inside, ROLLOFF * np.sinc(ROLLOFF * u) * taper, 0.0)


@dataclass(frozen=True)
class Front:
    """The resampling front for one input ``rate``: Conv weights float32 [P, Q, T] (output phase, sample of a
    block, block), ``stride`` Q input samples a block, ``margin`` input samples before each window's start,
    ``row_length`` native samples a window needs (plus one value: how many of its 15,600 output samples are
    real). ``blocks`` x ``outputs`` >= 15,600."""

    rate: int
    weights: np.ndarray
    stride: int
    margin: int
    blocks: int

    @property
    def outputs(self) -> int:
        return self.weights.shape[0]

    @property
    def row_blocks(self) -> int:
        """Blocks of ``stride`` samples in a row: the Conv's input length."""
        return self.blocks - 1 + self.weights.shape[2]

    @property
    def row_length(self) -> int:
        return self.stride * self.row_blocks

    @property
    def row_width(self) -> int:
        """Floats in a native row: its samples and the count of real output samples."""
        return self.row_length + 1


@functools.lru_cache(maxsize=None)
def front(rate: int) -> Front:
    """The Front for audio at ``rate`` Hz (not 16 kHz)."""
    g = math.gcd(rate, params.SAMPLE_RATE)
    outputs, stride = params.SAMPLE_RATE // g, rate // g
    copies = -(-MIN_BLOCK_OUTPUTS // outputs)
    outputs, stride = outputs * copies, stride * copies
    ratio = params.SAMPLE_RATE / rate
    scale = min(1.0, ratio)
    step = int(scale * TABLE_POINTS) / TABLE_POINTS  # resampy's distance between taps, in zero crossings
    last = ZERO_CROSSINGS * TABLE_POINTS + 1         # table length: a tap at table index >= last is not summed
    gain = ratio if ratio < 1 else 1.0
    phases, indices, distances = [], [], []  # each tap: output phase, input index from the block's start, zero crossings
    for phase in range(outputs):
        whole, rest = divmod(phase * stride, outputs)  # the phase's time: input samples from the block's start
        frac = rest / outputs
        for start, direction, first in ((scale * frac, -1, whole), (scale - scale * frac, 1, whole + 1)):
            count = (last - int(start * TABLE_POINTS)) // int(scale * TABLE_POINTS)
            phases.append(np.full(count, phase))
            indices.append(first + direction * np.arange(count))
            distances.append(start + step * np.arange(count))
    phase_of, index, distance = (np.concatenate(a) for a in (phases, indices, distances))
    margin = int(-index.min())
    taps = -(-(int(index.max()) + margin + 1) // stride) * stride  # the filter's reach, in whole blocks
    weights = np.zeros((outputs, taps), np.float64)
    np.add.at(weights, (phase_of, index + margin), gain * _kaiser_sinc(distance))
    polyphase = weights.reshape(outputs, taps // stride, stride).transpose(0, 2, 1)  # tap t*Q+s -> [s, t]
    blocks = -(-params.EXAMPLE_SAMPLES // outputs)
    return Front(rate, np.ascontiguousarray(polyphase, np.float32), stride, margin, blocks)


def refuse_in_graph(resampler: str, where: str) -> None:
    """Refuse the graph's resampler (``resampler`` 'onnx') for work that does not run the end-to-end graph."""
    if resampler == IN_GRAPH:
        raise ArgumentError("resampler", resampler, f"resamples inside the end-to-end graph, which {where} does not "
                            "run: use soxr or resampy")


def check_rate(rate: int, hop: Hop, label: str) -> None:
    """Refuse a rate at which the windows (every ``hop``) do not start on whole input samples."""
    if (hop.samples * rate) % params.SAMPLE_RATE:
        multiple = params.SAMPLE_RATE // math.gcd(hop.samples, params.SAMPLE_RATE)
        raise VggishError(f"{label}: {rate} Hz: the resampler 'onnx' needs windows that start on whole samples "
                          f"(rates that are multiples of {multiple} Hz at this hop); use soxr or resampy for it")


class NativeRowStream:
    """Cuts native rows (see the module docstring) from audio at ``rate`` arriving in blocks: float32
    [k, row_width] each push; ``finish()`` gives the rest, zero-padded past the end. The same windows as
    engine.windows.WindowStream cuts from resampy's 16 kHz output, numbered from 0 (``emitted`` counts them)."""

    def __init__(self, rate: int, hop: Hop, pad_short: bool = False, pad_tail: bool = False) -> None:
        self.front = front(rate)
        self.rate, self.hop, self.pad_short, self.pad_tail = rate, hop, pad_short, pad_tail
        self.step = hop.samples * rate // params.SAMPLE_RATE  # input samples between window starts
        self.emitted = 0
        self.total = 0
        self._buffer = np.zeros(self.front.margin, np.float32)  # zeros before the start, as resampy reads them
        self._buffer_start = -self.front.margin                 # input position of _buffer[0]

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, np.float32)
        position, self.total = self.total, self.total + len(samples)
        drop = min(len(samples), max(0, self._buffer_start + len(self._buffer) - position))  # a hop past the row
        self._buffer = np.concatenate([self._buffer, samples[drop:]])
        known = output_length(self.total, self.rate)  # resampy's length is at least this
        count = self.emitted
        while (self._start(count) + self.front.row_length <= self.total
               and count * self.hop.samples + params.EXAMPLE_SAMPLES <= known):
            count += 1
        return self._rows(count)

    def finish(self) -> np.ndarray:
        length = output_length(self.total, self.rate)
        count = count_windows(length, self.hop, self.pad_short, self.pad_tail)
        needed = self._start(count - 1) + self.front.row_length if count > self.emitted else 0
        if needed > self._buffer_start + len(self._buffer):
            self._buffer = np.concatenate([self._buffer, np.zeros(needed - self._buffer_start - len(self._buffer),
                                                                  np.float32)])
        return self._rows(max(count, self.emitted), length)

    def _start(self, window: int) -> int:
        """Input position of window ``window``'s row (its first sample at 16 kHz, less the margin)."""
        return window * self.step - self.front.margin

    def _rows(self, count: int, length: int | None = None) -> np.ndarray:
        """Rows for windows [emitted, count); ``length``: resampy's output length, for the real-sample counts."""
        rows = np.empty((count - self.emitted, self.front.row_width), np.float32)
        for row, window in enumerate(range(self.emitted, count)):
            offset = self._start(window) - self._buffer_start
            rows[row, :-1] = self._buffer[offset : offset + self.front.row_length]
            real = params.EXAMPLE_SAMPLES if length is None else length - window * self.hop.samples
            rows[row, -1] = min(params.EXAMPLE_SAMPLES, max(0, real))
        self.emitted = count
        keep = self._start(count) - self._buffer_start  # the next row's first sample (maybe not read yet)
        if keep > 0:
            self._buffer_start += keep
            self._buffer = self._buffer[keep:].copy()
        return rows


def native_rows(samples: np.ndarray, rate: int, hop: Hop, pad_short: bool = False, pad_tail: bool = False) -> np.ndarray:
    """All native rows of ``samples`` (float [S] mono at ``rate``): float32 [n, row_width]."""
    stream = NativeRowStream(rate, hop, pad_short, pad_tail)
    return np.concatenate([stream.push(samples), stream.finish()])


def _hi(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to 11 significant bits (through float16), as float32: a TF32 product of two is exact."""
    return values.astype(np.float16).astype(np.float32)


def front_nodes(rate: int, exact_tf32: bool = False) -> tuple[list, list, object]:
    """ONNX nodes, initializers and graph input that take native rows at ``rate`` (input ``waveform``, float32
    [N, row_width]) to 16 kHz windows named RESAMPLED (float32 [N, 15600]). ``exact_tf32``: the Conv's
    products split so that TF32 computes them exactly (see the module docstring), for GPUs."""
    from onnx import TensorProto, helper, numpy_helper  # where a graph is built, not with the package

    spec = front(rate)
    p = f"resample_{rate}_"
    weights = spec.weights
    if exact_tf32:  # input channels: x_hi (times w_hi), x_hi (w_lo), x_lo (w_hi)
        weights = np.concatenate([_hi(weights), weights - _hi(weights), _hi(weights)], axis=1)
    constants = [numpy_helper.from_array(value, p + name) for name, value in (
        ("weights", weights),
        ("zero", np.array([0], np.int64)),
        ("one", np.array([1], np.int64)),
        ("row_length", np.array([spec.row_length], np.int64)),
        ("row_width", np.array([spec.row_width], np.int64)),
        ("block_shape", np.array([0, spec.row_blocks, spec.stride], np.int64)),
        ("stream_shape", np.array([0, spec.blocks * spec.outputs], np.int64)),
        ("window_length", np.array([params.EXAMPLE_SAMPLES], np.int64)),
        ("positions", np.arange(params.EXAMPLE_SAMPLES, dtype=np.float32)[None]))]
    node = helper.make_node
    channels = p + "channels"
    split = [
        node("Cast", [channels], [p + "rounded"], name=p + "round_hi", to=TensorProto.FLOAT16),
        node("Cast", [p + "rounded"], [p + "channels_hi"], name=p + "channels_hi", to=TensorProto.FLOAT),
        node("Sub", [channels, p + "channels_hi"], [p + "channels_lo"], name=p + "channels_lo"),
        node("Concat", [p + "channels_hi", p + "channels_hi", p + "channels_lo"], [p + "channels_split"],
             name=p + "channels_split", axis=1),
    ] if exact_tf32 else []
    nodes = [
        node("Slice", [params.ONNX_WAVEFORM, p + "zero", p + "row_length", p + "one"], [p + "samples"],
             name=p + "samples"),
        node("Slice", [params.ONNX_WAVEFORM, p + "row_length", p + "row_width", p + "one"], [p + "real"],
             name=p + "real"),
        node("Reshape", [p + "samples", p + "block_shape"], [p + "row_blocks"], name=p + "row_blocks"),
        node("Transpose", [p + "row_blocks"], [channels], name=p + "channels", perm=[0, 2, 1]),
        *split,
        node("Conv", [p + "channels_split" if exact_tf32 else channels, p + "weights"], [p + "phases"],
             name=p + "conv"),
        node("Transpose", [p + "phases"], [p + "blocks"], name=p + "transpose", perm=[0, 2, 1]),
        node("Reshape", [p + "blocks", p + "stream_shape"], [p + "stream"], name=p + "stream"),
        node("Slice", [p + "stream", p + "zero", p + "window_length", p + "one"], [p + "window"], name=p + "window"),
        node("Less", [p + "positions", p + "real"], [p + "is_real"], name=p + "is_real"),
        node("Cast", [p + "is_real"], [p + "mask"], name=p + "mask", to=TensorProto.FLOAT),
        node("Mul", [p + "window", p + "mask"], [RESAMPLED], name=p + "masked"),
    ]
    graph_input = helper.make_tensor_value_info(params.ONNX_WAVEFORM, TensorProto.FLOAT, ["N", spec.row_width])
    return nodes, constants, graph_input


def with_resampler(model: bytes, rate: int, exact_tf32: bool = False) -> bytes:
    """An end-to-end model (input ``waveform``, 16 kHz windows) that takes native rows at ``rate`` instead;
    ``exact_tf32`` as in :func:`front_nodes` (on GPUs)."""
    nodes, constants, graph_input = front_nodes(rate, exact_tf32)
    return with_front(model, params.ONNX_WAVEFORM, nodes, constants, graph_input, RESAMPLED)
