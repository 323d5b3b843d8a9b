"""``Embedder``: the public face of the runtime (faster-whisper's model class is the model).

    emb = Embedder(model_dir=None, device="auto", precision="fp32", batch_size=None)
    emb.embed("a.m4a")             # or emb("a.m4a"): one FileEmbeddings (embeddings float32 [N,128], times)
    emb.embed(["a.wav", x, (wave, 48000)], batch_size=256, progress=True)  # a list of them, in order
    emb.embed_examples(x)          # float [N,96,64] log-mel -> float32 [N,128]
    emb.embed_windows(w)           # float [N,15600] 16 kHz windows -> float32 [N,128]
    emb.embed_waveform(wave, sr)   # -> (float32 [N,128], start_s float64 [N])
    emb.embed_files(paths)         # yields FileEmbeddings, file by file, in order
"""
from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, Union

import numpy as np

from vggish_rt.engine import cudart, params, resampling
from vggish_rt.engine.audio import check_samples, pcm_to_float, resample, to_mono
from vggish_rt.engine.decoding import to_examples
from vggish_rt.engine.errors import ArgumentError, DemoModelWarning, DeviceFailure, VggishError, option
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.graph import pool_before_bias_relu
from vggish_rt.engine.inputs import is_spectrogram
from vggish_rt.engine.modeldir import ModelDirectory
from vggish_rt.engine.pipeline import DEPTH, Batch, batches, run_batches
from vggish_rt.engine.probe import examples_in, probe_inputs
from vggish_rt.engine.progress import progress_bar
from vggish_rt.engine.rowkind import EXAMPLES, WINDOWS, RowKind, audio_rows
from vggish_rt.engine.runner import Runner
from vggish_rt.engine.session import resolve_placement
from vggish_rt.engine.sources import Block, InputRows, ReadOptions, audio_rate, input_blocks
from vggish_rt.engine.staging import BatchBuffers, DeviceBatchBuffers
from vggish_rt.engine.windows import Hop, cut_windows, window_times

NETWORK_FILES = {"fp32": "vggish.onnx", "fp16": "vggish.fp16.onnx", "int8": "vggish.int8.onnx"}
E2E_FILES = {"fp32": "vggish.e2e.onnx", "fp16": "vggish.e2e.fp16.onnx", "int8": "vggish.e2e.int8.onnx"}
# The deployer's file: waveform in, the reference post-processor inside, uint8 out (written when PCA params exist).
E2E_PCA_FILE = "vggish.e2e.pca.onnx"
FRONTENDS = ("onnx", "numpy")
PROVIDERS = ("cuda", "tensorrt")
DEFAULT_BATCH = {"cpu": 64, "cuda": 1024}
# Measured on H200 (docs/benchmarks.md): NHWC convolutions are faster on Hopper's tensor
# cores, and two sessions per GPU let one's host-device copies overlap the other's compute.
DEFAULT_CUDA_OPTIONS = {"prefer_nhwc": "1", "cudnn_conv_use_max_workspace": "1"}
DEFAULT_SESSIONS = {"cpu": 1, "cuda": 2}
# Seconds a GPU's first session runs alone before the device's other sessions start. Starting one costs the
# device about 0.9 s (on an H100, fp16, batch 256: creation 0.28 s, first run with cuDNN's algorithm search
# 0.62 s; docs/results/stress_h100_2026-12-07/), in an exclusive section of engine.cudart.GATE where nothing
# else runs, and a second session adds 6-7% throughput (docs/benchmarks.md, H200): it pays only after some
# 15 s, so a job shorter than this never starts it.
EXTRA_SESSIONS_AFTER_S = 10.0


@dataclass
class FileEmbeddings:
    """One input's result: embeddings float32 [N,128] and its examples' times, float64 [N] seconds (NaN for
    log-mel inputs). ``source``: the file, or None for an array."""

    source: Path | None
    embeddings: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray


# What Embedder.embed takes: a path, log-mel examples [N,96,64], or (waveform, sample rate).
Input = Union[str, os.PathLike, np.ndarray, tuple[np.ndarray, int]]


