"""Finding, checking and fingerprinting a VGGish checkpoint (V1 single file or V2).

A V1 checkpoint (the released ``vggish_model.ckpt``) is one file; a V2 one is a
prefix with ``.index`` and ``.data-*`` files beside it. Either is named by the
path a user would pass to ``Saver.restore``; ``X.index`` is accepted for a V2.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError
from vggish_rt.export.tf_compat import tf_v1

@dataclass(frozen=True)
class Widths:
    """The network's widths: channels of conv1, conv2, conv3 (both layers), conv4
    (both layers), and of fc1's two layers. VGGISH is the released network; a
    smaller one (the test suite's) has the same layers, names, inputs and
    outputs, is exported by the same code, and is labelled in its manifest.
    """

    conv: tuple[int, int, int, int] = (64, 128, 256, 512)
    fc: int = 4096

    def __post_init__(self) -> None:
        others = {1, 3, params.EMBEDDING_SIZE, *self.conv, self.flattened}
        if self.fc in others:  # the export finds the fc weights by this dimension (export.stand_ins)
            raise ValueError(f"fc width {self.fc} must differ from every other dimension of the network {sorted(others)}")

    @property
    def flattened(self) -> int:
        """fc1's input: pool4's 6 x 4 positions times conv4's channels."""
        return 6 * 4 * self.conv[3]


VGGISH = Widths()


def variable_shapes(widths: Widths = VGGISH) -> dict[str, tuple[int, ...]]:
    """The checkpoint's variables: name -> shape (weights HWIO for convs, [in, out] for fc)."""
    c1, c2, c3, c4 = widths.conv
    shapes: dict[str, tuple[int, ...]] = {}
    for scope, shape in [
        ("conv1", (3, 3, 1, c1)), ("conv2", (3, 3, c1, c2)),
        ("conv3/conv3_1", (3, 3, c2, c3)), ("conv3/conv3_2", (3, 3, c3, c3)),
        ("conv4/conv4_1", (3, 3, c3, c4)), ("conv4/conv4_2", (3, 3, c4, c4)),
        ("fc1/fc1_1", (widths.flattened, widths.fc)), ("fc1/fc1_2", (widths.fc, widths.fc)),
        ("fc2", (widths.fc, params.EMBEDDING_SIZE)),
    ]:
        shapes[f"vggish/{scope}/weights"] = shape
        shapes[f"vggish/{scope}/biases"] = (shape[-1],)
    return shapes


VARIABLE_SHAPES = variable_shapes()  # the released checkpoint's


@dataclass(frozen=True)
class Checkpoint:
    """A located checkpoint: the path to restore from and the files it consists of."""

    prefix: str
    files: tuple[Path, ...]
    version: int

    @property
    def name(self) -> str:
        return Path(self.prefix).name

    def sha256(self) -> str:
        """sha256 of the checkpoint's bytes: the file itself for V1; for V2, its files in name order."""
        digest = hashlib.sha256()
        for file in self.files:
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    digest.update(block)
        return digest.hexdigest()


def locate_checkpoint(path: str | Path) -> Checkpoint:
    """Resolve a user-given checkpoint path, or raise VggishError saying what is missing."""
    path = Path(path)
    if path.suffix == ".index" and path.is_file():
        path = path.with_suffix("")
    index = Path(f"{path}.index")
    if index.is_file():
        data = sorted(path.parent.glob(f"{path.name}.data-*"))
        if not data:
            raise VggishError(f"{path}: V2 checkpoint has {index.name} but no .data-* file")
        return Checkpoint(str(path), (index, *data), 2)
    if path.is_file():
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise VggishError(f"{path}: checkpoint cannot be read ({exc.strerror})") from None
        return Checkpoint(str(path), (path,), 1)
    raise VggishError(f"{path}: no such checkpoint (neither a V1 file nor a V2 prefix with {index.name})")


def check_variables(checkpoint: Checkpoint, widths: Widths = VGGISH) -> None:
    """Refuse a checkpoint lacking a VGGish variable or holding one of the wrong shape or dtype."""
    tf = tf_v1()
    try:
        reader = tf.train.NewCheckpointReader(checkpoint.prefix)
    except Exception as exc:  # TF raises DataLossError, NotFoundError, ... for unreadable files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VggishError(f"{checkpoint.prefix}: not a readable TensorFlow checkpoint ({first_line})") from None
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    for name, shape in variable_shapes(widths).items():
        if name not in shapes:
            raise VggishError(f"{checkpoint.prefix}: lacks variable {name} (expected shape {list(shape)})")
        if tuple(shapes[name]) != shape:
            raise VggishError(f"{checkpoint.prefix}: variable {name} has shape {list(shapes[name])}, expected {list(shape)}")
        if dtypes[name] != tf.float32:
            raise VggishError(f"{checkpoint.prefix}: variable {name} has dtype {dtypes[name].name}, expected float32")
        if not np.isfinite(reader.get_tensor(name)).all():
            raise VggishError(f"{checkpoint.prefix}: variable {name} holds NaN or Inf")


def write_checkpoint(path: Path, variables: dict[str, np.ndarray], version: int = 1) -> None:
    """Save float32 ``variables`` (name -> array) as a V1 or V2 checkpoint at ``path``.

    TensorFlow's own save ops (Save for V1, SaveV2), fed the arrays: the bytes
    are those tf.train.Saver writes, without variables, assignments or the
    gigabyte of oneDNN buffers they leave in the process.
    """
    tf = tf_v1()
    names = sorted(variables)
    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph) as session:
        tensors = [tf.placeholder(tf.float32, variables[name].shape) for name in names]
        if version == 1:
            save = tf.raw_ops.Save(filename=str(path), tensor_names=names, data=tensors)
        else:
            save = tf.raw_ops.SaveV2(prefix=str(path), tensor_names=names, shape_and_slices=[""] * len(names),
                                     tensors=tensors)
        session.run(save, {tensor: np.asarray(variables[name], np.float32) for tensor, name in zip(tensors, names)})
