"""vggish-rt runtime: NumPy + onnxruntime, no TensorFlow."""