class Embedder:
    """VGGish embeddings from log-mel examples, audio windows, waveforms or files.

    ``device``: 'auto', 'cpu', 'cuda' or 'cuda:0,1'. ``precision``: 'fp32',
    'fp16' or 'int8' (the model directory must hold that file). ``frontend``:
    'onnx' runs the log-mel frontend inside the end-to-end graph (on the GPU when
    there is one), 'numpy' runs the NumPy frontend on the CPU and feeds log-mel
    to the network. ``relu`` applies the pre-2020 reference's ReLU to the output
    (a deviation from the current reference; off by default). ``batch_size``
    defaults to 64 on the CPU and 1024 on a GPU.

    GPU settings, defaults from measurements on an H200 (docs/benchmarks.md):
    ``sessions_per_device`` (2 on a GPU: one session's copies overlap the
    other's compute; on a GPU the sessions after the first start once the job
    has run ``extra_sessions_after_s`` seconds, 10, so that short jobs never pay
    their start-up), ``cuda_options`` (onnxruntime CUDA provider options,
    merged over ``prefer_nhwc=1``), ``gpu_rewrites`` (the exact graph rewrite of
    engine.graph, on), ``provider`` 'cuda' or 'tensorrt' (with its engine cache
    in ``tensorrt_cache``). ``threads``: CPU intra-op threads (default: all cores).

    Public: the ``embed`` methods, ``devices``, ``warn_if_demo``. The methods whose names start with an
    underscore (sessions, device workers, batch buffers) are the job's plumbing (engine.job, engine.shards).
    """

    def __init__(self, model_dir: Path | str | None = None, device: str = "auto", precision: str = "fp32",
                 batch_size: int | None = None, device_ids: list[int] | None = None, relu: bool = False,
                 frontend: str = "onnx", threads: int | None = None,
                 cuda_options: dict[str, str] | None = None, sessions_per_device: int | None = None,
                 gpu_rewrites: bool = True, provider: str = "cuda", tensorrt_cache: Path | str | None = None,
                 extra_sessions_after_s: float = EXTRA_SESSIONS_AFTER_S) -> None:
        if precision not in NETWORK_FILES:
            raise ArgumentError("precision", precision, f"expected one of {', '.join(NETWORK_FILES)}")
        if frontend not in FRONTENDS:
            raise ArgumentError("frontend", frontend, f"expected one of {', '.join(FRONTENDS)}")
        if batch_size is not None and batch_size < 1:
            raise ArgumentError("batch_size", batch_size, "must be at least 1")
        if not extra_sessions_after_s >= 0:
            raise ArgumentError("extra_sessions_after_s", extra_sessions_after_s, "must be 0 or more seconds")
        self.model = ModelDirectory(model_dir)
        if not self.model.pretrained:
            warnings.warn(self.model.describe(), DemoModelWarning, stacklevel=2)
        self.placement = resolve_placement(device, device_ids)
        if precision == "int8" and self.placement.kind != "cpu":
            raise ArgumentError("precision", precision, "is for the CPU; on GPUs use fp16")
        self.precision, self.frontend, self.relu, self.threads = precision, frontend, relu, threads
        self.cuda_options = {**DEFAULT_CUDA_OPTIONS, **(cuda_options or {})}
        self.sessions_per_device = sessions_per_device or DEFAULT_SESSIONS[self.placement.kind]
        self.gpu_rewrites, self.extra_sessions_after_s = gpu_rewrites, extra_sessions_after_s
        if provider not in PROVIDERS:
            raise ArgumentError("provider", provider, f"expected one of {', '.join(PROVIDERS)}")
        if provider == "tensorrt" and self.placement.kind != "cuda":
            raise ArgumentError("provider", provider, "needs a CUDA device")
        self.tensorrt_cache = str(tensorrt_cache or Path.home() / ".cache" / "vggish-rt" / "tensorrt") \
            if provider == "tensorrt" else None
        if self.tensorrt_cache is not None:
            Path(self.tensorrt_cache).mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size or DEFAULT_BATCH[self.placement.kind]
        self._require(EXAMPLES)
        self._arguments = {"model_dir": str(self.model.path), "precision": precision, "batch_size": self.batch_size,
                           "relu": relu, "frontend": frontend, "threads": threads, "cuda_options": cuda_options,
                           "sessions_per_device": sessions_per_device, "gpu_rewrites": gpu_rewrites,
                           "provider": provider, "tensorrt_cache": tensorrt_cache,
                           "extra_sessions_after_s": extra_sessions_after_s}
        self._runners: dict[tuple[RowKind, int, int], Runner] = {}
        self._models: dict[str, bytes] = {}     # model files' bytes, by file name
        self._natives: dict[RowKind, bytes] = {}  # with a resampling front, by kind of native rows
        self._buffers: dict[tuple[int, int], BatchBuffers] = {}
        self._lock = threading.Lock()          # the buffers
        self._session_lock = threading.Lock()  # session creation: one at a time

    @property
    def devices(self) -> int:
        """How many devices the work is spread over."""
        return max(1, len(self.placement.device_ids))

    def _shard_arguments(self, shard: int, shards: int) -> dict[str, Any]:
        """Keyword arguments for an Embedder like this one that runs shard ``shard`` of ``shards`` in its own
        process: on CUDA, one GPU each (shard i on the i-th device); on the CPU, a share of the threads."""
        arguments = dict(self._arguments)
        if self.placement.kind == "cuda":
            arguments["device"] = f"cuda:{self.placement.device_ids[shard % len(self.placement.device_ids)]}"
        else:
            arguments["device"] = "cpu"
            arguments["threads"] = max(1, (self.threads or os.cpu_count() or 1) // shards)
        return arguments

    def _model_file(self, kind: RowKind) -> str:
        """The model file that runs rows of ``kind``: the network for log-mel examples, the end-to-end model for
        audio (16 kHz windows, and native rows resampled in front of it: engine.resampling)."""
        return E2E_FILES[self.precision] if kind.audio and self.frontend == "onnx" else NETWORK_FILES[self.precision]

    def _batch_rows(self, kind: RowKind) -> int:
        """Rows in a batch of ``kind``: ``batch_size`` (fewer for native rows wider than 48 kHz's)."""
        return resampling.batch_rows(kind, self.batch_size)

    def _require(self, kind: RowKind) -> None:
        """Refuse, before any work, a model directory lacking the file for inputs of ``kind``."""
        name = self._model_file(kind)
        if not self.model.has(name):
            hint = f" or use {option('frontend', 'numpy')}" if name in E2E_FILES.values() else ""
            raise VggishError(f"{self.model.path}: has no {name} for {option('precision', self.precision)}; "
                              f"re-export the model, choose another precision{hint}")

    def _runner(self, kind: RowKind, device: int = 0, slot: int = 0) -> Runner:
        """The runner for rows of ``kind`` on device number ``device``
        (session ``slot`` of ``sessions_per_device``), created on first use.

        Sessions are created one at a time; a runner already made is returned
        without waiting for another's creation (creation releases the GIL, so
        one session runs batches while the next is made).
        """
        key = (kind, device, slot)
        runner = self._runners.get(key)
        if runner is not None:
            return runner
        with self._session_lock:
            if key not in self._runners:
                self._require(kind)
                input_name = params.ONNX_WAVEFORM if kind.audio else params.ONNX_FEATURES
                device_id = self.placement.device_ids[device] if self.placement.device_ids else 0
                self._runners[key] = Runner(self._model_bytes(kind), input_name, resampling.row_shape(kind),
                                            self._batch_rows(kind), self.placement.kind, device_id, self.threads,
                                            self.cuda_options, self.tensorrt_cache)
            return self._runners[key]

    def _model_bytes(self, kind: RowKind) -> bytes:
        """The model that runs ``kind``, verified; on CUDA with the exact GPU rewrites of engine.graph applied;
        for native rows with the resampling front in front (engine.resampling; on CUDA its products split so
        that TF32 computes them exactly). Made once each."""
        name = self._model_file(kind)
        if name not in self._models:
            if self.placement.kind == "cuda" and self.gpu_rewrites:
                self._models[name] = pool_before_bias_relu(*self.model.read_model(name))
            else:
                self._models[name] = self.model.read_verified(name)
        if not kind.native:
            return self._models[name]
        if kind not in self._natives:
            self._natives[kind] = resampling.with_resampler(self._models[name], kind.rate,
                                                           exact_tf32=self.placement.kind == "cuda")
        return self._natives[kind]

    def _worker(self, device: int, slot: int = 0, kinds: tuple[RowKind, ...] = (EXAMPLES,)) -> "Worker":
        """Runs a pipeline Batch on device number ``device``, session ``slot``; applies ``relu`` when asked.
        Its ``prepare`` creates its sessions for ``kinds``."""
        return Worker(self, device, slot, kinds)

    def _workers(self, kinds: tuple[RowKind, ...] = (EXAMPLES,)) -> list["Worker"]:
        """One worker per session: ``sessions_per_device`` on each device.

        The first session of each device is created here, in the calling thread,
        so that a model that cannot run fails before any work; the others by
        their worker's ``prepare``, which run_batches calls in the worker's
        own thread: the first session runs its first batches (and cuDNN's
        algorithm search) while the next is made. On CUDA the devices' contexts
        are created while the model is read.
        """
        if self.placement.kind == "cuda" and not self._runners:
            cudart.start_contexts(self.placement.device_ids)
        for kind in kinds:
            for device in range(self.devices):
                self._runner(kind, device, 0)
        return [self._worker(d, s, kinds) for s in range(self.sessions_per_device) for d in range(self.devices)]

    def _batch_buffers(self, kinds: tuple[RowKind, ...], workers: int) -> BatchBuffers:
        """Buffers for batches of ``kinds`` run by ``workers`` device workers through run_batches: one more
        than can be in flight, each a full batch of the largest row. On one GPU they are on that GPU (rows
        go to it as they arrive); on several, in page-locked host memory; on the CPU, in host memory.

        Made once per size and kept for the Embedder's life (page-locking
        memory costs far more than a batch: made per call, it halved the
        engine bench on an H200); one run at a time uses them.
        """
        batch_floats = max(int(np.prod(resampling.row_shape(kind))) * self._batch_rows(kind) for kind in kinds)
        key = (DEPTH * workers + 2, 4 * batch_floats)
        with self._lock:
            if key not in self._buffers:
                if self.placement.kind == "cuda" and self.devices == 1:
                    self._buffers[key] = DeviceBatchBuffers(*key, device_id=(self.placement.device_ids or (0,))[0])
                else:
                    self._buffers[key] = BatchBuffers(*key, pinned=self.placement.kind == "cuda")
            return self._buffers[key]

    def warn_if_demo(self, stream: TextIO = sys.stderr) -> None:
        """Say once, on ``stream``, when the model is the demo model (not pretrained)."""
        if not self.model.pretrained:
            print(f"note: {self.model.describe()}", file=stream)

    def embed(self, inputs: Input | Sequence[Input], *, sample_rate: int | None = None,
              batch_size: int | None = None, progress: bool = False,
              options: ReadOptions = ReadOptions()) -> FileEmbeddings | list[FileEmbeddings]:
        """Embed one input, or a list of them batched together, in order (``embedder(inputs)`` is the same call).

        An input is a path (``str`` or ``Path``): any audio or video file the CLI reads, or a ``.npy``/``.dat``
        of log-mel examples; a float array of log-mel examples [N,96,64]; or a waveform, ``(samples, rate)``
        or ``samples`` with ``sample_rate``: mono [S] or [S, channels] (averaged), float in [-1, 1] or int16/
        int32 PCM (scaled as the decoders scale it), read exactly as the CLI reads a file of those samples.
        Returns one FileEmbeddings for one input, a list of them for a list. ``batch_size``: rows a session
        runs at a time (at most the Embedder's); ``progress``: a progress bar on stderr (examples/s, ETA);
        ``options``: hop, padding, resampler, ``.dat`` dtype. A bad input raises VggishError naming it.
        """
        single = isinstance(inputs, (str, os.PathLike, np.ndarray)) or _is_waveform_pair(inputs)
        items: list[Input] = [inputs] if single else list(inputs)
        if not items:
            return []
        size = batch_size or self.batch_size
        if self.frontend == "numpy":
            resampling.refuse_in_graph(options.resampler, "frontend='numpy'")
        if not 1 <= size <= self.batch_size:
            raise VggishError(f"batch_size {size}: expected 1 to this Embedder's batch_size ({self.batch_size}); "
                              "make the Embedder with a larger batch_size")
        prepared = [self._input_blocks(item, sample_rate, options) for item in items]
        with progress_bar("embedding", progress) as bar:
            if progress:
                bar.expect(_expected_rows(items, sample_rate, options))
            numbered = (InputRows(number, block) for number, (_, _, blocks) in enumerate(prepared) for block in blocks)
            parts = self._run(numbered, tuple(sorted({kind for _, kind, _ in prepared})), len(items), size, bar)
        results = [FileEmbeddings(source, *(np.concatenate([part[i] for part in pieces]) if pieces else empty
                                            for i, empty in enumerate(_EMPTY)))
                   for (source, _, _), pieces in zip(prepared, parts)]
        return results[0] if single else results

    __call__ = embed

    def _input_blocks(self, item: Input, sample_rate: int | None,
                      options: ReadOptions) -> tuple[Path | None, RowKind, Iterator[Block]]:
        """(source, kind, blocks) of one input of :meth:`embed`; arrays are checked here, files as read."""
        source: Path | None = None
        if isinstance(item, (str, os.PathLike)):
            source = Path(item)
            if is_spectrogram(source):
                return source, EXAMPLES, input_blocks(source, options)
            kind = audio_rows(audio_rate(source, options))
            windows = input_blocks(source, options)
        else:
            if _is_waveform_pair(item):
                item, sample_rate = item
            array = np.asarray(item)
            if array.ndim == 3:
                return None, EXAMPLES, _row_blocks(EXAMPLES, _checked_examples(array), self.batch_size * 8)
            if sample_rate is None:
                raise VggishError(f"an array of shape {list(array.shape)} is a waveform: give its rate, as (samples, "
                                  "rate) or sample_rate=; log-mel examples are [N, 96, 64]")
            samples, rate = _mono(pcm_to_float(array)), int(sample_rate)
            if options.resampler == resampling.IN_GRAPH and rate != params.SAMPLE_RATE:
                resampling.check_rate(rate, options.hop, "a waveform")
                kind, cut = audio_rows(rate), resampling.native_rows(samples, rate, options.hop, options.pad_short,
                                                                     options.pad_tail)
            else:
                kind, cut = WINDOWS, cut_windows(resample(samples, rate, options.resampler), options.hop,
                                                 options.pad_short, options.pad_tail)
            windows = _row_blocks(kind, cut, self.batch_size * 8, options.hop)
        if self.frontend == "numpy":
            return source, EXAMPLES, map(to_examples, windows)
        return source, kind, windows

    def _run(self, blocks: Iterable[InputRows], kinds: tuple[RowKind, ...], count: int,
             batch_size: int, advance: Callable[[int], None] = lambda _: None) -> list[list[tuple[np.ndarray, ...]]]:
        """Every row of ``blocks`` (input numbers < ``count``) through the sessions of all
        devices -> for each input number, its pieces (embeddings float32 [n,128], start_s, end_s), in order."""
        parts: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(count)]
        workers = self._workers(kinds) if kinds else []
        stream = batches(blocks, lambda kind: min(batch_size, self._batch_rows(kind)),
                         buffers=self._batch_buffers(kinds, len(workers)) if kinds else None)
        for batch, values in run_batches(stream, workers):
            edges = np.flatnonzero(np.diff(batch.numbers)) + 1
            for rows in np.split(np.arange(len(values)), edges):
                parts[int(batch.numbers[rows[0]])].append((values[rows[0] : rows[-1] + 1].copy(),
                                                           batch.start_s[rows], batch.end_s[rows]))
            advance(len(values))
        return parts

    def _embed_array(self, kind: RowKind, array: np.ndarray) -> np.ndarray:
        """Every row of ``array`` through the pipeline (all devices), in order -> float32 [N,128]."""
        pieces = self._run((InputRows(0, block) for block in _row_blocks(kind, array, self.batch_size * 8)), (kind,), 1,
                           self.batch_size)[0]
        return np.concatenate([piece[0] for piece in pieces]) if pieces else _EMPTY[0]

    def embed_examples(self, examples: np.ndarray) -> np.ndarray:
        """Log-mel examples, any float dtype [N,96,64] -> float32 embeddings [N,128]."""
        return self._embed_array(EXAMPLES, _checked_examples(np.asarray(examples)))

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """16 kHz windows float [N,15600] -> float32 embeddings [N,128], through the chosen frontend."""
        windows = np.asarray(windows)
        if windows.ndim != 2 or windows.shape[1] != params.EXAMPLE_SAMPLES:
            raise VggishError(f"windows must have shape [N, {params.EXAMPLE_SAMPLES}], got {list(windows.shape)}")
        if self.frontend == "numpy":
            return self.embed_examples(log_mel_examples(windows))
        return self._embed_array(WINDOWS, windows)

    def embed_waveform(self, waveform: np.ndarray, sample_rate: int,
                       options: ReadOptions = ReadOptions()) -> tuple[np.ndarray, np.ndarray]:
        """Samples at ``sample_rate`` Hz -> (float32 [N,128], start_s float64 [N]), read as the CLI reads a file:
        mono [S] or [S, channels] (channels averaged); float in [-1, 1], or int16/int32 PCM (scaled x / 2^15,
        x / 2^31, as the reference's int16 / 32768). :meth:`embed` of ``(waveform, sample_rate)``."""
        result = self.embed((waveform, sample_rate), options=options)
        return result.embeddings, result.start_s

    def embed_files(self, paths: Iterable[Path | str] | Path | str, options: ReadOptions = ReadOptions()) -> Iterator[FileEmbeddings]:
        """Decode, window and embed each audio file in turn; yields one FileEmbeddings per file, in order.
        ``paths``: paths, or one path (a ``str`` or ``Path`` is one file, not a sequence of names)."""
        for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
            yield self.embed(Path(path), options=options)


