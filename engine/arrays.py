"""Reading embedding arrays and writing single arrays or files atomically."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError


def load_embeddings(path: Path) -> np.ndarray:
    """Memory-map an embeddings ``.npy``: float [N,128]; never unpickled."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise VggishError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as exc:
        raise VggishError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise VggishError(f"{path}: expected a float .npy array, got {getattr(array, 'dtype', type(array).__name__)}")
    if array.ndim != 2 or array.shape[1] != params.EMBEDDING_SIZE:
        raise VggishError(f"{path}: shape {list(array.shape)}, expected [N, {params.EMBEDDING_SIZE}]")
    return array


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise VggishError(f"{path}: cannot write ({exc.strerror})") from None


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Save one array as ``.npy`` atomically (never pickled)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_bytes_atomic(path, buffer.getvalue())
