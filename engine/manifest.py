"""``manifest.json``: what a model directory holds, with checksums.

The manifest is the only file trusted to name other files, and only by bare
names inside the same directory. Layout (format 1)::

    {"format": "vggish-rt-model", "format_version": 1,
     "pretrained": bool, "demo": bool, "relu_output": bool,
     "source_checkpoint": {"name": str, "sha256": str},
     "files": {"vggish.onnx": {"sha256": str, "bytes": int}, ...},
     "models": {"vggish.onnx": {"precision": "fp32", "inputs": [...], "outputs": [...]}, ...},
     "frontend": {...}, "parity": {...}, "tools": {...}}
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError

MANIFEST_NAME = "manifest.json"
FORMAT = "vggish-rt-model"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def frontend_parameters() -> dict[str, Any]:
    """The frontend's parameters as recorded in manifests and ONNX metadata."""
    return {
        "sample_rate_hz": params.SAMPLE_RATE,
        "stft_window_samples": params.WINDOW_LENGTH_SAMPLES,
        "stft_hop_samples": params.HOP_LENGTH_SAMPLES,
        "fft_length": params.FFT_LENGTH,
        "window": "periodic hann",
        "mel_bands": params.NUM_BANDS,
        "mel_min_hz": params.MEL_MIN_HZ,
        "mel_max_hz": params.MEL_MAX_HZ,
        "mel_scale": "htk, no area normalisation, DC row zero",
        "log_offset": params.LOG_OFFSET,
        "example_frames": params.NUM_FRAMES,
        "example_samples": params.EXAMPLE_SAMPLES,
        "example_window_seconds": params.EXAMPLE_WINDOW_SECONDS,
    }


def check_file_name(name: Any, where: str) -> str:
    """Return ``name`` if it is a bare file name; refuse paths, '..', odd characters."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise VggishError(f"{where}: file name {name!r} is not a plain name inside the model directory")
    return name


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and validate ``directory/manifest.json``.

    Raises VggishError naming the problem: missing, too large, not JSON, wrong
    format, a file entry that is not a bare name or lacks a sha256.
    """
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise VggishError(f"{directory}: no {MANIFEST_NAME} (not a model directory; make one with `vggish-rt export`)")
    if path.is_symlink():
        raise VggishError(f"{path}: is a symbolic link; refused")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise VggishError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes; refused")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VggishError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise VggishError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise VggishError(f"{path}: format_version {manifest.get('format_version')!r} is not supported (expected {FORMAT_VERSION})")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise VggishError(f"{path}: 'files' must be a non-empty object")
    for name, entry in files.items():
        check_file_name(name, str(path))
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or not _HEX64.match(entry["sha256"]):
            raise VggishError(f"{path}: entry for {name!r} lacks a valid sha256")
    if not isinstance(manifest.get("pretrained"), bool):
        raise VggishError(f"{path}: 'pretrained' must be true or false")
    return manifest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` as sorted, indented JSON (stable bytes for stable input)."""
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (directory / MANIFEST_NAME).write_text(text, encoding="utf-8")
