"""Export: TF-slim checkpoint -> frozen graph -> ONNX, checked against TensorFlow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from conftest import SMALL_WIDTHS, tf_embeddings
from vggish_rt.engine.manifest import sha256_file
from vggish_rt.engine.postprocess import load_pca_params

def cpu_session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_v1_export_matches_tensorflow_within_1e5(v1_export, tmp_path):
    rng = np.random.default_rng(99)
    features = rng.normal(-1.5, 2.0, (5, 96, 64)).astype(np.float32)
    expected = tf_embeddings(v1_export["checkpoint"], features)
    actual = cpu_session(v1_export["dir"] / "vggish.onnx").run(None, {"features": features})[0]
    relative = np.abs(actual - expected).max() / np.abs(expected).max()
    assert relative < 1e-5
    # pre-activation by default: the output has negative values
    assert (actual < 0).any()


def test_v1_export_onnx_interface(v1_export):
    model = onnx.load(str(v1_export["dir"] / "vggish.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "features" and out.name == "embedding"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["N", 96, 64]
    session = cpu_session(v1_export["dir"] / "vggish.onnx")
    for n in (1, 3):  # dynamic batch
        assert session.run(None, {"features": np.zeros((n, 96, 64), np.float32)})[0].shape == (n, 128)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["pretrained"] == "true" and props["source_checkpoint_sha256"] == sha256_file(v1_export["checkpoint"])


def test_v1_manifest_contents_and_checksums(v1_export):
    directory = v1_export["dir"]
    manifest = json.loads((directory / "manifest.json").read_text())
    assert any(line.startswith("checking parity") for line in v1_export["reported"])
    assert manifest["reduced_network"] == {"conv": list(SMALL_WIDTHS.conv), "fc": SMALL_WIDTHS.fc}
    int8 = {"vggish.int8.onnx", "vggish.e2e.int8.onnx"} if "skipped" not in manifest["parity"]["int8_vs_fp32"] else set()
    assert set(manifest["files"]) == {"vggish.onnx", "vggish.fp16.onnx", "vggish.e2e.onnx", "vggish.e2e.fp16.onnx",
                                      "vggish.e2e.pca.onnx", "pca_params.npz", *int8}
    for name, entry in manifest["files"].items():
        assert sha256_file(directory / name) == entry["sha256"]
        assert (directory / name).stat().st_size == entry["bytes"]
    assert manifest["pretrained"] is True and manifest["relu_output"] is False
    assert manifest["source_checkpoint"]["sha256"] == sha256_file(v1_export["checkpoint"])
    assert manifest["source_checkpoint"]["version"] == 1
    for case in ("seeded", "silence", "extreme"):
        assert manifest["parity"]["fp32_vs_tensorflow"][case]["relative"] < 1e-5
    assert manifest["frontend"]["mel_bands"] == 64 and manifest["frontend"]["example_samples"] == 15600
    assert {"tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime"} <= set(manifest["tools"])
    assert manifest["models"]["vggish.onnx"]["inputs"][0] == {"name": "features", "shape": ["N", 96, 64], "dtype": "float32"}
    # the PCA params were copied exactly
    eigen, means = load_pca_params(directory / "pca_params.npz")
    np.testing.assert_array_equal(eigen, v1_export["pca"][0])
    np.testing.assert_array_equal(means, v1_export["pca"][1])
    assert not list(directory.parent.glob(".*partial*")), "staging directory left behind"


def test_fp16_model_error_bound(v1_export):
    """float16 inside, float32 at the boundary; its error is recorded and small."""
    model = onnx.load(str(v1_export["dir"] / "vggish.fp16.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    features = np.random.default_rng(5).normal(-1.0, 2.0, (8, 96, 64)).astype(np.float32)
    full = cpu_session(v1_export["dir"] / "vggish.onnx").run(None, {"features": features})[0]
    half = cpu_session(v1_export["dir"] / "vggish.fp16.onnx").run(None, {"features": features})[0]
    relative = np.abs(half - full).max() / np.abs(full).max()
    assert relative < 5e-3
    recorded = v1_export["manifest"]["parity"]["fp16_vs_fp32"]
    assert 0 < recorded["relative"] < 5e-3 and recorded["min_cosine"] > 0.9999


def test_v2_checkpoint_with_relu_output(tmp_path):
    """A V2 checkpoint exports too; --relu-output gives the pre-2020 non-negative embeddings."""
    from conftest import random_variables
    from vggish_rt.export.checkpoint import write_checkpoint
    from vggish_rt.export.exporter import export_model

    write_checkpoint(tmp_path / "model.ckpt", random_variables(77, SMALL_WIDTHS), version=2)
    assert (tmp_path / "model.ckpt.index").is_file()
    export_model(tmp_path / "model.ckpt", tmp_path / "out", relu_output=True, widths=SMALL_WIDTHS)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["relu_output"] is True and manifest["source_checkpoint"]["version"] == 2
    assert "pca_params.npz" not in manifest["files"]
    features = np.random.default_rng(3).normal(-1.0, 2.0, (4, 96, 64)).astype(np.float32)
    expected = tf_embeddings(tmp_path / "model.ckpt", features, relu_output=True)
    actual = cpu_session(tmp_path / "out" / "vggish.onnx").run(None, {"features": features})[0]
    assert np.abs(actual - expected).max() / np.abs(expected).max() < 1e-5
    assert (actual >= 0).all() and (actual == 0).any()


def test_demo_model_is_labelled_and_has_sane_activations(demo_model):
    """Demo: not pretrained everywhere; He scaling keeps embeddings neither vanishing nor exploding on real log-mel."""
    from vggish_rt.engine.frontend import log_mel_examples
    from vggish_rt.engine.windows import cut_windows
    from vggish_rt.export.demo import demo_audio

    manifest = json.loads((demo_model / "manifest.json").read_text())
    assert manifest["pretrained"] is False and manifest["demo"] is True
    for model_file in sorted(demo_model.glob("*.onnx")):  # every file describes itself (issue 9)
        model = onnx.load(str(model_file), load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props}
        assert props["pretrained"] == "false", model_file.name
        assert props["source_checkpoint_sha256"] == manifest["source_checkpoint"]["sha256"], model_file.name
        assert (props["producer"], props["producer_version"]) == (model.producer_name, model.producer_version) \
            == ("vggish-rt", manifest["tools"]["vggish-rt"]), model_file.name
        assert props["output_activation"] == "none (pre-activation)" and props["frontend.sample_rate_hz"] == "16000"
        assert props["inputs"].startswith(model.graph.input[0].name) and props["outputs"].startswith(model.graph.output[0].name)
    clips = demo_audio(seed=5, clips=12, seconds=3.0)
    examples = np.concatenate([log_mel_examples(cut_windows(c)) for c in clips])
    embeddings = cpu_session(demo_model / "vggish.onnx").run(None, {"features": examples})[0]
    assert 0.05 < embeddings.std() < 20.0
    assert (embeddings.std(axis=0) > 1e-3).all(), "some embedding dimensions are constant"
    normed = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    assert (normed @ normed.T)[np.triu_indices(len(normed), 1)].min() < 0.9, "all inputs embed alike"


def test_demo_pca_params_whiten_demo_embeddings(demo_model):
    from vggish_rt.engine.frontend import log_mel_examples
    from vggish_rt.engine.postprocess import Postprocessor
    from vggish_rt.engine.windows import cut_windows
    from vggish_rt.export.demo import demo_audio

    examples = np.concatenate([log_mel_examples(cut_windows(c)) for c in demo_audio()])
    embeddings = cpu_session(demo_model / "vggish.onnx").run(None, {"features": examples})[0]
    projected = Postprocessor.from_file(demo_model / "pca_params.npz").project(embeddings)
    covariance = np.cov(projected, rowvar=False)
    np.testing.assert_allclose(np.diag(covariance)[:64], 1.0, atol=1e-3)


def test_end_to_end_model_matches_numpy_frontend_on_real_recordings(v1_export):
    """vggish.e2e.onnx: 16 kHz windows in, the frontend inside; parity with NumPy frontend + network."""
    from test_audio import EXAMPLES
    from vggish_rt.engine.audio import load_audio
    from vggish_rt.engine.frontend import log_mel_examples
    from vggish_rt.engine.windows import cut_windows

    e2e = onnx.load(str(v1_export["dir"] / "vggish.e2e.onnx"))
    (inp,), (out,) = e2e.graph.input, e2e.graph.output
    assert inp.name == "waveform" and [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", 15600]
    assert out.name == "embedding"
    windows = np.concatenate([cut_windows(load_audio(p), pad_short=True) for p in sorted(EXAMPLES.iterdir())
                              if p.suffix in (".wav", ".oga")])
    reference = cpu_session(v1_export["dir"] / "vggish.onnx").run(None, {"features": log_mel_examples(windows)})[0]
    for name, limit in (("vggish.e2e.onnx", 1e-4), ("vggish.e2e.fp16.onnx", 5e-3)):
        got = cpu_session(v1_export["dir"] / name).run(None, {"waveform": np.ascontiguousarray(windows)})[0]
        assert np.abs(got - reference).max() / np.abs(reference).max() <= limit, name
    recorded = v1_export["manifest"]["parity"]["e2e_vs_numpy_frontend"]
    assert recorded["log_mel_max_abs"] <= 1e-3 and recorded["embedding"]["relative"] <= 1e-4
    # with the checkpoint's own PCA file inside: the reference's uint8 bytes, exactly
    from vggish_rt.engine.postprocess import Postprocessor

    e2e_embeddings = cpu_session(v1_export["dir"] / "vggish.e2e.onnx").run(None, {"waveform": np.ascontiguousarray(windows)})[0]
    quantized = cpu_session(v1_export["dir"] / "vggish.e2e.pca.onnx").run(None, {"waveform": np.ascontiguousarray(windows)})[0]
    np.testing.assert_array_equal(quantized, Postprocessor(*v1_export["pca"]).postprocess(e2e_embeddings))


def test_int8_model_holds_its_accuracy_on_real_recordings(demo_model):
    """vggish.int8.onnx: static QDQ int8, against float32 on recordings it was not calibrated on."""
    from test_audio import EXAMPLES
    from vggish_rt.engine import Embedder
    from vggish_rt.engine.audio import load_audio
    from vggish_rt.engine.frontend import log_mel_examples
    from vggish_rt.engine.windows import cut_windows

    manifest = json.loads((demo_model / "manifest.json").read_text())
    record = manifest["parity"]["int8_vs_fp32"]
    assert record["mean_cosine"] >= 0.99 and record["worst_cosine"] >= 0.98
    model = onnx.load(str(demo_model / "vggish.int8.onnx"))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    examples = np.concatenate([log_mel_examples(cut_windows(load_audio(p), pad_short=True))
                               for p in sorted(EXAMPLES.iterdir()) if p.suffix in (".wav", ".oga")])
    full = Embedder(demo_model, device="cpu").embed_examples(examples)
    quantized = Embedder(demo_model, device="cpu", precision="int8").embed_examples(examples)
    cosine = (full * quantized).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(quantized, axis=1)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.98
    windows = np.concatenate([cut_windows(load_audio(p), pad_short=True) for p in sorted(EXAMPLES.glob("*.wav"))])
    e2e = Embedder(demo_model, device="cpu", precision="int8").embed_windows(windows)
    assert e2e.shape == (len(windows), 128)


def test_export_is_reproducible_byte_for_byte(small_model, tmp_path):
    """Exporting the same checkpoint twice gives identical files, manifest included.

    tf2onnx's constant names vary from run to run (hash seeds); the exporter renames them canonically.
    """
    env = {**os.environ, "PYTHONHASHSEED": "random",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    code = ("import sys; from pathlib import Path; from conftest import SMALL_WIDTHS; "
            "from vggish_rt.export.exporter import export_demo; export_demo(Path(sys.argv[1]), widths=SMALL_WIDTHS)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "again")], capture_output=True, text=True,
                            env=env, timeout=1800)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in small_model.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again").iterdir())
    different = [name for name in names if (small_model / name).read_bytes() != (tmp_path / "again" / name).read_bytes()]
    assert different == []
