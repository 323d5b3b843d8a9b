"""The reference post-processor: PCA, whitening, clipping and 8-bit quantization.

Exactly ``vggish_postprocess.Postprocessor``: for embeddings E [N,128]::

    Y = (P @ (E.T - mu)).T        P = pca_eigen_vectors [128,128], mu = pca_means [128,1]
    q = uint8((clip(Y, -2, 2) + 2) * 255 / 4)     # astype truncates: 1.999 -> 254

and PCA fitting (with whitening) in the same layout, streaming over batches.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.inputs import read_npy_header

_QUANT_SCALE = 255.0 / (params.QUANTIZE_MAX_VAL - params.QUANTIZE_MIN_VAL)


def load_pca_params(source: Path | bytes, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate PCA params from an ``.npz`` path or its bytes.

    Returns (eigen_vectors float64 [128,128], means float64 [128,1]). Never
    unpickles; refuses missing keys, wrong shapes, non-float dtypes and
    non-finite values with a VggishError naming the file.
    """
    label = name or str(source if isinstance(source, Path) else "PCA params")
    expected = {params.PCA_EIGEN_VECTORS_NAME: (params.EMBEDDING_SIZE, params.EMBEDDING_SIZE),
                params.PCA_MEANS_NAME: (params.EMBEDDING_SIZE, 1)}
    try:
        _check_declared_sizes(io.BytesIO(source) if isinstance(source, bytes) else source, label, expected)
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        with np.load(handle, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in (params.PCA_EIGEN_VECTORS_NAME, params.PCA_MEANS_NAME) if key in npz.files}
    except FileNotFoundError:
        raise VggishError(f"{label}: no such file") from None
    except ValueError as exc:
        # np.load raises ValueError for object (pickled) arrays when allow_pickle=False.
        raise VggishError(f"{label}: refused, holds pickled data or is malformed ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise VggishError(f"{label}: not a readable .npz file ({exc})") from None
    for key, shape in expected.items():
        if key not in arrays:
            raise VggishError(f"{label}: lacks array {key!r} (expected {key} {list(shape)})")
        array = arrays[key]
        if array.dtype.kind != "f":
            raise VggishError(f"{label}: {key} has dtype {array.dtype}, expected a float dtype")
        if array.shape != shape:
            raise VggishError(f"{label}: {key} has shape {list(array.shape)}, expected {list(shape)}")
        if not np.isfinite(array).all():
            raise VggishError(f"{label}: {key} holds NaN or Inf")
    return (arrays[params.PCA_EIGEN_VECTORS_NAME].astype(np.float64),
            arrays[params.PCA_MEANS_NAME].astype(np.float64))


# The most a PCA array may take once decompressed: [128,128] float64 is 131 KB.
MAX_PCA_ARRAY_BYTES = 1 << 20


def _check_declared_sizes(archive_file: Path | io.BytesIO, label: str, expected: dict[str, tuple[int, int]]) -> None:
    """Refuse, before any array is read, a PCA array whose zip entry or .npy header
    declares more than it may hold (a small compressed file can otherwise make
    NumPy allocate gigabytes first and check the shape after)."""
    with zipfile.ZipFile(archive_file) as archive:
        for key, shape in expected.items():
            try:
                entry = archive.getinfo(f"{key}.npy")
            except KeyError:
                continue  # reported as a missing array below
            if entry.file_size > MAX_PCA_ARRAY_BYTES:
                raise VggishError(f"{label}: {key} declares {entry.file_size:,} bytes (PCA arrays take at most "
                                  f"{MAX_PCA_ARRAY_BYTES:,}); refused before reading it")
            with archive.open(entry) as member:
                declared, _, dtype = read_npy_header(member)
            if dtype.hasobject:
                raise VggishError(f"{label}: refused, holds pickled data ({key} is an object array)")
            if declared != shape:
                raise VggishError(f"{label}: {key} has shape {list(declared)}, expected {list(shape)}")


def pca_params_bytes(eigen_vectors: np.ndarray, means: np.ndarray) -> bytes:
    """PCA params as ``.npz`` bytes in the released layout (float64, no pickle).

    Written with fixed zip timestamps, so the same params give the same bytes.
    """
    arrays = {params.PCA_EIGEN_VECTORS_NAME: np.asarray(eigen_vectors, np.float64),
              params.PCA_MEANS_NAME: np.asarray(means, np.float64).reshape(-1, 1)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w") as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


class Postprocessor:
    """PCA + whitening + 8-bit quantization, as the reference does it."""

    def __init__(self, eigen_vectors: np.ndarray, means: np.ndarray) -> None:
        self.eigen_vectors = np.asarray(eigen_vectors, np.float64)  # [128,128]
        self.means = np.asarray(means, np.float64).reshape(-1, 1)   # [128,1]

    @classmethod
    def from_file(cls, source: Path | bytes, name: str | None = None) -> "Postprocessor":
        return cls(*load_pca_params(source, name))

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Embeddings [N,128] (any float) -> PCA-whitened float64 [N,128], unclipped."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != params.EMBEDDING_SIZE:
            raise VggishError(f"embeddings must have shape [N, {params.EMBEDDING_SIZE}], got {list(embeddings.shape)}")
        if not np.isfinite(embeddings).all():
            raise VggishError("embeddings hold NaN or Inf; cannot quantize them")
        return np.dot(self.eigen_vectors, (embeddings.T - self.means)).T

    def postprocess(self, embeddings: np.ndarray) -> np.ndarray:
        """Embeddings [N,128] -> uint8 [N,128], byte for byte the reference's."""
        clipped = np.clip(self.project(embeddings), params.QUANTIZE_MIN_VAL, params.QUANTIZE_MAX_VAL)
        return ((clipped - params.QUANTIZE_MIN_VAL) * _QUANT_SCALE).astype(np.uint8)

    @staticmethod
    def dequantize(quantized: np.ndarray) -> np.ndarray:
        """uint8 [N,128] -> float32 [N,128] in the whitened PCA space.

        Each byte maps to the middle of the interval that truncation sent to it,
        so the error is at most half a step (2/255) inside [-2, 2].
        """
        q = np.asarray(quantized)
        if q.dtype != np.uint8:
            raise VggishError(f"quantized embeddings must be uint8, got {q.dtype}")
        return ((q.astype(np.float32) + 0.5) / np.float32(_QUANT_SCALE) + np.float32(params.QUANTIZE_MIN_VAL)).astype(np.float32)


class PcaFitter:
    """Streaming PCA with whitening over embeddings [N,128], in float64.

    Feed batches with :meth:`add`; :meth:`params` returns (eigen_vectors, means)
    in the released layout: rows of eigen_vectors are output dimensions, sorted
    by decreasing variance, each scaled by 1/sqrt(its variance), so projected
    embeddings are decorrelated with unit variance.
    """

    def __init__(self) -> None:
        self.count = 0
        self._shift: np.ndarray | None = None
        self._sum = np.zeros(params.EMBEDDING_SIZE)
        self._outer = np.zeros((params.EMBEDDING_SIZE, params.EMBEDDING_SIZE))

    def add(self, embeddings: np.ndarray) -> None:
        x = np.asarray(embeddings, np.float64)
        if x.ndim != 2 or x.shape[1] != params.EMBEDDING_SIZE:
            raise VggishError(f"embeddings must have shape [N, {params.EMBEDDING_SIZE}], got {list(x.shape)}")
        if not np.isfinite(x).all():
            raise VggishError("embeddings hold NaN or Inf; cannot fit PCA")
        if len(x) == 0:
            return
        if self._shift is None:  # shifting by a rough mean keeps the sums well conditioned
            self._shift = x.mean(axis=0)
        x = x - self._shift
        self.count += len(x)
        self._sum += x.sum(axis=0)
        self._outer += x.T @ x

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count <= params.EMBEDDING_SIZE:
            raise VggishError(f"PCA needs more than {params.EMBEDDING_SIZE} embeddings, got {self.count}")
        mean_shifted = self._sum / self.count
        covariance = (self._outer - self.count * np.outer(mean_shifted, mean_shifted)) / (self.count - 1)
        variances, vectors = np.linalg.eigh(covariance)
        order = np.argsort(variances)[::-1]
        variances, vectors = np.maximum(variances[order], 0.0), vectors[:, order]
        floor = variances[0] * 1e-12  # keeps directions of zero variance finite
        eigen_vectors = vectors.T / np.sqrt(variances + floor)[:, None]
        means = (mean_shifted + self._shift).reshape(-1, 1)
        return eigen_vectors, means
