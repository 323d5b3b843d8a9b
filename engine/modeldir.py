"""Opening a model directory: the manifest, verified files, the PCA params.

Every file is read through :meth:`ModelDirectory.read_verified` (or
:meth:`~ModelDirectory.read_model`, which also gives the ONNX parse), which
returns the bytes whose sha256 it checked, so what is verified is what is used. ONNX
models are handed to onnxruntime as those bytes, never as a path, and an ONNX
file that refers to external data is refused (onnxruntime would resolve such
a path against the working directory), so a model reads nothing but itself.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.manifest import check_file_name, read_manifest, sha256_bytes
from vggish_rt.engine.postprocess import Postprocessor

if TYPE_CHECKING:  # onnx (0.6 s to import on 2 cores) is imported where a model is parsed, not with the package
    import onnx

ENV_MODEL_DIR = "VGGISH_RT_MODEL"
PCA_FILE = "pca_params.npz"
_SOURCE_TREE_MODELS = Path(__file__).resolve().parent.parent / "models" / "vggish"


def default_model_dir() -> Path:
    """Where a model is looked for when none is named.

    ``$VGGISH_RT_MODEL`` if set, else ``./models/vggish`` if it exists, else the
    ``models/vggish`` of the source tree this package runs from (an editable
    install), else ``./models/vggish`` (which will then be reported missing).
    """
    if os.environ.get(ENV_MODEL_DIR):
        return Path(os.environ[ENV_MODEL_DIR])
    local = Path("models") / "vggish"
    if local.is_dir() or not _SOURCE_TREE_MODELS.is_dir():
        return local
    return _SOURCE_TREE_MODELS


_SELF_CONTAINED: set[str] = set()  # sha256 of ONNX files already checked in this process


def _tensors(message: Message) -> Iterator[onnx.TensorProto]:
    """Every TensorProto anywhere in ``message``, at any depth: initializers, sparse
    tensors, node attributes, model-local functions, training graphs, subgraphs,
    and any field a later onnx version adds (found by the message types, never by
    field names). Only message fields are visited, so no weight bytes are copied."""
    import onnx

    if isinstance(message, onnx.TensorProto):
        yield message
    for field in message.DESCRIPTOR.fields:
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue  # scalars, bytes, strings; onnx.proto has no maps of messages
        value = getattr(message, field.name)
        if field.is_repeated:
            for item in value:
                yield from _tensors(item)
        elif message.HasField(field.name):
            yield from _tensors(value)


def check_self_contained(data: bytes, digest: str, file: Path) -> None:
    """Refuse an ONNX file that is not a model, or that refers to external data.

    vggish-rt models are single files; a tensor stored elsewhere would make
    onnxruntime open a path the model names (relative to the working directory
    when loaded from bytes), so it is refused before any session exists.
    """
    if digest in _SELF_CONTAINED:
        return
    _refuse_external_data(parse_model(data, file), file)
    _SELF_CONTAINED.add(digest)


def parse_model(data: bytes, file: Path) -> onnx.ModelProto:
    """``data`` parsed as an ONNX model, or a VggishError naming ``file``."""
    import onnx

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise VggishError(f"{file}: not an ONNX model ({type(exc).__name__}); refused") from None
    if not model.HasField("graph"):
        raise VggishError(f"{file}: not an ONNX model (no graph); refused")
    return model


def _refuse_external_data(model: onnx.ModelProto, file: Path) -> None:
    import onnx

    for tensor in _tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            where = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            raise VggishError(f"{file}: tensor {tensor.name!r} refers to external data at {where!r}; "
                              "vggish-rt models are single files, refused")


def _refuse_mismatch(digest: str, expected: str, file: Path) -> None:
    if digest != expected:
        raise VggishError(f"{file}: sha256 does not match the manifest (corrupt or altered file); refused")


class ModelDirectory:
    """A verified view of one model directory (see interface.md for its files)."""

    def __init__(self, path: Path | str | None = None) -> None:
        path = Path(path) if path is not None else default_model_dir()
        if not path.is_dir():
            hint = " (run `vggish-rt export --demo` to make the demo model)" if path == default_model_dir() else ""
            raise VggishError(f"{path}: model directory not found{hint}")
        self.path = path.resolve()
        self.manifest: dict[str, Any] = read_manifest(self.path)

    @property
    def pretrained(self) -> bool:
        return bool(self.manifest["pretrained"])

    @property
    def relu_output(self) -> bool:
        return bool(self.manifest.get("relu_output", False))

    def describe(self) -> str:
        """One line naming the model and whether its weights mean anything."""
        kind = "pretrained VGGish" if self.pretrained else "seeded demo model, NOT pretrained: its embeddings carry no meaning"
        output = "post-ReLU output" if self.relu_output else "pre-activation output"
        return f"{self.path}: {kind}; {output}"

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def read_verified(self, name: str) -> bytes:
        """The bytes of file ``name``, after checking they match the manifest.

        Refuses names the manifest does not list, symbolic links, anything that
        resolves outside the directory, and checksum mismatches.
        """
        file, expected = self._listed(name)
        data = file.read_bytes()
        digest = sha256_bytes(data)
        _refuse_mismatch(digest, expected, file)
        if name.endswith(".onnx"):
            check_self_contained(data, digest, file)
        return data

    def read_model(self, name: str) -> tuple[bytes, onnx.ModelProto]:
        """ONNX file ``name`` checked as :meth:`read_verified` checks it: its bytes and their parse. The bytes
        are hashed while they are parsed (sha256 releases the GIL): 0.09 s of a 146 MB model's start-up."""
        file, expected = self._listed(name)
        data = file.read_bytes()
        with ThreadPoolExecutor(1, thread_name_prefix="vggish-sha256") as hashing:
            digest = hashing.submit(sha256_bytes, data)
            model = parse_model(data, file)
            _refuse_mismatch(digest.result(), expected, file)
        _refuse_external_data(model, file)
        return data, model

    def _listed(self, name: str) -> tuple[Path, str]:
        """File ``name`` and its manifest sha256, once its name and place are checked."""
        check_file_name(name, str(self.path))
        entry = self.manifest["files"].get(name)
        if entry is None:
            raise VggishError(f"{self.path}: has no {name} (export it with `vggish-rt export`)")
        file = self.path / name
        if file.is_symlink() or file.resolve().parent != self.path:
            raise VggishError(f"{file}: is a symbolic link or points outside the model directory; refused")
        if not file.is_file():
            raise VggishError(f"{file}: listed in the manifest but missing")
        return file, entry["sha256"]

    def postprocessor(self) -> Postprocessor:
        """The reference post-processor with this directory's verified ``pca_params.npz``."""
        return Postprocessor.from_file(self.read_verified(PCA_FILE), f"{self.path}/{PCA_FILE}")

    def verify_all(self) -> dict[str, str]:
        """Check every listed file; returns name -> 'ok' or the problem."""
        report = {}
        for name in self.manifest["files"]:
            try:
                self.postprocessor() if name == PCA_FILE else self.read_verified(name)  # what loading checks
                report[name] = "ok"
            except VggishError as exc:
                report[name] = str(exc)
        return report
