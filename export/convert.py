"""Restore, freeze and convert: checkpoint -> frozen GraphDef -> ONNX (tf2onnx).

Also runs TensorFlow itself on the parity inputs while the restored session is
open, so the reference outputs come from the seed's own graph and variables.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx

from vggish_rt.engine import params
from vggish_rt.engine.errors import VggishError
from vggish_rt.export.checkpoint import VGGISH, Checkpoint, Widths
from vggish_rt.export.stand_ins import StandIns, shrink_fc

OPSET = 17
_TF_OUTPUT_NODE = params.TF_OUTPUT_TENSOR.split(":")[0]


@dataclass
class FrozenModel:
    """A frozen VGGish graph and TensorFlow's outputs on the parity inputs."""

    graph_def: object                         # tf.GraphDef with variables as constants
    tf_outputs: dict[str, np.ndarray]         # case name -> float32 [n, 128]


def restore_and_freeze(checkpoint: Checkpoint, relu_output: bool, parity_inputs: dict[str, np.ndarray],
                       widths: Widths = VGGISH) -> FrozenModel:
    """Define the seed's graph, restore only VGGish variables, run TF on ``parity_inputs``, freeze."""
    from vggish_rt.export.slim_graph import define_vggish_slim, load_vggish_slim_checkpoint
    from vggish_rt.export.tf_compat import tf_v1

    tf = tf_v1()
    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph) as session:
        embedding = define_vggish_slim(training=False, relu_output=relu_output, widths=widths)
        try:
            load_vggish_slim_checkpoint(session, checkpoint.prefix)
        except Exception as exc:  # checked beforehand; this is the last line of defence
            raise VggishError(f"{checkpoint.prefix}: restore failed ({str(exc).splitlines()[0]})") from None
        features = graph.get_tensor_by_name(params.TF_INPUT_TENSOR)
        tf_outputs = {case: session.run(embedding, {features: x}) for case, x in parity_inputs.items()}
        graph_def = tf.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), [_TF_OUTPUT_NODE])
    return FrozenModel(graph_def, tf_outputs)


def to_onnx(graph_def: object, widths: Widths = VGGISH) -> tuple[onnx.ModelProto, StandIns]:
    """Convert a frozen VGGish GraphDef with tf2onnx: opset 17, dynamic batch,
    input ``features`` float32 [N,96,64], output ``embedding`` float32 [N,128].

    tf2onnx copies every constant in each optimizer pass, so it converts the
    graph with small stand-ins for the fc weights (export.stand_ins; this
    changes ``graph_def`` in place). Returns that small model and the real
    weights, which ``StandIns.put_back`` puts into it (or into a model derived
    from it). Initializers are renamed canonically (``canonical_initializer_names``).
    """
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    import tf2onnx

    stand_ins = shrink_fc(graph_def, widths.fc)
    model, _ = tf2onnx.convert.from_graph_def(
        graph_def,
        input_names=[params.TF_INPUT_TENSOR],
        output_names=[params.TF_OUTPUT_TENSOR],
        opset=OPSET,
        tensors_to_rename={params.TF_INPUT_TENSOR: params.ONNX_FEATURES,
                           params.TF_OUTPUT_TENSOR: params.ONNX_EMBEDDING},
    )
    model.graph.name = "vggish"
    # tf2onnx names the batch dimension unk__N; give it a stable, meaningful name.
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    return canonical_initializer_names(model), stand_ins


def canonical_initializer_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Name every initializer after the first node input that reads it: ``<node>/<input number>``.

    tf2onnx numbers folded constants (``const_fold_opt__49``) and, among
    identical constants (the demo's zero biases), keeps an arbitrary one's name,
    in an order that changes from run to run; the graph and the values do not.
    Naming each initializer by where it is first used, and sorting them by
    name, makes the same checkpoint give the same bytes (tests/test_export.py).
    """
    first_use: dict[str, str] = {}
    for node in model.graph.node:
        for number, name in enumerate(node.input):
            first_use.setdefault(name, f"{node.name}/{number}")
    renames = {t.name: first_use[t.name] for t in model.graph.initializer if t.name in first_use}
    for tensor in model.graph.initializer:
        tensor.name = renames.get(tensor.name, tensor.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    for value in [*model.graph.input, *model.graph.value_info]:
        value.name = renames.get(value.name, value.name)
    ordered = sorted(model.graph.initializer, key=lambda tensor: tensor.name)  # and in one order
    del model.graph.initializer[:]
    model.graph.initializer.extend(ordered)
    return model
