"""VGGish for the HEAR benchmark (https://hearbenchmark.com/hear-api.html), through vggish-rt.

    from vggish_rt import hear
    model = hear.load_model("models/vggish")                              # or load_model(): the default model
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)  # [n, T, 128] float32, [n, T] ms
    scene = hear.get_scene_embeddings(audio, model)                       # [n, 128] float32

``audio``: [n sounds, samples] at ``model.sample_rate`` (16 kHz unless asked otherwise), float in [-1, 1],
as a torch tensor (returned as torch tensors on its device), a TensorFlow tensor, or a NumPy array. All
sounds of a call are embedded in shared batches (HEAR's torchvggish baseline embeds one sound at a time).

- Timestamps are exact: the centre of each example's 15,600 samples, ``i * hop + 487.5`` ms.
- Rates other than 16 kHz are resampled as the CLI resamples (``resampler``: soxr, resampy, or onnx:
  resampy's filter inside the end-to-end graph, for a hop that starts windows on whole samples).
- A sound shorter than one example (0.975 s) gets one, zero-padded, so that every sound has an embedding
  (the reference gives none); no window runs past the end of a longer sound.
- ``relu=True`` gives the pre-2020 reference's post-ReLU embeddings (what HEAR's baseline used); the default
  is the current reference's, before ReLU. ``hop`` defaults to the reference's 0.96 s; HEAR's event tasks
  score onsets within 50 ms, for which ``hop=0.05`` suits (one example per 50 ms, 19x the work).

The HEAR tools accept a model that is a ``torch.nn.Module`` (or a ``tf.Module``): the model is one when
torch is installed (``pip install 'vggish-rt[hear]'``), else a ``tf.Module`` when TensorFlow is; it holds
no weights of its own (the ONNX sessions do), so ``model.to(device)`` changes nothing: the device is
``load_model``'s ``device``.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.embedder import Embedder
from vggish_rt.engine.errors import ArgumentError, DemoModelWarning, VggishError
from vggish_rt.engine.sources import ReadOptions
from vggish_rt.engine.windows import Hop

SAMPLE_RATES = (16_000, 22_050, 44_100, 48_000)  # the rates HEAR accepts
CENTRE_MS = 1000.0 * params.EXAMPLE_SAMPLES / params.SAMPLE_RATE / 2  # 487.5 ms into each example


def _module_base() -> type:
    """The class the HEAR tools check a model against: torch's Module, else TensorFlow's, else none."""
    try:
        import torch

        return torch.nn.Module
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.Module
    except ImportError:
        return object


class VggishHear(_module_base()):  # type: ignore[misc]
    """A HEAR model: ``sample_rate``, ``scene_embedding_size``, ``timestamp_embedding_size`` (128), and the
    vggish-rt Embedder that runs it."""

    def __init__(self, embedder: Embedder, sample_rate: int, hop: Hop, resampler: str) -> None:
        super().__init__()
        self.embedder, self.sample_rate = embedder, sample_rate
        self.scene_embedding_size = self.timestamp_embedding_size = params.EMBEDDING_SIZE
        self.read = ReadOptions(hop, pad_short=True, resampler=resampler)


def load_model(model_file_path: str = "", sample_rate: int = params.SAMPLE_RATE, relu: bool = False,
               hop: float = params.EXAMPLE_HOP_SECONDS, device: str = "auto", precision: str = "fp32",
               resampler: str = "soxr") -> VggishHear:
    """The HEAR model of a vggish-rt model directory (``model_file_path``: the directory or its
    manifest.json; empty: the default model). ``sample_rate``: the rate of the audio it will be given, one
    of HEAR's; ``relu``, ``hop`` (seconds, whole 10 ms frames): see the module's docstring; ``device``,
    ``precision``: Embedder's."""
    if sample_rate not in SAMPLE_RATES:
        raise ArgumentError("sample_rate", sample_rate, f"HEAR accepts {', '.join(map(str, SAMPLE_RATES))}")
    directory = Path(model_file_path) if model_file_path else None
    if directory is not None and directory.name == "manifest.json":
        directory = directory.parent
    embedder = Embedder(directory, device=device, precision=precision, relu=relu)
    if not embedder.model.pretrained:  # Embedder warned where it was made, here; say so to load_model's caller
        warnings.warn(embedder.model.describe(), DemoModelWarning, stacklevel=2)
    return VggishHear(embedder, sample_rate, Hop.from_seconds(hop), resampler)


def get_timestamp_embeddings(audio: Any, model: VggishHear) -> tuple[Any, Any]:
    """``audio`` [n, samples] at ``model.sample_rate`` -> (embeddings float32 [n, T, 128], timestamps float32
    [n, T], the milliseconds of each example's centre), as the type ``audio`` came in."""
    sounds, back = _to_numpy(audio)
    if sounds.ndim != 2:
        raise VggishError(f"audio must be [n sounds, samples], got {list(sounds.shape)}")
    results = model.embedder.embed([(sound, model.sample_rate) for sound in sounds], options=model.read)
    count = len(results[0].embeddings) if results else 0
    embeddings = np.stack([r.embeddings for r in results]) if results else np.empty((0, 0, params.EMBEDDING_SIZE), np.float32)
    timestamps = (np.arange(count) * model.read.hop.seconds * 1000.0 + CENTRE_MS).astype(np.float32)
    return back(embeddings), back(np.broadcast_to(timestamps, (len(sounds), count)).copy())


def get_scene_embeddings(audio: Any, model: VggishHear) -> Any:
    """``audio`` [n, samples] at ``model.sample_rate`` -> float32 [n, 128]: each sound's timestamp embeddings
    averaged over time, as the type ``audio`` came in."""
    sounds, back = _to_numpy(audio)
    embeddings, _ = get_timestamp_embeddings(sounds, model)
    return back(embeddings.mean(axis=1, dtype=np.float32))


def _to_numpy(audio: Any) -> tuple[np.ndarray, Any]:
    """(float32 NumPy array of ``audio``, a function returning an array as ``audio``'s type and device)."""
    module = type(audio).__module__
    if module.startswith("torch"):
        import torch

        device = audio.device
        return audio.detach().to("cpu", torch.float32).numpy(), lambda a: torch.from_numpy(a).to(device)
    if module.startswith("tensorflow"):
        import tensorflow as tf

        return np.asarray(audio.numpy(), np.float32), tf.convert_to_tensor
    return np.asarray(audio, np.float32), lambda a: a
