"""The TensorFlow half of an export, in a process of its own.

The child (``python -m vggish_rt.export.tf_process``) writes the demo
checkpoint when asked, checks the checkpoint's variables, restores and freezes
the seed's graph, runs TensorFlow on the parity inputs and converts with
tf2onnx (export.convert). It leaves in a results directory: ``network.onnx``
(the converted network with stand-ins for the fc weights, ~18 MB),
``fc_<group>.npy`` (the real fc weights, export.stand_ins) and
``tf_outputs.npz`` (case -> float32 [n, 128]).

Why a process: TensorFlow's allocator keeps what it used (about 1.5 GB after a
restore), and its import alone holds 0.5 GB. In a child, all of it goes back to
the system before onnxruntime's half starts, so the export's peak is the larger
of the two halves, not their sum; the parent never imports TensorFlow.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from vggish_rt.engine.errors import VggishError
from vggish_rt.export.checkpoint import VGGISH, Widths
from vggish_rt.export.stand_ins import StandIns

NETWORK_FILE, TF_OUTPUTS_FILE = "network.onnx", "tf_outputs.npz"
_REPORT = "report: "
_REFUSED = 3  # the child's exit status for a VggishError (its message is stderr's last line)


@dataclass
class Converted:
    """The TensorFlow half's results."""

    network: onnx.ModelProto            # converted with stand-ins for the fc weights
    weights: StandIns                   # the real fc weights
    tf_outputs: dict[str, np.ndarray]   # parity case -> TensorFlow's float32 [n, 128]


def require_export_extra() -> None:
    """Raise ImportError naming the first of TensorFlow, tf_slim and tf2onnx that is missing."""
    for module in ("tensorflow", "tf_slim", "tf2onnx"):
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"No module named '{module}'")


def convert_in_child(checkpoint: Path | str, relu_output: bool, report: Callable[[str], None],
                     write_demo: bool = False, widths: Widths = VGGISH) -> Converted:
    """Run the TensorFlow half on ``checkpoint`` (first writing the demo checkpoint
    there when ``write_demo``) in a child process; its progress lines go to ``report``."""
    with tempfile.TemporaryDirectory(prefix="vggish-rt-tf-") as tmp:
        results, stderr_path = Path(tmp), Path(tmp) / "stderr.txt"
        command = [sys.executable, "-m", "vggish_rt.export.tf_process", "--checkpoint", str(checkpoint),
                   "--results", str(results), "--parent", str(os.getpid()),
                   "--widths", ",".join(map(str, [*widths.conv, widths.fc]))]
        command += ["--relu-output"] * relu_output + ["--write-demo"] * write_demo
        with open(stderr_path, "wb") as stderr, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                                                                 text=True) as child:
            for line in child.stdout:
                if line.startswith(_REPORT):
                    report(line[len(_REPORT):].rstrip("\n"))
        if child.returncode != 0:
            lines = stderr_path.read_text(errors="replace").strip().splitlines() or ["(nothing on stderr)"]
            if child.returncode == _REFUSED:
                raise VggishError(lines[-1])
            raise VggishError(f"export: the TensorFlow step failed (exit status {child.returncode}): {lines[-1]}")
        groups = sorted(results.glob("fc_*.npy"), key=lambda p: int(p.stem.split("_")[1]))
        with np.load(results / TF_OUTPUTS_FILE, allow_pickle=False) as outputs:
            tf_outputs = {case: outputs[case] for case in outputs.files}
        return Converted(onnx.load(str(results / NETWORK_FILE)),
                         StandIns([np.load(p, allow_pickle=False) for p in groups], widths.fc), tf_outputs)


def _run(checkpoint_path: str, results: Path, relu_output: bool, write_demo: bool, widths: Widths) -> None:
    from vggish_rt.export.checkpoint import check_variables, locate_checkpoint, write_checkpoint
    from vggish_rt.export.convert import restore_and_freeze, to_onnx
    from vggish_rt.export.demo import demo_variables
    from vggish_rt.export.parity import parity_inputs

    def report(message: str) -> None:
        print(_REPORT + message, flush=True)

    if write_demo:
        report("writing the seeded demo checkpoint (He-scaled random weights, not pretrained)")
        write_checkpoint(Path(checkpoint_path), demo_variables(widths=widths), version=1)
        return_freed_memory()
    checkpoint = locate_checkpoint(checkpoint_path)
    check_variables(checkpoint, widths)
    report(f"restoring {checkpoint.name} (V{checkpoint.version}) and freezing the graph")
    frozen = restore_and_freeze(checkpoint, relu_output, parity_inputs(), widths)
    return_freed_memory()
    report("converting with tf2onnx (the fc weights replaced by small stand-ins while it runs)")
    network, weights = to_onnx(frozen.graph_def, widths)
    (results / NETWORK_FILE).write_bytes(network.SerializeToString())
    for group, array in enumerate(weights.real):
        np.save(results / f"fc_{group}.npy", array, allow_pickle=False)
    np.savez(results / TF_OUTPUTS_FILE, **frozen.tf_outputs)


def return_freed_memory() -> None:
    """Hand the heap pages TensorFlow freed back to the system (glibc keeps them otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description="The TensorFlow half of vggish-rt export (run by it).")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--parent", required=True, type=int)
    parser.add_argument("--relu-output", action="store_true")
    parser.add_argument("--write-demo", action="store_true")
    parser.add_argument("--widths", required=True, help="conv1,conv2,conv3,conv4,fc")
    args = parser.parse_args()
    from vggish_rt.engine.processes import exit_with

    exit_with(args.parent)  # a killed export leaves no TensorFlow process behind
    try:
        *conv, fc = map(int, args.widths.split(","))
        _run(args.checkpoint, args.results, args.relu_output, args.write_demo, Widths(tuple(conv), fc))
    except VggishError as exc:
        print(str(exc), file=sys.stderr)
        return _REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
