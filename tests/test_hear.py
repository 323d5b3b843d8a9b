"""vggish_rt.hear: the HEAR benchmark's API, checked as its validator checks a submission, and more exactly."""
from __future__ import annotations

import numpy as np
import pytest

from vggish_rt import hear
from vggish_rt.engine import params


@pytest.fixture(scope="module")
def models(small_model):
    return {relu: hear.load_model(str(small_model / "manifest.json"), device="cpu", relu=relu) for relu in (False, True)}


def test_the_model_passes_the_validators_type_and_attribute_checks(models):
    """hear-validator's load_model check, as it makes it: a torch Module when torch is installed, else a
    TensorFlow Module (CI installs TensorFlow for the export, not torch)."""
    model = models[False]
    try:
        import torch

        assert isinstance(model, torch.nn.Module)
    except ImportError:
        tf = pytest.importorskip("tensorflow")
        assert isinstance(model, tf.Module)
    assert model.sample_rate in hear.SAMPLE_RATES
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)


@pytest.mark.parametrize("seconds", [1.07, 1.98, 4.0, 0.4])
def test_timestamp_embeddings_have_the_contracts_shapes_and_exact_centres(models, seconds):
    """The validator's lengths (and one shorter than an example): [n, T, 128] float32, timestamps [n, T] at the
    exact centre of each example's samples, regular, within the audio; a short sound gets one example."""
    model = models[False]
    audio = np.random.default_rng(0).uniform(-1, 1, (2, int(seconds * model.sample_rate))).astype(np.float32)
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    count = max(1, 1 + (int(seconds * 16_000) - params.EXAMPLE_SAMPLES) // (96 * 160))
    assert embeddings.shape == (2, count, 128) and embeddings.dtype == np.float32
    assert timestamps.shape == (2, count) and timestamps.dtype == np.float32
    np.testing.assert_array_equal(timestamps[1], 960.0 * np.arange(count) + 487.5)
    if seconds > 1:
        assert timestamps.max() <= 1000 * seconds and timestamps.max() >= 1000 * seconds - 2 * 960
    alone = model.embedder.embed((audio[1], model.sample_rate), options=model.read).embeddings
    np.testing.assert_array_equal(embeddings[1], alone)  # batched with the other sound: the same rows


def test_scene_embeddings_relu_and_rates(models, small_model):
    """Scene: the mean over time, [n, 128] float32; relu=True: the same rows, ReLU'd; 48 kHz audio is resampled as
    the CLI resamples."""
    audio = np.random.default_rng(1).uniform(-1, 1, (4, int(2.74 * 16_000))).astype(np.float32)
    scene = hear.get_scene_embeddings(audio, models[False])
    embeddings, _ = hear.get_timestamp_embeddings(audio, models[False])
    assert scene.shape == (4, 128) and scene.dtype == np.float32
    np.testing.assert_allclose(scene, embeddings.mean(axis=1), rtol=1e-6)
    relu, _ = hear.get_timestamp_embeddings(audio, models[True])
    np.testing.assert_array_equal(relu, np.maximum(embeddings, 0))
    high = hear.load_model(str(small_model), device="cpu", sample_rate=48_000)
    loud = np.repeat(audio[:1], 3, axis=1)  # any 48 kHz samples
    by_rate, _ = hear.get_timestamp_embeddings(loud, high)
    np.testing.assert_array_equal(by_rate[0], high.embedder.embed((loud[0], 48_000), options=high.read).embeddings)
    with pytest.raises(hear.VggishError, match="HEAR accepts"):
        hear.load_model(str(small_model), sample_rate=8_000)


def test_tensors_in_give_tensors_of_their_kind_out(models):
    """torch tensors (when torch is installed) and TensorFlow's eager tensors come back as their own kind, with
    the values NumPy gets."""
    audio = np.random.default_rng(2).uniform(-1, 1, (2, 20_000)).astype(np.float32)
    expected, _ = hear.get_timestamp_embeddings(audio, models[False])
    checked = 0
    try:
        import torch

        out = hear.get_scene_embeddings(torch.from_numpy(audio), models[False])
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), expected.mean(axis=1), rtol=1e-6)
        checked += 1
    except ImportError:
        pass
    tf = pytest.importorskip("tensorflow")
    if tf.executing_eagerly():  # the export's modules switch TensorFlow to TF1 graph mode for the whole process
        tensors = hear.get_timestamp_embeddings(tf.constant(audio), models[False])
        assert all(isinstance(t, tf.Tensor) for t in tensors) and tensors[0].dtype == tf.float32
        np.testing.assert_array_equal(tensors[0].numpy(), expected)
        checked += 1
    if not checked:
        pytest.skip("neither torch nor eager TensorFlow in this process (run this file alone for TensorFlow's)")
