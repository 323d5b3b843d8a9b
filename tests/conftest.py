"""Shared fixtures. Exported models are made once per test session, each in a background process started at
collection (the tests that do not need it run meanwhile, on the cores it leaves free: the suite kept about one of
two cores busy): ``demo_model`` is the full demo export (`vggish-rt export --demo`, about 35 s on 2 cores), the one
full export the suite keeps; ``small_model`` and ``v1_export`` are exports of the same code on a network of the
same layers with small widths (SMALL_WIDTHS: about 7 s each, 8,800 examples/s on 2 cores instead of 90), for every
test that is about the export's or the engine's behaviour rather than the full network."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vggish_rt.engine.postprocess import pca_params_bytes
from vggish_rt.export.checkpoint import VGGISH, Widths

RNG_SEED = 1234
SMALL_WIDTHS = Widths(conv=(8, 16, 16, 32), fc=96)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow every test that needs the full demo export (``-m "not slow"`` skips that export), and network
    every test that installs from a package registry (the onnxruntime_node fixture: npm)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "demo_model" in fixtures:
            item.add_marker(pytest.mark.slow)
        if "onnxruntime_node" in fixtures:
            item.add_marker(pytest.mark.network)


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m vggish_rt.cli ARGS`` and capture its output."""
    return subprocess.run([sys.executable, "-m", "vggish_rt.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=1800)


def run_cli_peak_memory(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI in a fresh process; returns (result, its peak resident memory in MB).

    VmHWM, not ru_maxrss: on Linux ru_maxrss keeps the high-water mark of the
    process before exec, which here is a fork of this (large) test process.
    """
    code = ("import re, sys; from vggish_rt.cli.app import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "    print('maxrss_kb', hwm, file=sys.stderr); raise")
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=1800)
    peak = result.stderr.split("maxrss_kb")
    return result, (int(peak[1].split()[0]) / 1024 if len(peak) > 1 else float("nan"))


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> None:
    """Exit code ``code``, and stderr's last line is one ``error:`` line holding every fragment."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def random_variables(seed: int, widths: Widths = VGGISH) -> dict[str, np.ndarray]:
    """He-scaled random weights in the released layout (independent of the demo's generator)."""
    from vggish_rt.export.checkpoint import variable_shapes

    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in variable_shapes(widths).items():
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        scale = np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.05
        out[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return out


# Exports made in background processes, started at collection for the selected tests that need them (the
# tests that do not run meanwhile, on the cores the exports leave free): name -> process, directory, stderr.
_BACKGROUND: dict[str, dict[str, Any]] = {}
_SMALL = json.dumps({"conv": list(SMALL_WIDTHS.conv), "fc": SMALL_WIDTHS.fc})
# Each is `python -c CODE OUT_DIR`; CODE writes the model under OUT_DIR.
_EXPORTS = {
    "demo_model": None,  # the CLI itself: `vggish-rt export --demo`
    "small_model": "\n".join([
        "import json, sys; from pathlib import Path",
        "from vggish_rt.export.checkpoint import Widths; from vggish_rt.export.exporter import export_demo",
        f"w = json.loads({_SMALL!r}); export_demo(Path(sys.argv[1]) / 'vggish', widths=Widths(tuple(w['conv']), w['fc']))"]),
    "v1_export": "\n".join([
        "import json, sys; from pathlib import Path",
        "sys.path.insert(0, " + repr(str(Path(__file__).parent)) + "); import conftest",
        "conftest.export_v1(Path(sys.argv[1]))"]),
}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start each export a selected test needs (not the demo with $VGGISH_RT_TEST_DEMO_MODEL set)."""
    needed = {name for item in session.items for name in getattr(item, "fixturenames", ()) if name in _EXPORTS}
    if os.environ.get("VGGISH_RT_TEST_DEMO_MODEL"):
        needed.discard("demo_model")
    for name in sorted(needed):
        _start_export(name)


def _start_export(name: str) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"vggish-rt-test-{name}-"))
    stderr = open(work / "stderr.txt", "w+")
    code = _EXPORTS[name]
    command = ([sys.executable, "-m", "vggish_rt.cli", "export", "--demo", "--out", str(work / "vggish")] if code is None
               else [sys.executable, "-c", code, str(work)])
    _BACKGROUND[name] = {"work": work, "stderr": stderr,
                         "process": subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)}


def _finished_export(name: str) -> Path:
    """Wait for background export ``name`` (starting it if collection did not) and return its directory."""
    if name not in _BACKGROUND:  # asked for through request.getfixturevalue (the GPU tests)
        _start_export(name)
    job = _BACKGROUND[name]
    job["process"].wait(timeout=1800)
    job["stderr"].seek(0)
    assert job["process"].returncode == 0, job["stderr"].read()
    return job["work"]


def pytest_sessionfinish(session: pytest.Session) -> None:
    for job in _BACKGROUND.values():
        job["process"].kill()
        job["process"].wait()
        job["stderr"].close()
        shutil.rmtree(job["work"], ignore_errors=True)


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The demo model directory, made by `vggish-rt export --demo` (started in the background at collection;
    or $VGGISH_RT_TEST_DEMO_MODEL, to iterate locally)."""
    if os.environ.get("VGGISH_RT_TEST_DEMO_MODEL"):
        return Path(os.environ["VGGISH_RT_TEST_DEMO_MODEL"])
    return _finished_export("demo_model") / "vggish"


@pytest.fixture(scope="session")
def small_model() -> Path:
    """The demo export of the small network (SMALL_WIDTHS): every file and the PCA params, made by the same code
    (through the Python API, in the background from collection)."""
    return _finished_export("small_model") / "vggish"


def export_v1(tmp: Path) -> None:
    """A V1 checkpoint of the small network and a PCA file, exported under ``tmp`` (``model``), with the lines the
    export reported (``reported.json``). Run by the v1_export fixture in a background process."""
    from vggish_rt.export.checkpoint import write_checkpoint
    from vggish_rt.export.exporter import export_model

    write_checkpoint(tmp / "vggish_model.ckpt", random_variables(RNG_SEED, SMALL_WIDTHS), version=1)
    (tmp / "pca.npz").write_bytes(pca_params_bytes(*_v1_pca()))
    reported: list[str] = []
    manifest = export_model(tmp / "vggish_model.ckpt", tmp / "model", pca_params=tmp / "pca.npz", report=reported.append,
                            widths=SMALL_WIDTHS)
    (tmp / "reported.json").write_text(json.dumps({"reported": reported, "manifest": manifest}))


def _v1_pca() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.standard_normal((128, 128)), rng.standard_normal((128, 1))


@pytest.fixture(scope="session")
def v1_export() -> dict:
    """A V1 checkpoint of the small network and a PCA file written by the test, exported (TensorFlow in a child
    process; the whole in the background from collection)."""
    tmp = _finished_export("v1_export")
    written = json.loads((tmp / "reported.json").read_text())
    assert written["manifest"] == json.loads((tmp / "model" / "manifest.json").read_text())
    return {"dir": tmp / "model", "checkpoint": tmp / "vggish_model.ckpt", "manifest": written["manifest"],
            "pca": _v1_pca(), "reported": written["reported"]}


def tf_embeddings(checkpoint: Path, features: np.ndarray, relu_output: bool = False,
                  widths: Widths = SMALL_WIDTHS) -> np.ndarray:
    """TensorFlow's own output: the seed's graph, restored from ``checkpoint``, run on ``features``."""
    from vggish_rt.export.slim_graph import define_vggish_slim, load_vggish_slim_checkpoint
    from vggish_rt.export.tf_compat import tf_v1

    tf = tf_v1()
    with tf.Graph().as_default() as graph, tf.Session(graph=graph) as session:
        embedding = define_vggish_slim(training=False, relu_output=relu_output, widths=widths)
        load_vggish_slim_checkpoint(session, str(checkpoint))
        return session.run(embedding, {graph.get_tensor_by_name("vggish/input_features:0"): features})


def _write_model_directory(directory: Path, graph: object) -> Path:
    """A model directory holding ``graph`` (an onnx GraphProto) as its vggish.onnx, with a demo manifest."""
    from onnx import helper

    from vggish_rt.engine.manifest import FORMAT, FORMAT_VERSION, sha256_bytes, write_manifest

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vggish.onnx").write_bytes(data)
    write_manifest(directory, {"format": FORMAT, "format_version": FORMAT_VERSION, "pretrained": False,
                               "files": {"vggish.onnx": {"sha256": sha256_bytes(data), "bytes": len(data)}}})
    return directory


def write_tiny_model(directory: Path, seed: int = 0) -> Path:
    """A real, small model directory: features [N,96,64] -> Reshape -> MatMul [6144,128] -> embedding.

    For tests of the streaming engine (order, memory, formats) where the full
    network's 1.7 GFLOP an example would only slow them down.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal((96 * 64, 128)) / 80).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["features", "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weights"], ["embedding"])],
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 96, 64])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 128])],
        [numpy_helper.from_array(np.array([-1, 96 * 64], np.int64), "shape"), numpy_helper.from_array(weights, "weights")])
    return _write_model_directory(directory, graph)


def write_failing_model(directory: Path, seed: int = 0) -> Path:
    """The tiny model of :func:`write_tiny_model`, whose run fails inside onnxruntime for a batch holding a
    value of 5 or more: the batch's largest value, truncated to int64, indexes a Gather on a table of 5
    (onnxruntime: "indices element out of data bounds"). Its output is the tiny model's (the Gather's value,
    times 0, is added), so batches of smaller values embed as the tiny model embeds them."""
    from onnx import TensorProto, helper, numpy_helper

    weights = (np.random.default_rng(seed).standard_normal((96 * 64, 128)) / 80).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["features", "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weights"], ["product"]),
         helper.make_node("ReduceMax", ["features"], ["largest"], keepdims=0),
         helper.make_node("Cast", ["largest"], ["at"], to=TensorProto.INT64),
         helper.make_node("Gather", ["table", "at"], ["picked"]),
         helper.make_node("Mul", ["picked", "zero"], ["nothing"]),
         helper.make_node("Add", ["product", "nothing"], ["embedding"])],
        "failing",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 96, 64])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 128])],
        [numpy_helper.from_array(np.array([-1, 96 * 64], np.int64), "shape"), numpy_helper.from_array(weights, "weights"),
         numpy_helper.from_array(np.zeros(5, np.float32), "table"), numpy_helper.from_array(np.float32(0), "zero")])
    return _write_model_directory(directory, graph)


def windows_model() -> bytes:
    """A stand-in for the end-to-end graph: its input ``waveform`` [N, 15600] is its output (to see what a
    front, engine.resampling's, gives it)."""
    from onnx import TensorProto, helper

    from vggish_rt.engine import params

    graph = helper.make_graph([helper.make_node("Identity", [params.ONNX_WAVEFORM], [params.ONNX_EMBEDDING])], "windows",
                              [helper.make_tensor_value_info(params.ONNX_WAVEFORM, TensorProto.FLOAT, ["N", 15600])],
                              [helper.make_tensor_value_info(params.ONNX_EMBEDDING, TensorProto.FLOAT, ["N", 15600])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()
