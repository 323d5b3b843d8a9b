"""A corpus of bad inputs, made by the tests (no committed binaries).

``bad_inputs(dir)`` writes every kind of broken or odd audio and spectrogram
file into ``dir`` and returns name -> (path, fragment), where fragment is a
piece of the one-line error the CLI must give for it (besides the path).
``bad_model_directories(model, dir)`` does the same for model directories,
copies of a good one broken in one way each.
"""
from __future__ import annotations

import io
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

EXAMPLE_BYTES = 96 * 64 * 8
_PCM = (np.sin(np.arange(32000) / 5) * 10000).astype("<i2").tobytes()  # 2 s of int16 at 16 kHz


def wav_bytes(tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16, data: bytes = b"",
              declared: int | None = None) -> bytes:
    """A RIFF WAV with every header field under the caller's control."""
    declared = len(data) if declared is None else declared
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * channels * bits // 8) & 0xFFFFFFFF,
                      (channels * bits // 8) & 0xFFFF, bits)
    return (b"RIFF" + struct.pack("<I", (4 + 8 + len(fmt) + 8 + declared) & 0xFFFFFFFF) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", declared & 0xFFFFFFFF) + data)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_with_header(header: str, body: bytes = b"") -> bytes:
    """An .npy file with a header text of the caller's choosing (version 1.0, padded to 64 bytes)."""
    text = header.encode("latin1")
    padding = (64 - (10 + len(text) + 1) % 64) % 64
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text) + padding + 1) + text + b" " * padding + b"\n" + body


def _sf_bytes(signal: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, signal, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _audio_cases() -> dict[str, tuple[str, bytes, str]]:
    float_wav = _sf_bytes(np.full(32000, 0.1, np.float32), 16000, "WAV", "FLOAT")
    nan_samples = np.array([0.1, np.nan] * 16000, np.float32)
    inf_samples = np.array([0.1, np.inf, -np.inf, 0.2] * 8000, np.float32)
    return {
        "empty": ("empty.wav", b"", "empty file"),
        "header_only": ("header_only.wav", wav_bytes(), "no audio samples"),
        "truncated_data": ("truncated.wav", wav_bytes(data=_PCM[:1001], declared=len(_PCM)), "truncated"),
        "truncated_header": ("truncated_header.wav", wav_bytes(data=_PCM)[:30], "not readable audio"),
        "riff_only": ("riff_only.wav", b"RIFF\x00\x00\x00\x00WAVEjunk", "not readable audio"),
        "not_audio_text": ("text.wav", b"this is a text file, not audio\n" * 50, "not readable audio"),
        "not_audio_random": ("random.flac", np.random.default_rng(0).bytes(40000), "not readable audio"),
        "wrong_extension_npy_as_wav": ("array.wav", _npy(np.zeros((2, 96, 64))), "not readable audio"),
        "wrong_extension_zip_as_ogg": ("archive.ogg", b"PK\x03\x04" + bytes(200), "not readable audio"),
        "unsupported_codec": ("codec.wav", wav_bytes(tag=0x1234, data=_PCM), "not readable audio"),
        "zero_channels": ("zero_channels.wav", wav_bytes(channels=0, data=_PCM), "zero_channels.wav"),
        "zero_bits": ("zero_bits.wav", wav_bytes(bits=0, data=_PCM), "zero_bits.wav"),
        "huge_declared_size": ("huge.wav", wav_bytes(data=_PCM, declared=0xFFFFFFF0), "truncated"),
        "zero_rate": ("zero_rate.wav", wav_bytes(rate=0, data=_PCM), "zero_rate.wav"),
        "absurd_low_rate": ("rate3.wav", wav_bytes(rate=3, data=_PCM), "absurd sample rate 3 Hz"),
        "absurd_high_rate": ("rate_huge.wav", wav_bytes(rate=2_000_000_000, data=_PCM), "absurd sample rate"),
        "nan_floats": ("nan.wav", _sf_bytes(nan_samples, 16000, "WAV", "FLOAT"), "NaN or Inf"),
        "inf_floats": ("inf.wav", _sf_bytes(inf_samples, 16000, "WAV", "FLOAT"), "NaN or Inf"),
        "nan_in_last_samples": ("nan_tail.wav", float_wav[:-8] + struct.pack("<ff", np.nan, np.nan), "NaN or Inf"),
        # finite, but the log-mel of 1e30 overflows: gave all-NaN rows and exit 0
        "huge_finite_floats": ("huge_floats.wav", _sf_bytes(np.array([0.1, 1e30] * 16000, np.float32), 16000, "WAV",
                                                            "FLOAT"), "magnitude 1e+30"),
        "directory_named_wav": ("dir.wav", None, "directory holds no files"),
    }


def _spectrogram_cases() -> dict[str, tuple[str, bytes, str]]:
    good = np.random.default_rng(1).normal(-2.0, 1.0, (3, 96, 64))
    with_nan = good.copy()
    with_nan[1, 5, 5] = np.nan
    with_inf = good.copy()
    with_inf[2, 0, 0] = -np.inf
    header = _npy(good)[:128]
    return {
        "dat_empty": ("empty.dat", b"", "not a positive multiple"),
        "dat_odd_size": ("odd.dat", good.tobytes()[:-8], "not a positive multiple"),
        "dat_one_byte": ("byte.dat", b"\x00", "not a positive multiple"),
        "dat_nan": ("nan.dat", with_nan.tobytes(), "NaN or Inf"),
        "npy_wrong_bands": ("bands.npy", _npy(np.zeros((2, 96, 63))), "expected [N, 96, 64]"),
        "npy_wrong_frames": ("frames.npy", _npy(np.zeros((2, 95, 64))), "expected [N, 96, 64]"),
        "npy_rank_2": ("rank2.npy", _npy(np.zeros((96, 64))), "expected [N, 96, 64]"),
        "npy_rank_4": ("rank4.npy", _npy(np.zeros((1, 2, 96, 64))), "expected [N, 96, 64]"),
        "npy_scalar": ("scalar.npy", _npy(np.float64(1.0)), "expected [N, 96, 64]"),
        "npy_int_dtype": ("int.npy", _npy(np.zeros((2, 96, 64), np.int32)), "not floating point"),
        "npy_complex": ("complex.npy", _npy(np.zeros((2, 96, 64), np.complex64)), "not floating point"),
        "npy_strings": ("strings.npy", _npy(np.array(["a", "b"])), "not floating point"),
        "npy_object_pickle": ("object.npy", _npy(np.array([{"x": 1}, None], dtype=object)), "pickled"),
        "npy_nan": ("nan.npy", _npy(with_nan), "NaN or Inf"),
        "npy_inf": ("inf.npy", _npy(with_inf.astype(np.float32)), "NaN or Inf"),
        "npy_huge_finite": ("huge.npy", _npy((good * 1e30).astype(np.float32)), "magnitude"),
        "npy_truncated": ("truncated.npy", _npy(good)[:-100], "truncated"),
        "npy_header_only": ("header.npy", header, "truncated"),
        "npy_bad_magic": ("magic.npy", b"\x93NUMPX" + bytes(200), "not a readable .npy"),
        "npy_garbage_header": ("garbage.npy", b"\x93NUMPY\x01\x00\x20\x00{'descr': os.system('x') }   \n",
                               "not a readable .npy"),
        "npy_negative_rows": ("negative.npy", npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 96, 64), }"),
                              "expected [N, 96, 64]"),
        "npy_empty_file": ("empty.npy", b"", "not a readable .npy"),
    }


