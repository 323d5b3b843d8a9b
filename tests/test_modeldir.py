"""Opening a model directory: checksums verified, hostile names and links refused."""
from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import onnx
import pytest

from conftest import assert_one_line_error, run_cli
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.graph import pool_before_bias_relu
from vggish_rt.engine.modeldir import ModelDirectory
from vggish_rt.engine.session import create_session


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
    with pytest.raises(VggishError, match="sha256 does not match"):  # the GPU's reader (parsed while hashed)
        ModelDirectory(model_copy).read_model("vggish.onnx")
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


def test_the_gpu_rewrite_moves_each_pool_before_its_bias_and_relu_in_the_models_own_bytes(small_model):
    data, parsed = ModelDirectory(small_model).read_model("vggish.e2e.onnx")
    original = onnx.load_from_string(data)
    rewritten = onnx.load_from_string(pool_before_bias_relu(data, parsed))
    pools = [n for n in rewritten.graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 4
    assert Counter(n.op_type for n in rewritten.graph.node) == \
        Counter(n.op_type for n in original.graph.node) + Counter({"Add": len(pools)})
    consumer = {name: n for n in rewritten.graph.node for name in n.input}
    for pool in pools:  # Conv (no bias) -> MaxPool -> Add(bias) -> Relu
        add = consumer[pool.output[0]]
        assert add.op_type == "Add" and consumer[add.output[0]].op_type == "Relu"
        assert len(next(n for n in rewritten.graph.node if pool.input[0] in n.output).input) == 2
    added = rewritten.graph.initializer[len(original.graph.initializer):]
    assert {t.name for t in added} == {n.input[1] for n in rewritten.graph.node if n.name.endswith("__bias")}
    for model in (original, rewritten):  # every other byte is the original's
        model.graph.ClearField("node")
        del model.graph.initializer[len(original.graph.initializer):]
    assert rewritten == original
    # the same function (the CPU provider rounds a bias fused into its convolution differently: a tolerance)
    windows = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 15600)).astype(np.float32)
    outputs = [create_session(model, "cpu", threads=1).run(None, {"waveform": windows})[0]
               for model in (data, pool_before_bias_relu(data))]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-4 * float(np.abs(outputs[0]).max()))