_EMPTY = (np.empty((0, params.EMBEDDING_SIZE), np.float32), np.empty(0), np.empty(0))


class Worker:
    """One session's share of run_batches: ``prepare()`` makes its sessions (in the worker's own thread, before
    its first batch; on a GPU, a session after the device's first only after ``start_after`` seconds); a call
    runs a Batch -> float32 [n,128], with the Embedder's ``relu`` applied."""

    def __init__(self, embedder: Embedder, device: int, slot: int, kinds: tuple[RowKind, ...]) -> None:
        self.embedder, self.device, self.slot, self.kinds = embedder, device, slot, kinds
        self.start_after = embedder.extra_sessions_after_s if slot and embedder.placement.kind == "cuda" else 0.0

    def prepare(self) -> None:
        for kind in self.kinds:
            self.embedder._runner(kind, self.device, self.slot)

    def __call__(self, batch: Batch) -> np.ndarray:
        try:
            values = self.embedder._runner(batch.kind, self.device, self.slot)(batch.inputs)
        except DeviceFailure as exc:  # where the job stood: the batch's first row
            number, example = (int(batch.numbers[0]) if batch.numbers is not None else None), int(batch.index[0])
            raise DeviceFailure(f"{exc}, at {batch.sources[0]} example {example}", number, example) from None
        return np.maximum(values, 0.0, out=values) if self.embedder.relu else values


