"""vggish-rt runtime: NumPy + onnxruntime, no TensorFlow.

``Embedder`` is the public face; see its docstring.
"""
from vggish_rt.engine.embedder import Embedder, FileEmbeddings
from vggish_rt.engine.errors import VggishError

__all__ = ["Embedder", "FileEmbeddings", "VggishError"]
