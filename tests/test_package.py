"""Packaging promises: one namespace, no TensorFlow in the runtime, both entry points."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli


def test_engine_imports_without_tensorflow():
    code = ("import sys, vggish_rt.engine, vggish_rt.cli.app; "
            "from vggish_rt.engine import Embedder; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_slim', 'tf2onnx')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_and_the_cli_start_without_onnx():
    """onnx (0.6 s of a 0.86 s `vggish-rt --version` on 2 cores) is imported where a model is parsed or
    built, not with the package: `--version`, `--help` and usage errors never load it."""
    code = ("import sys, vggish_rt.engine, vggish_rt.cli.app; "
            "print([m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', 'ml_dtypes')])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_no_generic_top_level_packages(tmp_path):
    """The installed environment exposes the folders only as vggish_rt.*: looked up from a
    process started outside the clone (pytest puts the clone's folders on its own sys.path)."""
    root = Path(__file__).resolve().parents[1]
    code = ("import importlib.util, json; "
            "print(json.dumps({n: getattr(importlib.util.find_spec(n), 'origin', None) for n in ('engine', 'cli', 'export')}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    for name, origin in json.loads(result.stdout).items():
        assert origin is None or not Path(origin).resolve().is_relative_to(root), f"top-level {name!r} leaked: {origin}"
    ours = subprocess.run([sys.executable, "-c", "import vggish_rt.engine; print(vggish_rt.engine.__file__)"],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert ours.returncode == 0 and Path(ours.stdout.strip()).resolve().is_relative_to(root), ours.stderr


def test_console_script_and_module_agree():
    via_module = run_cli("--help")
    via_script = subprocess.run([str(Path(sys.executable).parent / "vggish-rt"), "--help"], capture_output=True, text=True)
    assert via_module.returncode == via_script.returncode == 0
    for command in ("export", "embed", "features", "postprocess", "fit-pca", "doctor"):
        assert command in via_module.stdout


def test_usage_errors_are_one_line_with_exit_2():
    result = run_cli("embed", "--no-such-flag")
    assert result.returncode == 2 and result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert "(see `vggish-rt embed --help`)" in result.stderr
    root = run_cli("--no-such-flag")
    assert root.returncode == 2 and "(see `vggish-rt --help`)" in root.stderr, root.stderr  # was `vggish-rt vggish-rt`


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"vggish-rt {version('vggish-rt')}"


@pytest.mark.parametrize("command, option, value, fragment", [
    ("embed", "--hop", "1e300", "must be a finite number of seconds, above 0"),
    ("embed", "--hop", "nan", "must be a finite number of seconds, above 0"),
    ("features", "--hop", "-1", "must be a finite number of seconds, above 0"),
    ("embed", "--commit-every", "nan", "must be a finite number of seconds, 0 to"),
    ("embed", "--commit-every", "inf", "must be a finite number of seconds, 0 to"),
    ("embed", "--batch-size", "1000000000", "must be from 1 to 65,536"),
    ("embed", "--batch-size", "0", "must be from 1 to 65,536"),
    ("embed", "--workers", "-1", "must be from 0 to 1,024"),
    ("embed", "--processes", "0", "must be from 1 to 1,024"),
    ("bench", "--seconds", "nan", "must be a finite number of seconds, above 0"),
    ("embed", "--out", "x" * 250 + ".npy", "the name is 254 bytes"),
])
def test_option_values_are_checked_when_parsed(tmp_path, command, option, value, fragment):
    """Each bad value: one error line naming the option, exit 2, before any model or input is read."""
    inputs = [] if command == "bench" else [tmp_path / "missing.wav"]  # never opened: parsing fails first
    out = [] if command == "bench" or option == "--out" else ["--out", tmp_path / "o.npy"]
    target = [tmp_path / value] if option == "--out" else [value]
    model = [] if command == "features" else ["--model", tmp_path / "no-model"]
    result = run_cli(command, *inputs, *out, option, *target, *model)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], lines
    assert f"'{option}'" in lines[0], lines  # the option is named
