"""Bad export input: one `error:` line naming the cause, exit code 2, nothing left behind."""
from __future__ import annotations

import io

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from vggish_rt.engine.postprocess import pca_params_bytes


def small_checkpoint(path, variables):
    from vggish_rt.export.checkpoint import write_checkpoint

    write_checkpoint(path, variables, version=1)
    return path


def assert_nothing_written(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_missing_checkpoint(tmp_path):
    result = run_cli("export", "--checkpoint", tmp_path / "nope.ckpt", "--out", tmp_path / "m")
    assert_one_line_error(result, "nope.ckpt", "no such checkpoint")
    assert_nothing_written(tmp_path / "m")


def test_checkpoint_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"this is not a checkpoint" * 100)
    result = run_cli("export", "--checkpoint", tmp_path / "junk.ckpt", "--out", tmp_path / "m")
    assert_one_line_error(result, "junk.ckpt", "not a readable TensorFlow checkpoint")
    assert_nothing_written(tmp_path / "m")


def test_checkpoint_lacking_a_variable_names_it(tmp_path):
    ckpt = small_checkpoint(tmp_path / "part.ckpt", {"vggish/conv1/weights": np.zeros((3, 3, 1, 64)),
                                                     "vggish/conv1/biases": np.zeros(64)})
    result = run_cli("export", "--checkpoint", ckpt, "--out", tmp_path / "m")
    assert_one_line_error(result, "lacks variable vggish/conv2/weights")
    assert_nothing_written(tmp_path / "m")


def test_checkpoint_variable_of_wrong_shape_names_it(tmp_path):
    ckpt = small_checkpoint(tmp_path / "bad.ckpt", {"vggish/conv1/weights": np.zeros((3, 3, 1, 32))})
    result = run_cli("export", "--checkpoint", ckpt, "--out", tmp_path / "m")
    assert_one_line_error(result, "vggish/conv1/weights", "[3, 3, 1, 32]", "[3, 3, 1, 64]")
    assert_nothing_written(tmp_path / "m")


def bad_pca_file(path, kind):
    buffer = io.BytesIO()
    if kind == "shape":
        buffer.write(pca_params_bytes(np.zeros((64, 128)), np.zeros((128, 1))))
        fragment = "pca_eigen_vectors has shape [64, 128]"
    elif kind == "pickled":
        np.savez(buffer, pca_eigen_vectors=np.array([{"evil": 1}], dtype=object), pca_means=np.zeros((128, 1)))
        fragment = "pickled"
    elif kind == "missing-key":
        np.savez(buffer, pca_eigen_vectors=np.zeros((128, 128)))
        fragment = "lacks array 'pca_means'"
    else:
        buffer.write(pca_params_bytes(np.full((128, 128), np.nan), np.zeros((128, 1))))
        fragment = "NaN"
    path.write_bytes(buffer.getvalue())
    return fragment


@pytest.mark.parametrize("kind", ["shape", "pickled", "missing-key", "nan"])
def test_bad_pca_params_refused_before_any_work(tmp_path, kind):
    fragment = bad_pca_file(tmp_path / "pca.npz", kind)
    (tmp_path / "any.ckpt").write_bytes(b"never read: the PCA file is checked first")
    result = run_cli("export", "--checkpoint", tmp_path / "any.ckpt", "--pca-params", tmp_path / "pca.npz",
                     "--out", tmp_path / "m")
    assert_one_line_error(result, "pca.npz", fragment)
    assert_nothing_written(tmp_path / "m")


def test_output_directory_that_cannot_be_written(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "any.ckpt").write_bytes(b"never read")
    result = run_cli("export", "--checkpoint", tmp_path / "any.ckpt", "--out", tmp_path / "a-file" / "model")
    assert_one_line_error(result, "cannot write the model directory")
    assert (tmp_path / "a-file").read_text() == "not a directory"


def test_output_directory_holding_other_files_is_not_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    (tmp_path / "any.ckpt").write_bytes(b"never read")
    result = run_cli("export", "--checkpoint", tmp_path / "any.ckpt", "--out", tmp_path / "mine")
    assert_one_line_error(result, "not a model directory")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_demo_and_checkpoint_are_exclusive(tmp_path):
    assert_one_line_error(run_cli("export", "--demo", "--checkpoint", tmp_path / "x", "--out", tmp_path / "m"),
                          "exactly one of")
    assert_nothing_written(tmp_path / "m")
