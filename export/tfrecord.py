"""AudioSet-style TFRecord output: one SequenceExample per input, quantized embeddings per frame.

The layout of the released AudioSet embeddings: context ``video_id`` (the
source path, bytes), ``start_time_seconds`` and ``end_time_seconds`` (floats),
``labels`` (int64, empty here); feature list ``audio_embedding`` with one
128-byte ``bytes_list`` per 0.96 s example, the post-processor's uint8 bytes.
Needs TensorFlow (the [export] extra), which only this module imports.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vggish_rt.engine.errors import VggishError


def write_sequence_examples(path: Path, sources: Iterator[tuple[str, float, float, np.ndarray]]) -> int:
    """Write (source, start_s, end_s, uint8 [n,128]) items to ``path``; returns the records written."""
    from vggish_rt.export.tf_compat import tf_v1

    try:
        tf = tf_v1()
    except ImportError:
        raise VggishError("--out .tfrecord needs TensorFlow: pip install 'vggish-rt[export]'") from None
    count = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for source, start_s, end_s, quantized in sources:
            context = tf.train.Features(feature={
                "video_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[source.encode()])),
                "start_time_seconds": tf.train.Feature(float_list=tf.train.FloatList(value=[start_s])),
                "end_time_seconds": tf.train.Feature(float_list=tf.train.FloatList(value=[end_s])),
                "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=[])),
            })
            frames = [tf.train.Feature(bytes_list=tf.train.BytesList(value=[row.tobytes()]))
                      for row in np.asarray(quantized, np.uint8)]
            lists = tf.train.FeatureLists(feature_list={"audio_embedding": tf.train.FeatureList(feature=frames)})
            writer.write(tf.train.SequenceExample(context=context, feature_lists=lists).SerializeToString())
            count += 1
    return count
