"""What users name on the command line, expanded into sources.

An INPUT is an audio file, a directory (searched recursively for audio), a
``@list.txt`` of paths (one a line; blank lines and ``#`` comments skipped), or
a spectrogram array: ``.npy`` [N,96,64] of any float dtype, or the seed
notebook's raw ``.dat`` (float64 little-endian, N x 96 x 64, no header).
Spectrogram arrays are memory-mapped, never read whole.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError

AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                            ".au", ".snd", ".caf", ".w64", ".rf64", ".voc", ".sf", ".htk", ".mat", ".pvf", ".xi", ".sd2"})
SPECTROGRAM_SUFFIXES = frozenset({".npy", ".dat"})
EXAMPLE_SHAPE = (params.NUM_FRAMES, params.NUM_BANDS)
_DAT_EXAMPLE_BYTES = params.NUM_FRAMES * params.NUM_BANDS * 8


def is_spectrogram(path: Path) -> bool:
    return path.suffix.lower() in SPECTROGRAM_SUFFIXES


def expand_inputs(items: list[str]) -> list[Path]:
    """Expand INPUT arguments into files, in the order given (directories sorted).

    Raises VggishError for a missing path, an unreadable list, or a directory
    holding no audio.
    """
    paths: list[Path] = []
    for item in items:
        if item.startswith("@"):
            listing = Path(item[1:])
            try:
                lines = listing.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise VggishError(f"{listing}: cannot read the input list ({getattr(exc, 'strerror', None) or exc})") from None
            entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
            paths.extend(expand_inputs([e for e in entries if not e.startswith("@")]))
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise VggishError(f"{path}: directory holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES)[:6])}, ...)")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        elif path.exists():
            raise VggishError(f"{path}: not a regular file")
        else:
            raise VggishError(f"{path}: no such file or directory")
    if not paths:
        raise VggishError("no inputs given")
    return paths


def open_spectrograms(path: Path) -> np.ndarray:
    """Memory-map a spectrogram file as a read-only float array [N, 96, 64].

    ``.npy``: any float dtype, never unpickled; ``.dat``: raw float64
    little-endian whose size must be a multiple of 96 x 64 x 8 bytes.
    """
    path = Path(path)
    if path.suffix.lower() == ".dat":
        size = path.stat().st_size
        if size == 0 or size % _DAT_EXAMPLE_BYTES:
            raise VggishError(f"{path}: size {size} bytes is not a positive multiple of 96 x 64 x 8 "
                              "(a raw float64 spectrogram .dat)")
        return np.memmap(path, dtype="<f8", mode="r", shape=(size // _DAT_EXAMPLE_BYTES, *EXAMPLE_SHAPE))
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise VggishError(f"{path}: refused ({exc})") from None
    except (OSError, EOFError) as exc:
        raise VggishError(f"{path}: not a readable .npy file ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise VggishError(f"{path}: not a single .npy array")
    if array.dtype.kind != "f":
        raise VggishError(f"{path}: dtype {array.dtype} is not floating point")
    if array.ndim != 3 or array.shape[1:] != EXAMPLE_SHAPE:
        raise VggishError(f"{path}: shape {list(array.shape)}, expected [N, 96, 64]")
    return array
