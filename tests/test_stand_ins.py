"""The export's stand-ins: the real fc arrays spliced into a model's bytes as it is written."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from vggish_rt.engine.errors import VggishError
from vggish_rt.export.stand_ins import StandIns

FC_WIDTH = 4096


@pytest.fixture
def weights() -> StandIns:
    rng = np.random.default_rng(3)
    return StandIns([rng.standard_normal((3, FC_WIDTH)).astype(np.float32),
                     rng.standard_normal(FC_WIDTH).astype(np.float32)], FC_WIDTH)


def model_with(initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    """A model whose graph holds ``initializers`` among others, with fields before and after the graph."""
    conv = numpy_helper.from_array(np.arange(24, dtype=np.float32).reshape(2, 3, 4), "conv/weights")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="identity")], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])],
                              [initializers[0], conv, *initializers[1:]])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    helper.set_model_props(model, {"after the graph": "metadata_props is field 14"})
    return model


def test_spliced_bytes_equal_the_serialized_real_model(weights: StandIns) -> None:
    light = model_with([numpy_helper.from_array(weights.stand_in(0), "fc1/weights"),
                        numpy_helper.from_array(weights.stand_in(1, np.float16), "fc1/biases")])
    real = model_with([numpy_helper.from_array(weights.real[0], "fc1/weights"),
                       numpy_helper.from_array(weights.real[1].astype(np.float16), "fc1/biases")])
    file = io.BytesIO()
    sha256, size = weights.write_real(light.SerializeToString(), file)
    expected = real.SerializeToString()
    assert file.getvalue() == expected
    assert (sha256, size) == (hashlib.sha256(expected).hexdigest(), len(expected))
    assert len(expected) > 3 * FC_WIDTH * 4  # the real arrays are there, not the stand-ins


def test_a_missing_stand_in_is_refused(weights: StandIns) -> None:
    light = model_with([numpy_helper.from_array(weights.stand_in(0), "fc1/weights")])
    with pytest.raises(VggishError, match=r"weights of shape \[4096\] are missing"):
        weights.write_real(light.SerializeToString(), io.BytesIO())


def test_a_transformed_stand_in_is_refused(weights: StandIns) -> None:
    transposed = numpy_helper.from_array(weights.stand_in(0).T.copy(), "fc1/weights")  # same bytes, other shape
    light = model_with([transposed, numpy_helper.from_array(weights.stand_in(1), "fc1/biases")])
    with pytest.raises(VggishError, match=r"became fc1/weights of shape \[1, 3\]"):
        weights.write_real(light.SerializeToString(), io.BytesIO())
