"""``Embedder``: the public face of the runtime (faster-whisper's model class is the model).

    emb = Embedder(model_dir=None, device="auto", precision="fp32", batch_size=None)
    emb.embed_examples(x)          # float [N,96,64] log-mel -> float32 [N,128]
    emb.embed_waveform(wave, sr)   # -> (float32 [N,128], start_s float64 [N])
    emb.embed_files(paths)         # yields FileEmbeddings, file by file, in order
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.audio import load_audio, resample
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.modeldir import ModelDirectory
from vggish_rt.engine.session import as_float32, create_session, resolve_placement
from vggish_rt.engine.windows import DEFAULT_HOP, Hop, cut_windows, window_times

MODEL_FILES = {"fp32": "vggish.onnx", "fp16": "vggish.fp16.onnx", "int8": "vggish.int8.onnx"}
DEFAULT_BATCH = {"cpu": 64, "cuda": 1024}


@dataclass
class FileEmbeddings:
    """One input file's result: embeddings float32 [N,128] and example times in seconds."""

    source: Path
    embeddings: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray


class Embedder:
    """VGGish embeddings from log-mel examples, waveforms or audio files.

    ``device``: 'auto', 'cpu', 'cuda' or 'cuda:0,1'. ``precision``: 'fp32',
    'fp16' or 'int8' (the model directory must hold that file). ``relu``
    applies the pre-2020 reference's ReLU to the output (a deviation from the
    current reference; off by default). ``batch_size`` defaults to 64 on the
    CPU and 1024 on a GPU.
    """

    def __init__(self, model_dir: Path | str | None = None, device: str = "auto", precision: str = "fp32",
                 batch_size: int | None = None, device_ids: list[int] | None = None, relu: bool = False,
                 threads: int | None = None) -> None:
        if precision not in MODEL_FILES:
            raise VggishError(f"--precision {precision!r}: expected one of {', '.join(MODEL_FILES)}")
        if batch_size is not None and batch_size < 1:
            raise VggishError(f"--batch-size must be at least 1, got {batch_size}")
        self.model = ModelDirectory(model_dir)
        self.placement = resolve_placement(device, device_ids)
        self.precision = precision
        self.relu = relu
        self.batch_size = batch_size or DEFAULT_BATCH[self.placement.kind]
        model_bytes = self.model.read_verified(MODEL_FILES[precision])
        ids = self.placement.device_ids or (0,)
        self.sessions = [create_session(model_bytes, self.placement.kind, i, threads) for i in ids]

    def warn_if_demo(self, stream=sys.stderr) -> None:
        """Say once, on ``stream``, when the model is the demo model (not pretrained)."""
        if not self.model.pretrained:
            print(f"note: {self.model.describe()}", file=stream)

    def embed_examples(self, examples: np.ndarray) -> np.ndarray:
        """Log-mel examples, any float dtype [N,96,64] -> float32 embeddings [N,128]."""
        examples = np.asarray(examples)
        expected = (params.NUM_FRAMES, params.NUM_BANDS)
        if examples.ndim != 3 or examples.shape[1:] != expected:
            raise VggishError(f"examples must have shape [N, {expected[0]}, {expected[1]}], got {list(examples.shape)}")
        if examples.dtype.kind != "f":
            raise VggishError(f"examples must be floating point, got {examples.dtype}")
        out = np.empty((len(examples), params.EMBEDDING_SIZE), np.float32)
        session = self.sessions[0]
        for start in range(0, len(examples), self.batch_size):
            batch = as_float32(examples[start : start + self.batch_size])
            out[start : start + len(batch)] = session.run(None, {params.ONNX_FEATURES: batch})[0]
        return np.maximum(out, 0.0, out=out) if self.relu else out

    def embed_waveform(self, waveform: np.ndarray, sample_rate: int, hop: Hop = DEFAULT_HOP,
                       pad_short: bool = False, pad_tail: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Mono samples [S] in [-1, 1] at ``sample_rate`` Hz -> (float32 [N,128], start_s float64 [N])."""
        waveform = np.asarray(waveform, np.float32)
        if waveform.ndim != 1:
            raise VggishError(f"waveform must be mono, shape [S], got {list(waveform.shape)}")
        windows = cut_windows(resample(waveform, int(sample_rate)), hop, pad_short, pad_tail)
        start_s, _ = window_times(len(windows), hop)
        return self.embed_examples(log_mel_examples(windows)), start_s

    def embed_files(self, paths: Iterable[Path | str], hop: Hop = DEFAULT_HOP, pad_short: bool = False,
                    pad_tail: bool = False, resampler: str = "soxr") -> Iterator[FileEmbeddings]:
        """Decode, window and embed each file in turn; yields one FileEmbeddings per file, in order."""
        for path in paths:
            windows = cut_windows(load_audio(Path(path), resampler), hop, pad_short, pad_tail)
            start_s, end_s = window_times(len(windows), hop)
            yield FileEmbeddings(Path(path), self.embed_examples(log_mel_examples(windows)), start_s, end_s)
