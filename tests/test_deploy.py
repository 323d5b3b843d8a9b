"""Deployment artifacts: the e2e models stand alone and give the same numbers outside Python."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from test_audio import EXAMPLES
from vggish_rt.engine.audio import load_audio
from vggish_rt.engine.postprocess import Postprocessor
from vggish_rt.engine.windows import cut_windows

NODE_PROJECT = Path(__file__).parent / "node"


def example_windows() -> np.ndarray:
    """float32 [N,15600]: the example recordings, windowed as the CLI does."""
    return np.ascontiguousarray(np.concatenate([cut_windows(load_audio(p), pad_short=True)
                                                for p in sorted(EXAMPLES.iterdir()) if p.suffix in (".wav", ".oga")]))


def run_python(model: Path, windows: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"waveform": windows})[0]


def test_e2e_pca_model_equals_numpy_postprocessor_byte_for_byte(small_model):
    model = onnx.load(str(small_model / "vggish.e2e.pca.onnx"))
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("waveform", "quantized_embedding")
    assert out.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    props = {p.key: p.value for p in model.metadata_props}
    assert props["pretrained"] == "false" and "uint8" in props["outputs"] and props["frontend.sample_rate_hz"] == "16000"
    windows = example_windows()
    quantized = run_python(small_model / "vggish.e2e.pca.onnx", windows)
    expected = Postprocessor.from_file(small_model / "pca_params.npz").postprocess(run_python(small_model / "vggish.e2e.onnx", windows))
    assert quantized.dtype == np.uint8 and quantized.shape == (len(windows), 128)
    np.testing.assert_array_equal(quantized, expected)
    assert len(np.unique(quantized)) > 50, "quantized embeddings collapsed to a few values"
    manifest = json.loads((small_model / "manifest.json").read_text())
    assert manifest["parity"]["e2e_vs_numpy_frontend"]["pca_uint8_mismatches"] == 0


@pytest.fixture(scope="module")
def onnxruntime_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of tests/node with onnxruntime-node installed from the npm registry (scripts off)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the cross-runtime test: node and npm are missing")
        pytest.skip("node and npm are not installed")
    project = tmp_path_factory.mktemp("node")
    for name in ("package.json", "package-lock.json", "embed.mjs"):
        shutil.copy(NODE_PROJECT / name, project / name)
    result = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=project,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return project


@pytest.mark.parametrize("name, dtype", [("vggish.e2e.onnx", np.float32), ("vggish.e2e.pca.onnx", np.uint8)])
def test_onnxruntime_node_reproduces_python_embeddings(small_model, onnxruntime_node, tmp_path, name, dtype):
    windows = example_windows()
    (tmp_path / "windows.f32").write_bytes(windows.astype("<f4").tobytes())
    result = subprocess.run(["node", "embed.mjs", str((small_model / name).resolve()), str(tmp_path / "windows.f32"),
                             str(len(windows)), str(tmp_path / "out.bin")],
                            cwd=onnxruntime_node, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout.strip().splitlines()[-1])
    assert described["dims"] == [len(windows), 128]
    node = np.frombuffer((tmp_path / "out.bin").read_bytes(), dtype).reshape(len(windows), 128)
    python = run_python(small_model / name, windows)
    if dtype == np.uint8:
        np.testing.assert_array_equal(node, python)
    else:
        assert np.abs(node - python).max() <= 1e-5


def test_cpp_example_builds_and_reproduces_python_embeddings(small_model, onnxruntime_node, tmp_path):
    """examples/cpp with onnxruntime's C++ API: headers from Debian, the library from the npm package."""
    import soundfile as sf

    if shutil.which("apt-get") is None and not os.environ.get("CI"):
        pytest.skip("needs apt-get for libsndfile1-dev and the onnxruntime headers")
    source = Path(__file__).parent.parent / "examples" / "cpp"
    prepared = subprocess.run([str(source / "onnxruntime-from-registries.sh"), str(tmp_path / "onnxruntime"),
                               str(onnxruntime_node / "node_modules")], capture_output=True, text=True, timeout=900)
    assert prepared.returncode == 0, prepared.stderr
    for step in (["cmake", "-S", str(source), "-B", str(tmp_path / "build"), f"-DONNXRUNTIME_ROOT={tmp_path / 'onnxruntime'}"],
                 ["cmake", "--build", str(tmp_path / "build")]):
        built = subprocess.run(step, capture_output=True, text=True, timeout=900)
        assert built.returncode == 0, built.stdout + built.stderr
    audio = load_audio(EXAMPLES / "Front_Center.wav")  # 16 kHz float32, as the Python job decodes it
    sf.write(tmp_path / "clip.wav", np.concatenate([audio, audio, audio]), 16000, subtype="FLOAT")
    windows = np.ascontiguousarray(cut_windows(np.concatenate([audio, audio, audio])))
    for name in ("vggish.e2e.onnx", "vggish.e2e.pca.onnx"):
        result = subprocess.run([str(tmp_path / "build" / "vggish_embed"), str(small_model / name), str(tmp_path / "clip.wav")],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        rows = np.array([[float(v) for v in line.split(",")] for line in result.stdout.splitlines()])
        python = run_python(small_model / name, windows)
        np.testing.assert_allclose(rows[:, 0], np.arange(len(windows)) * 0.96, atol=0.005)
        assert np.abs(rows[:, 1:] - python).max() <= (0 if name.endswith("pca.onnx") else 1e-5), name
    refused = subprocess.run([str(tmp_path / "build" / "vggish_embed"), str(small_model / "vggish.e2e.onnx"),
                              str(EXAMPLES / "Front_Center.wav")], capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1 and "resample it first" in refused.stderr
