"""Opening a model directory: checksums verified, hostile names and links refused."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import assert_one_line_error, run_cli
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.modeldir import ModelDirectory


@pytest.fixture()
def model_copy(small_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(small_model, copy)
    return copy


def test_doctor_verifies_the_demo_model(demo_model):
    result = run_cli("doctor", "--model", demo_model)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOT pretrained" in result.stdout
    assert "vggish.onnx: sha256 ok" in result.stdout and "pca_params.npz: sha256 ok" in result.stdout
    assert "CPUExecutionProvider" in result.stdout


def test_tampered_model_file_is_refused(model_copy):
    with open(model_copy / "vggish.onnx", "r+b") as f:
        f.seek(-100, 2)
        f.write(b"\x00" * 8)
    with pytest.raises(VggishError, match="sha256 does not match"):
        ModelDirectory(model_copy).read_verified("vggish.onnx")
    result = run_cli("embed", "--model", model_copy, "--device", "cpu", "--out", model_copy / "x.npy", model_copy / "none.npy")
    assert result.returncode == 2
    doctor = run_cli("doctor", "--model", model_copy)
    assert doctor.returncode == 1 and "sha256 does not match" in doctor.stdout


def test_symlinked_model_file_is_refused(model_copy, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(model_copy / "vggish.onnx", outside)
    (model_copy / "vggish.onnx").symlink_to(outside)
    with pytest.raises(VggishError, match="symbolic link"):
        ModelDirectory(model_copy).read_verified("vggish.onnx")


@pytest.mark.parametrize("name", ["../escape.onnx", "/etc/passwd", "sub/dir.onnx", ".."])
def test_manifest_naming_paths_outside_is_refused(model_copy, name):
    manifest = json.loads((model_copy / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": "0" * 64, "bytes": 1}
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VggishError, match="not a plain name"):
        ModelDirectory(model_copy)


def test_missing_or_broken_manifest(tmp_path, model_copy):
    with pytest.raises(VggishError, match="no manifest.json"):
        ModelDirectory(tmp_path)
    (model_copy / "manifest.json").write_text("{not json")
    with pytest.raises(VggishError, match="not valid JSON"):
        ModelDirectory(model_copy)
    result = run_cli("doctor", "--model", tmp_path / "does-not-exist")
    assert result.returncode == 1 and "model directory not found" in result.stdout


def test_missing_model_directory_is_one_error_line(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"")
    result = run_cli("embed", "--model", tmp_path / "nowhere", "--out", tmp_path / "o.npy", tmp_path / "x.npy")
    assert_one_line_error(result, "nowhere", "model directory not found")
