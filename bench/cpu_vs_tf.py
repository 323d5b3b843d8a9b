"""The seed's way against ours, on this machine's CPU, same weights, same batch, one run.

    python bench/cpu_vs_tf.py [--model models/vggish] [--batch 64] [--seconds 20] [--precision fp32,int8]

1. TensorFlow: the seed notebook's loop, ``sess.run(embedding, feed_dict=...)``
   on the slim graph restored from the demo checkpoint (the [export] extra).
2. vggish-rt: ``Embedder(device='cpu', precision=...).embed_examples`` on the
   exported model, for each precision asked for.
Prints the rates, the ratios and the cosine to TensorFlow's embeddings
(medians of repeated batches after a warm-up). The batch is log-mel of
generated audio (export.demo.demo_audio), not random values, so int8's
accuracy is measured on the kind of input it was calibrated for.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def rate(fn, batch: int, seconds: float) -> float:
    fn()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < deadline:
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return batch / statistics.median(times)


def demo_examples(batch: int) -> np.ndarray:
    """float32 [batch, 96, 64]: log-mel examples of generated audio (export.demo.demo_audio), one per clip."""
    from vggish_rt.engine.frontend import log_mel_examples
    from vggish_rt.engine.windows import cut_windows
    from vggish_rt.export.demo import demo_audio

    clips = demo_audio(seed=7, clips=batch, seconds=1.0)
    return np.concatenate([log_mel_examples(cut_windows(c, pad_short=True)) for c in clips])[:batch]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=Path("models/vggish"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--precision", default="fp32,int8", help="comma-separated: fp32, fp16, int8")
    arguments = parser.parse_args()
    x = demo_examples(arguments.batch)

    from vggish_rt.export.checkpoint import write_checkpoint
    from vggish_rt.export.demo import demo_variables
    from vggish_rt.export.slim_graph import define_vggish_slim, load_vggish_slim_checkpoint
    from vggish_rt.export.tf_compat import tf_v1

    tf = tf_v1()
    with tempfile.TemporaryDirectory() as tmp:
        write_checkpoint(Path(tmp) / "demo.ckpt", demo_variables())
        with tf.Graph().as_default() as graph, tf.Session(graph=graph) as sess:
            embedding = define_vggish_slim(training=False)
            load_vggish_slim_checkpoint(sess, str(Path(tmp) / "demo.ckpt"))
            features = graph.get_tensor_by_name("vggish/input_features:0")
            tf_rate = rate(lambda: sess.run(embedding, feed_dict={features: x}), arguments.batch, arguments.seconds)
            reference = sess.run(embedding, feed_dict={features: x})

    from vggish_rt.engine import Embedder

    result = {"tensorflow_examples_per_s": round(tf_rate, 1), "batch": arguments.batch}
    print(f"TF1 session.run (seed):  {tf_rate:8.1f} examples/s")
    for precision in arguments.precision.split(","):
        embedder = Embedder(arguments.model, device="cpu", precision=precision, batch_size=arguments.batch)
        ours = embedder.embed_examples(x)
        our_rate = rate(lambda e=embedder: e.embed_examples(x), arguments.batch, arguments.seconds)
        cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
        result[precision] = {"examples_per_s": round(our_rate, 1), "ratio": round(our_rate / tf_rate, 2),
                             "mean_cosine_vs_tensorflow": round(float(cosine.mean()), 6),
                             "min_cosine_vs_tensorflow": round(float(cosine.min()), 6)}
        print(f"vggish-rt CPU {precision}:      {our_rate:8.1f} examples/s   ratio {our_rate / tf_rate:.2f}x   "
              f"cosine to TF mean {cosine.mean():.4f} min {cosine.min():.4f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