def _is_waveform_pair(item: object) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray) and np.isscalar(item[1])


def _checked_examples(examples: np.ndarray) -> np.ndarray:
    """Log-mel examples [N,96,64] of a float dtype, or a VggishError."""
    expected = (params.NUM_FRAMES, params.NUM_BANDS)
    if examples.ndim != 3 or examples.shape[1:] != expected:
        raise VggishError(f"examples must have shape [N, {expected[0]}, {expected[1]}], got {list(examples.shape)}")
    if examples.dtype.kind != "f":
        raise VggishError(f"examples must be floating point, got {examples.dtype}")
    return examples


def _mono(waveform: np.ndarray) -> np.ndarray:
    """float32 [S] or [S, channels] -> [S], checked and averaged as the decoders do."""
    if waveform.ndim == 2:
        return to_mono(waveform, "waveform")
    if waveform.ndim != 1:
        raise VggishError(f"waveform must be [S] or [S, channels], got {list(waveform.shape)}")
    check_samples(waveform, "waveform")
    return waveform


def _row_blocks(kind: RowKind, rows: np.ndarray, chunk: int, hop: Hop | None = None) -> Iterator[Block]:
    """An array's rows of ``kind`` (log-mel examples [N,96,64], 16 kHz windows [N,15600] or native rows) as
    blocks of ``chunk`` rows; times from ``hop`` for windows cut from a waveform, else NaN."""
    for first in range(0, len(rows), chunk):
        part = rows[first : first + chunk]
        if hop is not None:
            start_s, end_s = window_times(len(part), hop, first * hop.samples)
        else:
            start_s = end_s = np.full(len(part), np.nan)
        yield Block(Path("<array>"), np.arange(first, first + len(part)), start_s, end_s, **{kind.name: part},
                    rate=kind.rate)


def _expected_rows(items: list[Input], sample_rate: int | None, options: ReadOptions) -> int:
    """The rows the inputs of :meth:`Embedder.embed` give, for the progress bar (files' from their headers)."""
    paths = [Path(item) for item in items if isinstance(item, (str, os.PathLike))]
    rows = probe_inputs(paths, options).examples
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            continue
        samples, rate = item if _is_waveform_pair(item) else (item, sample_rate)
        array = np.asarray(samples)
        if array.ndim == 3:
            rows += len(array)
        elif rate:
            rows += examples_in(len(array), rate, options)
    return rows
