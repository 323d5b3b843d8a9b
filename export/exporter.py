"""``vggish-rt export``: checkpoint -> verified model directory.

Order of work: check every input (checkpoint variables, PCA file, target
directory) before the long steps; restore and freeze; convert (with small
stand-ins for the fc weights, export.stand_ins); check parity against
TensorFlow and refuse to write on failure; derive the float16, int8 and
end-to-end models one at a time. Each file is written into a staging directory
as soon as it is made and freed (peak memory stays near two copies of the
weights); the staging directory replaces the target only when all is done.
"""
from __future__ import annotations

import importlib.metadata
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from vggish_rt.engine import params
from vggish_rt.engine.embedder import E2E_FILES, E2E_PCA_FILE, NETWORK_FILES
from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.modeldir import PCA_FILE
from vggish_rt.engine.manifest import FORMAT, FORMAT_VERSION, frontend_parameters, sha256_bytes, write_manifest
from vggish_rt.engine.postprocess import PcaFitter, load_pca_params, pca_params_bytes
from vggish_rt.export.checkpoint import VGGISH, Checkpoint, Widths, locate_checkpoint
from vggish_rt.export.checks import CheckInputs, check_end_to_end, check_postprocessing
from vggish_rt.export.convert import OPSET
from vggish_rt.export.precision import to_float16, to_int8
from vggish_rt.export.frontend_graph import end_to_end
from vggish_rt.export.postprocess_graph import ONNX_QUANTIZED, with_postprocessing
from vggish_rt.export.parity import MAX_RELATIVE_ERROR, cpu_session, errors, run_cases
from vggish_rt.export.stand_ins import StandIns
from vggish_rt.export.staging import check_target, staged_directory
from vggish_rt.export.tf_process import Converted, convert_in_child, require_export_extra

Report = Callable[[str], None]
# The model directory's file names are the engine's (the contract it reads).
FP32_MODEL, FP16_MODEL, INT8_MODEL = (NETWORK_FILES[p] for p in ("fp32", "fp16", "int8"))
E2E_MODEL, E2E_FP16_MODEL, E2E_INT8_MODEL = (E2E_FILES[p] for p in ("fp32", "fp16", "int8"))
PRECISION_NAMES = {"float32": "fp32", "float16": "fp16", "int8": "int8"}


def export_model(checkpoint_path: Path | str, out: Path, pca_params: Path | None = None,
                 relu_output: bool = False, report: Report = lambda _: None, widths: Widths = VGGISH) -> dict[str, Any]:
    """Export a VGGish checkpoint (V1 or V2) into model directory ``out``; returns the manifest.

    ``widths``: the released network's unless a test exports a smaller one
    (export.checkpoint.Widths; the manifest then says ``"reduced_network"``).
    """
    require_export_extra()
    pca = load_pca_params(Path(pca_params)) if pca_params is not None else None
    check_target(Path(out))
    checkpoint = locate_checkpoint(checkpoint_path)
    with ThreadPoolExecutor(1) as background:
        inputs = background.submit(CheckInputs.make, demo=False)
        converted = convert_in_child(checkpoint.prefix, relu_output, report, widths=widths)
        return _export(checkpoint, converted, inputs.result(), Path(out), pca, relu_output, pretrained=True, report=report,
                       widths=widths)


def export_demo(out: Path, relu_output: bool = False, report: Report = lambda _: None,
                widths: Widths = VGGISH) -> dict[str, Any]:
    """Export the seeded demo model (NOT pretrained) and demo PCA params into ``out`` (``widths``: as export_model's)."""
    require_export_extra()
    check_target(Path(out))
    with tempfile.TemporaryDirectory(prefix="vggish-rt-demo-") as tmp, ThreadPoolExecutor(1) as background:
        path = Path(tmp) / "vggish_demo.ckpt"
        inputs = background.submit(CheckInputs.make, demo=True)
        converted = convert_in_child(path, relu_output, report, write_demo=True, widths=widths)
        return _export(locate_checkpoint(path), converted, inputs.result(), Path(out), None, relu_output,
                       pretrained=False, report=report, widths=widths)


