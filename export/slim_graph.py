"""The seed's VGGish TF-slim graph and checkpoint loader (TF2 via compat.v1 + tf_slim).

``define_vggish_slim`` is the reference's definition line for line, with one
flag: ``relu_output`` applies a ReLU to fc2 as the pre-August-2020 reference
did (the seed notebook's non-negative embeddings). Everything here builds ops
in the current default graph, under the scope ``vggish/``.
"""
from __future__ import annotations

import warnings

import tf_slim as slim

from vggish_rt.engine import params
from vggish_rt.export.checkpoint import VGGISH, Widths
from vggish_rt.export.tf_compat import tf_v1

tf = tf_v1()

INIT_STDDEV = 0.01  # the reference's weight initialiser; overwritten by any restore

def define_vggish_slim(features_tensor: tf.Tensor | None = None, training: bool = False,
                       relu_output: bool = False, widths: Widths = VGGISH) -> tf.Tensor:
    """Define VGGish in the default graph; returns the op ``vggish/embedding``.

    Input: ``features_tensor`` or a placeholder ``vggish/input_features``,
    float32 [batch, 96, 64] log-mel examples. Output: float32 [batch, 128],
    pre-activation unless ``relu_output``.
    """
    with warnings.catch_warnings():  # tf_slim calls layer APIs that Keras marks deprecated
        warnings.simplefilter("ignore")
        return _define(features_tensor, training, relu_output, widths)


def _define(features_tensor: tf.Tensor | None, training: bool, relu_output: bool, widths: Widths) -> tf.Tensor:
    """The reference's definition, line for line (plus ``relu_output``, and the
    widths, which are the reference's unless a test asks for a smaller network)."""
    c1, c2, c3, c4 = widths.conv
    with slim.arg_scope([slim.conv2d, slim.fully_connected],
                        weights_initializer=tf.truncated_normal_initializer(stddev=INIT_STDDEV),
                        biases_initializer=tf.zeros_initializer(),
                        activation_fn=tf.nn.relu,
                        trainable=training), \
         slim.arg_scope([slim.conv2d], kernel_size=[3, 3], stride=1, padding="SAME"), \
         slim.arg_scope([slim.max_pool2d], kernel_size=[2, 2], stride=2, padding="SAME"), \
         tf.variable_scope("vggish"):
        if features_tensor is None:
            features_tensor = tf.placeholder(tf.float32, shape=(None, params.NUM_FRAMES, params.NUM_BANDS),
                                             name="input_features")
        net = tf.reshape(features_tensor, [-1, params.NUM_FRAMES, params.NUM_BANDS, 1])
        net = slim.conv2d(net, c1, scope="conv1")
        net = slim.max_pool2d(net, scope="pool1")
        net = slim.conv2d(net, c2, scope="conv2")
        net = slim.max_pool2d(net, scope="pool2")
        net = slim.repeat(net, 2, slim.conv2d, c3, scope="conv3")
        net = slim.max_pool2d(net, scope="pool3")
        net = slim.repeat(net, 2, slim.conv2d, c4, scope="conv4")
        net = slim.max_pool2d(net, scope="pool4")
        net = slim.flatten(net)
        net = slim.repeat(net, 2, slim.fully_connected, widths.fc, scope="fc1")
        net = slim.fully_connected(net, params.EMBEDDING_SIZE, scope="fc2",
                                   activation_fn=tf.nn.relu if relu_output else None)
        return tf.identity(net, name="embedding")


def load_vggish_slim_checkpoint(session: tf.Session, checkpoint_path: str) -> None:
    """Restore only the VGGish variables from a V1 or V2 checkpoint (the seed's loader)."""
    with tf.Graph().as_default():
        define_vggish_slim(training=False)
        vggish_var_names = [v.name for v in tf.global_variables()]
    vggish_vars = [v for v in tf.global_variables() if v.name in vggish_var_names]
    saver = tf.train.Saver(vggish_vars, name="vggish_load_pretrained", write_version=1)
    saver.restore(session, checkpoint_path)
