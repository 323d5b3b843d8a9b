"""Build a model directory from a stripped ONNX skeleton, for GPU machines without TensorFlow.

    python bench/devmodel.py SKELETON.onnx OUT_DIR [--seed N]

The skeleton (made here by ``onnx_skeleton.py strip vggish.onnx``) keeps the
exported graph and tensor shapes; ``fill_random`` puts seeded He-scaled random
weights back. The float16 and end-to-end variants are derived with the same
code the export uses. Speed does not depend on the weights; accuracy on the
GPU is checked against the CPU provider on the same model. The manifest says
``"pretrained": false``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx

from vggish_rt.engine.manifest import FORMAT, FORMAT_VERSION, frontend_parameters, sha256_bytes, write_manifest
from vggish_rt.engine.postprocess import pca_params_bytes
from vggish_rt.export.frontend_graph import end_to_end
from vggish_rt.export.precision import to_float16


def build(skeleton: Path, out: Path, seed: int = 0) -> Path:
    sys.path.insert(0, str(skeleton.parent))
    from onnx_skeleton import fill_random  # carried beside the skeleton

    network = fill_random(onnx.load(str(skeleton)), seed)
    half = to_float16(network)
    models = {"vggish.onnx": network, "vggish.fp16.onnx": half,
              "vggish.e2e.onnx": end_to_end(network), "vggish.e2e.fp16.onnx": end_to_end(half)}
    out.mkdir(parents=True, exist_ok=True)
    files = {name: model.SerializeToString() for name, model in models.items()}
    rng = np.random.default_rng(seed)
    files["pca_params.npz"] = pca_params_bytes(rng.standard_normal((128, 128)) * 0.1, rng.standard_normal((128, 1)))
    for name, data in files.items():
        (out / name).write_bytes(data)
    write_manifest(out, {"format": FORMAT, "format_version": FORMAT_VERSION, "pretrained": False, "demo": True,
                         "relu_output": False, "frontend": frontend_parameters(),
                         "files": {n: {"sha256": sha256_bytes(d), "bytes": len(d)} for n, d in files.items()}})
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("skeleton", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    print(build(arguments.skeleton, arguments.out, arguments.seed))
