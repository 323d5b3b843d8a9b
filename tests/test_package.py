"""Packaging promises: one namespace, no TensorFlow in the runtime, both entry points."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import run_cli


def test_engine_imports_without_tensorflow():
    code = ("import sys, vggish_rt.engine, vggish_rt.cli.app; "
            "from vggish_rt.engine import Embedder; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_slim', 'tf2onnx')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_generic_top_level_packages():
    import importlib.util

    for name in ("engine", "cli", "export"):
        spec = importlib.util.find_spec(name)
        assert spec is None or "vggish" not in str(spec.origin), f"top-level {name!r} leaked into the environment"


def test_console_script_and_module_agree():
    via_module = run_cli("--help")
    via_script = subprocess.run([str(Path(sys.executable).parent / "vggish-rt"), "--help"], capture_output=True, text=True)
    assert via_module.returncode == via_script.returncode == 0
    for command in ("export", "embed", "features", "postprocess", "fit-pca", "doctor"):
        assert command in via_module.stdout


def test_usage_errors_are_one_line_with_exit_2():
    result = run_cli("embed", "--no-such-flag")
    assert result.returncode == 2 and result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