def _export(checkpoint: Checkpoint, converted: Converted, inputs: CheckInputs, out: Path,
            pca: tuple[np.ndarray, np.ndarray] | None, relu_output: bool, pretrained: bool,
            report: Report, widths: Widths) -> dict[str, Any]:
    """onnxruntime's half. Sessions live one at a time where they can (each holds
    the weights again), and int8 quantization, the longest step, runs in a
    thread beside the float16 and end-to-end steps."""
    started = time.perf_counter()
    network, weights, tf_outputs, cases = converted.network, converted.weights, converted.tf_outputs, inputs.cases
    source = {"name": checkpoint.name, "sha256": checkpoint.sha256(), "version": checkpoint.version}
    info = {"pretrained": pretrained, "relu_output": relu_output, "source_checkpoint_sha256": source["sha256"]}
    with staged_directory(out) as stage, ThreadPoolExecutor(1) as background:
        files = _Files(stage, info, weights)
        files.write_model(FP32_MODEL, network, "float32")
        report("checking parity: onnxruntime CPU against TensorFlow")
        fp32 = cpu_session(stage / FP32_MODEL)
        ort_outputs = run_cases(fp32, cases)
        parity = {case: errors(ort_outputs[case], tf_outputs[case]) for case in cases}
        worst = max(parity, key=lambda case: parity[case]["relative"])
        if not parity[worst]["relative"] <= MAX_RELATIVE_ERROR:
            raise VggishError(f"parity check failed: onnxruntime differs from TensorFlow by relative error "
                              f"{parity[worst]['relative']:.3g} on the {worst} case (limit {MAX_RELATIVE_ERROR}); nothing written")
        fp32_outputs = run_cases(fp32, {"held_out": inputs.held_out, "e2e": inputs.e2e_log_mel})
        if pca is None and not pretrained:
            report("fitting demo PCA params on demo embeddings of generated audio")
            fitter = PcaFitter()
            fitter.add(run_cases(fp32, {"demo": inputs.demo_pca_examples})["demo"])
            pca = fitter.params()
        del fp32

        report("quantizing to int8 in the background (static QDQ, calibrated on log-mel examples of generated audio)")
        int8 = background.submit(_quantize, stage / FP32_MODEL, inputs, fp32_outputs["held_out"], report)

        report("deriving the float16 model and measuring its error")
        half = to_float16(network)
        files.write_model(FP16_MODEL, half, "float16")
        fp16_error = errors(run_cases(cpu_session(stage / FP16_MODEL), {"seeded": cases["seeded"]})["seeded"],
                            ort_outputs["seeded"])

        report("composing the end-to-end models (frontend inside) and checking them against the NumPy frontend")
        e2e = end_to_end(network)
        files.write_model(E2E_MODEL, e2e, "float32", "e2e")
        e2e_session = cpu_session(stage / E2E_MODEL)
        e2e_parity = check_end_to_end(e2e_session, inputs, fp32_outputs["e2e"], network.ir_version, OPSET)
        if pca is not None:
            pca_embeddings = run_cases(e2e_session, {"audio": inputs.pca_windows}, params.ONNX_WAVEFORM)["audio"]
        del e2e_session
        files.write_model(E2E_FP16_MODEL, end_to_end(half), "float16", "e2e")
        del half

        if pca is not None:
            files.write(PCA_FILE, pca_params_bytes(*pca))
            report("composing vggish.e2e.pca.onnx (PCA and 8-bit quantization inside) and checking it byte for byte")
            files.write_model(E2E_PCA_FILE, with_postprocessing(e2e, *pca), "float32", "e2e_pca")
            e2e_parity["pca_uint8_mismatches"] = check_postprocessing(cpu_session(stage / E2E_PCA_FILE), inputs,
                                                                      pca_embeddings, pca)
        int8_model, int8_record = int8.result()
        if int8_model is not None:
            files.write_model(INT8_MODEL, int8_model, "int8", light=False)
            files.write_model(E2E_INT8_MODEL, end_to_end(int8_model), "int8", "e2e", light=False)
            del int8_model
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "pretrained": pretrained, "demo": not pretrained, "relu_output": relu_output,
            "output": "post-ReLU (pre-2020 reference)" if relu_output else "pre-activation (current reference)",
            "source_checkpoint": source,
            "files": files.entries,
            "models": files.models,
            "frontend": frontend_parameters(),
            "parity": {"fp32_vs_tensorflow": parity, "fp16_vs_fp32": fp16_error, "e2e_vs_numpy_frontend": e2e_parity,
                       "int8_vs_fp32": int8_record,
                       "limit_relative": MAX_RELATIVE_ERROR, "provider": "CPUExecutionProvider"},
            "tools": _tool_versions(),
            "opset": OPSET,
            **({} if widths == VGGISH else {"reduced_network": {"conv": list(widths.conv), "fc": widths.fc}}),
        }
        report(f"writing {out}")
        write_manifest(stage, manifest)
    report(f"done in {time.perf_counter() - started:.0f} s")
    return manifest


