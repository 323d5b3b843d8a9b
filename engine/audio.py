"""Decoding audio files to 16 kHz mono float32, as the reference reads them.

Any format libsndfile reads (WAV of any PCM width or float, FLAC, OGG/Vorbis,
AIFF, ...). Integer PCM is scaled to [-1, 1) as the reference's int16 / 32768
(libsndfile scales every integer width the same way); channels are averaged;
the rate is converted with soxr (default, high quality) or resampy (the
reference's resampler, when installed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError

RESAMPLERS = ("soxr", "resampy")
MAX_SAMPLE_RATE = 1_000_000  # Hz; anything above is a corrupt header, not audio


def read_info(path: Path) -> sf._SoundFileInfo:
    """libsndfile's header info, or a VggishError naming the file and the cause."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise VggishError(f"{path}: not readable audio ({_cause(exc)})") from None
    if not 0 < info.samplerate <= MAX_SAMPLE_RATE:
        raise VggishError(f"{path}: absurd sample rate {info.samplerate} Hz")
    if info.channels < 1:
        raise VggishError(f"{path}: has no channels")
    return info


def resample(waveform: np.ndarray, rate: int, resampler: str = "soxr") -> np.ndarray:
    """Mono float32 samples at ``rate`` Hz -> float32 at 16 kHz."""
    if rate == params.SAMPLE_RATE or len(waveform) == 0:
        return waveform.astype(np.float32, copy=False)
    if resampler == "soxr":
        import soxr

        return soxr.resample(waveform, rate, params.SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    if resampler == "resampy":
        try:
            import resampy
        except ImportError:
            raise VggishError("--resampler resampy needs resampy: pip install 'vggish-rt[resampy]'") from None
        return resampy.resample(waveform.astype(np.float64), rate, params.SAMPLE_RATE).astype(np.float32)
    raise VggishError(f"--resampler {resampler!r}: expected one of {', '.join(RESAMPLERS)}")


def load_audio(path: Path, resampler: str = "soxr") -> np.ndarray:
    """Decode ``path`` -> float32 [S] mono samples at 16 kHz.

    Raises VggishError for unreadable files and for NaN or Inf samples.
    """
    path = Path(path)
    info = read_info(path)
    try:
        data = sf.read(str(path), dtype="float32", always_2d=True)[0]
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise VggishError(f"{path}: cannot decode ({_cause(exc)})") from None
    if not np.isfinite(data).all():
        raise VggishError(f"{path}: holds NaN or Inf samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return resample(mono, info.samplerate, resampler)


def _cause(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
