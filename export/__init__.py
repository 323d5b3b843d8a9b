"""vggish-rt export: the only part that imports TensorFlow (the [export] extra).

Checkpoint -> frozen graph -> ONNX with tf2onnx, parity-checked against
TensorFlow, written atomically as a model directory.
"""
import os

# TensorFlow's C++ INFO and WARNING lines are noise for a command-line user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