class _Files:
    """The model directory's files, each written into the staging directory as
    soon as it is made (and then freed), with its checksum and size recorded."""

    def __init__(self, stage: Path, info: dict[str, Any], weights: StandIns) -> None:
        self.stage, self.info, self.weights = stage, info, weights
        self.entries: dict[str, dict[str, Any]] = {}  # the manifest's "files"
        self.models: dict[str, dict[str, Any]] = {}   # the manifest's "models"

    def write_model(self, name: str, model: onnx.ModelProto, precision: str, kind: str = "network",
                    light: bool = True) -> None:
        """Write ``model``: one derived from the converted network (``light``: the
        real fc weights go into its bytes as they are written), or a complete one."""
        data = _serialize(model, self.info, precision, kind)
        with open(self.stage / name, "wb") as file:
            sha256, size = self.weights.write_real(data, file) if light else (sha256_bytes(data), file.write(data))
        self.entries[name] = {"sha256": sha256, "bytes": size}
        self.models[name] = _io_description(model, PRECISION_NAMES[precision])

    def write(self, name: str, data: bytes) -> None:
        (self.stage / name).write_bytes(data)
        self.entries[name] = {"sha256": sha256_bytes(data), "bytes": len(data)}


_WINDOWS_IN = (f"{params.ONNX_WAVEFORM}: float32 [N,15600] 16 kHz mono samples in [-1,1], "
               "0.975 s windows starting every 0.96 s (the frontend runs inside)")
_EMBEDDINGS_OUT = f"{params.ONNX_EMBEDDING}: float32 [N,128] embeddings"
# kind -> (description, inputs, outputs) stamped into metadata_props
_KINDS = {
    "network": ("VGGish: log-mel examples [N,96,64] -> embeddings [N,128]",
                f"{params.ONNX_FEATURES}: float32 [N,96,64] log-mel examples (log(mel + 0.01), 96 frames of 10 ms, 64 bands)",
                _EMBEDDINGS_OUT),
    "e2e": ("VGGish end to end: 16 kHz mono windows [N,15600] -> embeddings [N,128]", _WINDOWS_IN, _EMBEDDINGS_OUT),
    "e2e_pca": ("VGGish end to end with the reference post-processor: 16 kHz mono windows [N,15600] -> "
                "PCA-whitened, 8-bit quantized embeddings [N,128]", _WINDOWS_IN,
                f"{ONNX_QUANTIZED}: uint8 [N,128], the reference's postprocessed embeddings "
                f"(PCA, whitening, clip to [{params.QUANTIZE_MIN_VAL}, {params.QUANTIZE_MAX_VAL}], 255 steps; computed in float64)"),
}


def _serialize(model: onnx.ModelProto, info: dict[str, Any], precision: str, kind: str = "network") -> bytes:
    """Stamp producer and self-describing metadata onto ``model`` and serialize it."""
    stamped = onnx.ModelProto()
    stamped.CopyFrom(model)
    stamped.producer_name, stamped.producer_version = "vggish-rt", _version("vggish-rt")
    description, inputs, outputs = _KINDS[kind]
    metadata = {
        "producer": stamped.producer_name,  # also in metadata_props, for readers that see only the map
        "producer_version": stamped.producer_version,
        "description": description,
        "inputs": inputs,
        "outputs": outputs,
        "precision": precision,
        "output_activation": "relu" if info["relu_output"] else "none (pre-activation)",
        "pretrained": str(info["pretrained"]).lower(),
        "source_checkpoint_sha256": info["source_checkpoint_sha256"],
        **{f"frontend.{key}": str(value) for key, value in frontend_parameters().items()},
    }
    onnx.helper.set_model_props(stamped, metadata)
    return stamped.SerializeToString()


def _io_description(model: onnx.ModelProto, precision: str) -> dict[str, Any]:
    def describe(value: onnx.ValueInfoProto) -> dict[str, Any]:
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        return {"name": value.name, "shape": dims, "dtype": "float32"}
    return {"precision": precision, "inputs": [describe(v) for v in model.graph.input],
            "outputs": [describe(v) for v in model.graph.output]}


def _quantize(fp32_file: Path, inputs: CheckInputs, reference: np.ndarray,
              report: Report) -> tuple[onnx.ModelProto | None, dict[str, Any]]:
    """The int8 network and its accuracy record, or (None, why) when int8 cannot hold the accuracy bounds."""
    try:
        quantized, record = to_int8(fp32_file, inputs.calibration, inputs.held_out, reference)
    except ValueError as exc:
        report(f"int8 skipped: {exc}")
        return None, {"skipped": str(exc)}
    report(f"int8 against fp32: mean cosine {record['mean_cosine']:.4f}, worst {record['worst_cosine']:.4f}"
           f"{', kept in float: ' + ', '.join(record['kept_in_float']) if record['kept_in_float'] else ''}")
    return onnx.load_from_string(quantized), record


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _tool_versions() -> dict[str, str]:
    return {name: _version(name) for name in
            ("vggish-rt", "tensorflow-cpu", "tensorflow", "tf-slim", "tf2onnx", "onnx", "onnxruntime", "onnxruntime-gpu", "numpy")
            if _version(name) != "unknown"}
