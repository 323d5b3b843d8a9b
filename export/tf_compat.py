"""Importing TensorFlow 1.x-style (compat.v1, graph mode), quietly."""
from __future__ import annotations

import functools
import logging
from types import ModuleType


@functools.lru_cache(maxsize=None)
def tf_v1() -> ModuleType:
    """``tensorflow.compat.v1`` with v2 behaviour off and its Python log at ERROR only."""
    import tensorflow.compat.v1 as tf

    tf.disable_v2_behavior()
    tf.get_logger().setLevel(logging.ERROR)
    return tf
