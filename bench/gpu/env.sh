# Before a GPU session, here (not committed; ignored folders that travel with `carry`):
#   bash ../shared/gpu/prepare-ort-gpu.sh 1.31.1          # .w1...w5 + .whl (add cffi, pycparser)
#   mkdir -p .devmodel && cp ../shared/gpu/onnx_skeleton.py .devmodel/
#   python .devmodel/onnx_skeleton.py strip models/vggish/vggish.onnx .devmodel/skeleton.onnx
# Source on a GPU machine (repo root as the working directory), after the
# onnxruntime-gpu wheel is installed into /tmp/ortsite (../shared/gpu/README.md):
# puts onnxruntime-gpu first on the path, exposes this checkout as the vggish_rt
# namespace without installing it, and builds the dev model (random weights in
# the exported graph) once into /tmp/devmodel.
export PYTHONPATH=/tmp/ortsite:/tmp/vggish_pkg:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1
mkdir -p /tmp/vggish_pkg/vggish_rt
for part in engine export cli; do ln -sfn "$PWD/$part" "/tmp/vggish_pkg/vggish_rt/$part"; done
python3 -c "import onnxruntime as o; o.preload_dlls(); print('onnxruntime', o.__version__, o.get_available_providers())"
[ -f /tmp/devmodel/manifest.json ] || python3 bench/devmodel.py .devmodel/skeleton.onnx /tmp/devmodel
export VGGISH_RT_TEST_GPU_MODEL=/tmp/devmodel VGGISH_RT_TEST_DEMO_MODEL=/tmp/devmodel VGGISH_RT_MODEL=/tmp/devmodel