def odd_inputs(directory: Path) -> dict[str, Path]:
    """Inputs that are not broken but yield no example: name -> path.

    They are reported (a ``note:`` line naming the file and the cause), not failed: the
    job succeeds, and ``--pad-short`` keeps short clips as one zero-padded example.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "clip_0_1_s": ("short.wav", _sf_bytes(np.full(1600, 0.1), 16000, "WAV", "PCM_16")),
        "one_sample": ("one_sample.wav", wav_bytes(data=b"\x01\x00")),
        "npy_zero_examples": ("zero.npy", _npy(np.zeros((0, 96, 64)))),
    }
    for file, data in files.values():
        (directory / file).write_bytes(data)
    return {name: directory / file for name, (file, _) in files.items()}


def bad_input_names() -> list[str]:
    """The corpus's case names, without writing anything (for test parametrization)."""
    return sorted([f"audio:{name}" for name in _audio_cases()] + [f"spectrogram:{name}" for name in _spectrogram_cases()])


def bad_inputs(directory: Path) -> dict[str, tuple[Path, str]]:
    """Write the corpus of bad inputs into ``directory``; name -> (path, error fragment)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for group, cases in (("audio", _audio_cases()), ("spectrogram", _spectrogram_cases())):
        for name, (file, data, fragment) in cases.items():
            path = directory / group / file
            path.parent.mkdir(exist_ok=True)
            if data is None:
                path.mkdir()
            else:
                path.write_bytes(data)
            out[f"{group}:{name}"] = (path, fragment)
    return out


def _rewrite_manifest(model: Path, change) -> None:
    manifest = json.loads((model / "manifest.json").read_text())
    change(manifest)
    (model / "manifest.json").write_text(json.dumps(manifest))


def bad_model_directories(model: Path, directory: Path) -> dict[str, tuple[Path, str]]:
    """Copies of model directory ``model`` (the tiny test model: vggish.onnx + manifest.json), each
    broken in one way; name -> (directory, error fragment)."""
    from onnx import TensorProto, helper, load_model_from_string, numpy_helper

    from vggish_rt.engine.manifest import sha256_bytes

    def copy(name: str) -> Path:
        target = directory / name
        shutil.copytree(model, target)
        return target

    out: dict[str, tuple[Path, str]] = {}
    target = copy("no_manifest")
    (target / "manifest.json").unlink()
    out["no_manifest"] = (target, "manifest.json")
    target = copy("manifest_not_json")
    (target / "manifest.json").write_text("{not json")
    out["manifest_not_json"] = (target, "manifest.json")
    target = copy("manifest_wrong_format")
    _rewrite_manifest(target, lambda m: m.update(format="something-else"))
    out["manifest_wrong_format"] = (target, "not a vggish-rt-model manifest")
    target = copy("manifest_future_version")
    _rewrite_manifest(target, lambda m: m.update(format_version=99))
    out["manifest_future_version"] = (target, "format_version 99")
    target = copy("checksum_mismatch")
    with open(target / "vggish.onnx", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    out["checksum_mismatch"] = (target, "sha256 does not match")
    target = copy("model_file_missing")
    (target / "vggish.onnx").unlink()
    out["model_file_missing"] = (target, "missing")
    target = copy("path_escape")
    _rewrite_manifest(target, lambda m: m["files"].update({"../vggish.onnx": m["files"].pop("vggish.onnx")}))
    out["path_escape"] = (target, "../vggish.onnx")
    target = copy("absolute_path")
    _rewrite_manifest(target, lambda m: m["files"].update({"/etc/passwd": {"sha256": "0" * 64, "bytes": 1}}))
    out["absolute_path"] = (target, "/etc/passwd")
    target = copy("symlinked_model")
    (directory / "elsewhere.onnx").write_bytes((model / "vggish.onnx").read_bytes())
    (target / "vggish.onnx").unlink()
    (target / "vggish.onnx").symlink_to(directory / "elsewhere.onnx")
    out["symlinked_model"] = (target, "symbolic link")
    # external data pointing outside, with a manifest whose checksum matches the hostile file
    def external(tensor: TensorProto) -> TensorProto:
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "../../../etc/hostname"), ("offset", "0"), ("length", "16")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        return tensor

    def hostile_model(name: str, change) -> None:
        """A copy whose vggish.onnx, changed by ``change``, has a matching checksum in the manifest."""
        target = copy(name)
        hostile = load_model_from_string((model / "vggish.onnx").read_bytes())
        change(hostile)
        data = hostile.SerializeToString()
        (target / "vggish.onnx").write_bytes(data)
        _rewrite_manifest(target, lambda m: m["files"].update({"vggish.onnx": {"sha256": sha256_bytes(data), "bytes": len(data)}}))
        out[name] = (target, "external data")

    hostile_model("external_data_outside", lambda m: external(m.graph.initializer[0]))
    # where a reader of the graph's initializers alone does not look: a model-local function's
    # Constant, and a sparse tensor in a node attribute
    value = external(numpy_helper.from_array(np.zeros(4, np.float32), "hidden"))
    function = helper.make_function("local", "hidden_constant", [], ["out"], [helper.make_node("Constant", [], ["out"], value=value)],
                                    opset_imports=[helper.make_opsetid("", 17)])
    hostile_model("external_data_in_function", lambda m: m.functions.append(function))
    sparse = helper.make_sparse_tensor(external(numpy_helper.from_array(np.zeros(2, np.float32), "values")),
                                       numpy_helper.from_array(np.array([0, 3], np.int64), "indices"), [4])
    hostile_model("external_data_in_sparse_attribute",
                  lambda m: m.graph.node.append(helper.make_node("Constant", [], ["sparse_out"], sparse_value=sparse)))
    target = copy("not_onnx")
    garbage = b"not an onnx model" * 100
    (target / "vggish.onnx").write_bytes(garbage)
    _rewrite_manifest(target, lambda m: m["files"].update({"vggish.onnx": {"sha256": sha256_bytes(garbage), "bytes": len(garbage)}}))
    out["not_onnx"] = (target, "vggish.onnx")
    target = directory / "empty_directory"
    target.mkdir()
    out["empty_directory"] = (target, "manifest.json")
    target = directory / "not_a_directory"
    target.write_text("a file")
    out["not_a_directory"] = (target, "not_a_directory")
    return out


def pickled_pca(model: Path, directory: Path) -> tuple[Path, str]:
    """A model directory whose pca_params.npz holds a pickled object array (checksum matching)."""
    from vggish_rt.engine.manifest import sha256_bytes

    target = directory / "pickled_pca"
    shutil.copytree(model, target)
    buffer = io.BytesIO()
    np.savez(buffer, pca_eigen_vectors=np.array([{"evil": 1}], dtype=object), pca_means=np.zeros((128, 1)))
    data = buffer.getvalue()
    (target / "pca_params.npz").write_bytes(data)
    _rewrite_manifest(target, lambda m: m["files"].update({"pca_params.npz": {"sha256": sha256_bytes(data), "bytes": len(data)}}))
    return target, "pickled"
