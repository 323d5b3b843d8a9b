"""Post-processing: byte-exact against the reference formula; PCA fitting whitens."""
from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest

from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.postprocess import PcaFitter, Postprocessor, load_pca_params, pca_params_bytes


def reference_postprocess(embeddings, pca_matrix, pca_means):
    """vggish_postprocess.Postprocessor.postprocess, transcribed."""
    pca_applied = np.dot(pca_matrix, (embeddings.T - pca_means)).T
    clipped = np.clip(pca_applied, -2.0, 2.0)
    return ((clipped - -2.0) * (255.0 / (2.0 - -2.0))).astype(np.uint8)


def test_postprocess_is_byte_exact():
    rng = np.random.default_rng(0)
    matrix, means = rng.standard_normal((128, 128)) * 0.2, rng.standard_normal((128, 1))
    embeddings = rng.standard_normal((500, 128)).astype(np.float32)
    expected = reference_postprocess(embeddings, matrix, means)
    np.testing.assert_array_equal(Postprocessor(matrix, means).postprocess(embeddings), expected)
    assert expected.min() == 0 and expected.max() == 255  # both clip edges exercised


def test_quantization_truncates_at_edges():
    identity = Postprocessor(np.eye(128), np.zeros((128, 1)))
    values = np.zeros((1, 128), np.float32)
    values[0, :5] = [2.0, -2.0, 1.999, 3.5, -7.0]
    q = identity.postprocess(values)
    assert q[0, :5].tolist() == [255, 0, 254, 255, 0]
    assert q[0, 5] == 127  # 0 -> 127.5 truncated


def test_nan_refused():
    identity = Postprocessor(np.eye(128), np.zeros((128, 1)))
    bad = np.zeros((2, 128), np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(VggishError, match="NaN"):
        identity.postprocess(bad)


def test_dequantize_within_half_step():
    identity = Postprocessor(np.eye(128), np.zeros((128, 1)))
    values = np.random.default_rng(2).uniform(-1.99, 1.99, (50, 128)).astype(np.float32)
    back = Postprocessor.dequantize(identity.postprocess(values))
    assert np.abs(back - values).max() <= 2.0 / 255 + 1e-6


def test_fitted_pca_decorrelates_and_whitens():
    rng = np.random.default_rng(3)
    mixing = rng.standard_normal((128, 128))
    embeddings = (rng.standard_normal((20000, 128)) * np.linspace(0.1, 3, 128)) @ mixing + 5.0
    fitter = PcaFitter()
    for start in range(0, len(embeddings), 3000):  # streaming
        fitter.add(embeddings[start:start + 3000])
    eigen, means = fitter.params()
    projected = Postprocessor(eigen, means).project(embeddings)
    covariance = np.cov(projected, rowvar=False)
    np.testing.assert_allclose(covariance, np.eye(128), atol=1e-4)
    np.testing.assert_allclose(means[:, 0], embeddings.mean(axis=0), atol=1e-9)


def test_pca_params_round_trip_is_deterministic(tmp_path):
    rng = np.random.default_rng(4)
    matrix, means = rng.standard_normal((128, 128)), rng.standard_normal((128, 1))
    data = pca_params_bytes(matrix, means)
    assert data == pca_params_bytes(matrix, means)
    (tmp_path / "p.npz").write_bytes(data)
    loaded = load_pca_params(tmp_path / "p.npz")
    np.testing.assert_array_equal(loaded[0], matrix)
    np.testing.assert_array_equal(loaded[1], means)


@pytest.mark.parametrize("declared, fragment", [((100_000, 100_000), "has shape [100000, 100000]"),
                                                ((128, 128), "declares 2,097,280 bytes")])
def test_pca_file_declaring_too_much_is_refused_before_reading(tmp_path, declared, fragment):
    """A few kilobytes of zip whose array header (or entry) declares gigabytes: refused from the header."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": declared})
    body = header.getvalue() + bytes(2 * 1024 * 1024 if declared == (128, 128) else 1024)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pca_eigen_vectors.npy", body)
        archive.writestr("pca_means.npy", body)
    assert path.stat().st_size < 10_000
    with pytest.raises(VggishError, match=re.escape(fragment)):
        load_pca_params(path)
