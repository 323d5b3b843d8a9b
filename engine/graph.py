"""Exact rewrites of the exported graph that make it cheaper to run on a GPU.

``pool_before_bias_relu``: every ``Conv(x, W, b) -> Relu -> MaxPool`` becomes
``Conv(x, W) -> MaxPool -> Add(b) -> Relu``. Rounding is monotone, so
``max_i fl(c_i + b) = fl(max_i c_i + b)``, and ReLU commutes with max: the
result is bit for bit the same, while the bias add and the ReLU, both
memory-bound passes, touch a tensor 4 times smaller. On the GPU they were 49%
of the float16 network's time before the rewrite (docs/benchmarks.md has the
profile). The CPU provider fuses bias and ReLU into its convolutions, so there
the original graph is the better one and is left as it is.

The rewritten model is the original's bytes with the graph's nodes replaced
(:func:`with_graph_nodes`), not a new serialization of the whole model: on the
job's start-up path, serializing 146 MB of float16 weights again cost 0.19-0.25
s, the splice one copy.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from vggish_rt.engine.protobuf import LENGTH_DELIMITED, fields, key, varint

if TYPE_CHECKING:  # onnx is imported where a model is parsed or built, not with the package
    import onnx


def pool_before_bias_relu(model: bytes, proto: onnx.ModelProto | None = None) -> bytes:
    """The rewritten model (see the module docstring); unchanged bytes when no pattern matches. ``proto``:
    ``model`` already parsed, to be changed in place (parsed here when not given)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(model) if proto is None else proto
    graph = proto.graph
    added_from = len(graph.initializer)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = {t.name: t for t in graph.initializer}
    moves: dict[int, tuple[onnx.NodeProto, onnx.NodeProto, str]] = {}  # id(conv) -> (relu, pool, bias)
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or node.input[2] not in initializers:
            continue
        relu = consumers.get(node.output[0], [])
        if len(relu) != 1 or relu[0].op_type != "Relu":
            continue
        pool = consumers.get(relu[0].output[0], [])
        if len(pool) != 1 or pool[0].op_type != "MaxPool":
            continue
        moves[id(node)] = (relu[0], pool[0], node.input[2])
    if not moves:
        return model
    moved = {id(n) for relu, pool, _ in moves.values() for n in (relu, pool)}
    reshaped: dict[str, str] = {}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if id(node) in moved:
            continue
        nodes.append(node)
        if id(node) not in moves:
            continue
        relu, pool, bias = moves[id(node)]
        if bias not in reshaped:
            array = numpy_helper.to_array(initializers[bias])
            reshaped[bias] = f"{bias}__nchw"
            graph.initializer.append(numpy_helper.from_array(array.reshape(1, -1, 1, 1), reshaped[bias]))
        del node.input[2]
        pooled, output = f"{pool.output[0]}__unbiased", pool.output[0]
        pool.input[0], pool.output[0] = node.output[0], pooled
        add = onnx.helper.make_node("Add", [pooled, reshaped[bias]], [f"{output}__biased"], name=f"{pool.name}__bias")
        relu.input[0], relu.output[0] = add.output[0], output
        nodes.extend([pool, add, relu])
    # the [C] biases stay as unused initializers: onnxruntime drops them
    return with_graph_nodes(model, onnx.GraphProto(node=nodes, initializer=graph.initializer[added_from:]))


_MODEL_GRAPH, _GRAPH_NODE, _GRAPH_INPUT = 7, 1, 11  # onnx.proto's fields


def with_graph_nodes(model: bytes, replacement: onnx.GraphProto, replaced: tuple[int, ...] = (_GRAPH_NODE,)) -> bytes:
    """A serialized ModelProto whose graph's nodes are ``replacement``'s nodes, and its initializers the
    original's followed by ``replacement``'s; every other byte is the original's, copied once. ``replaced``:
    the graph's fields that ``replacement`` replaces (its nodes; :func:`with_front` its inputs too).

    Protobuf fields may come in any order and repeated ones accumulate, so the
    replaced fields are cut out of the graph's bytes and ``replacement``'s
    fields appended to what is left; the graph's length prefix is written anew.
    """
    view = memoryview(model)
    pieces: list[bytes | memoryview] = []
    appended = False
    for number, wire, start, value, end in fields(view, 0, len(view)):
        if number != _MODEL_GRAPH or wire != LENGTH_DELIMITED:
            pieces.append(view[start:end])
            continue
        kept = [view[s:e] for n, _, s, _, e in fields(view, value, end) if n not in replaced]
        extra = b"" if appended else replacement.SerializeToString()
        appended = True
        pieces += [key(_MODEL_GRAPH), varint(sum(len(k) for k in kept) + len(extra)), *kept, extra]
    if not appended:
        raise ValueError("not a model with a graph")
    return b"".join(pieces)


def with_front(model: bytes, name: str, nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto],
               graph_input: onnx.ValueInfoProto, computed: str) -> bytes:
    """``model`` (serialized) with its graph input ``name`` computed by ``nodes`` from a new graph input,
    ``graph_input``, as the tensor ``computed``: the model's own nodes read ``computed`` where they read
    ``name``. Only the graph's nodes and inputs are parsed, never its weights."""
    import onnx

    view = memoryview(model)
    own_nodes, own_inputs = [], []
    for graph in ((value, end) for number, wire, _, value, end in fields(view, 0, len(view))
                  if number == _MODEL_GRAPH and wire == LENGTH_DELIMITED):
        for number, _, _, value, end in fields(view, *graph):
            if number == _GRAPH_NODE:
                own_nodes.append(onnx.NodeProto.FromString(bytes(view[value:end])))
            elif number == _GRAPH_INPUT:
                own_inputs.append(onnx.ValueInfoProto.FromString(bytes(view[value:end])))
    for node in own_nodes:
        node.input[:] = [computed if tensor == name else tensor for tensor in node.input]
    inputs = [graph_input] + [i for i in own_inputs if i.name != name]
    return with_graph_nodes(model, onnx.GraphProto(node=[*nodes, *own_nodes], input=inputs, initializer=initializers),
                            (_GRAPH_NODE, _GRAPH_INPUT))
