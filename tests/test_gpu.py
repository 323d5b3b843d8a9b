"""GPU: the CUDA provider against the CPU provider on the same model; 1 and 2 GPUs.

Skipped unless onnxruntime-gpu sees a GPU. The model is $VGGISH_RT_TEST_GPU_MODEL
(on GPU machines: `python bench/devmodel.py` from a skeleton), else the demo model.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, windows_model
from vggish_rt.engine import Embedder
from vggish_rt.engine.frontend import log_mel_examples
from vggish_rt.engine.rowkind import EXAMPLES
from vggish_rt.engine.session import CUDA, cuda_device_count

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(cuda_device_count() == 0, reason="no CUDA GPU for onnxruntime")]


@pytest.fixture(scope="module")
def gpu_model(request):
    if os.environ.get("VGGISH_RT_TEST_GPU_MODEL"):
        return Path(os.environ["VGGISH_RT_TEST_GPU_MODEL"])
    return request.getfixturevalue("demo_model")


@pytest.fixture(scope="module")
def examples():
    return np.random.default_rng(0).normal(-2.0, 1.5, (1000, 96, 64)).astype(np.float32)


@pytest.fixture(scope="module")
def cpu_reference(gpu_model, examples):
    return Embedder(gpu_model, device="cpu").embed_examples(examples)


def cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_cuda_session_really_runs_on_cuda(gpu_model):
    embedder = Embedder(gpu_model, device="cuda:0")
    assert embedder._runner(EXAMPLES).session.get_providers()[0] == CUDA


@pytest.mark.parametrize("precision,min_cosine,max_relative", [("fp32", 0.99999, 5e-3), ("fp16", 0.9999, 2e-2)])
def test_cuda_matches_cpu(gpu_model, examples, cpu_reference, precision, min_cosine, max_relative):
    got = Embedder(gpu_model, device="cuda:0", precision=precision, batch_size=256).embed_examples(examples)
    assert cosine(got, cpu_reference).min() >= min_cosine
    assert np.abs(got - cpu_reference).max() / np.abs(cpu_reference).max() <= max_relative


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_second_session_gives_the_same_bytes_and_waits_its_turn(gpu_model, examples, precision):
    """Both sessions from the first batch (the start-up race of issue 27, under engine.cudart.GATE) give the rows
    of one session, bit for bit; by default a short job never starts the second."""
    alone = Embedder(gpu_model, device="cuda:0", precision=precision, batch_size=128, sessions_per_device=1)
    both = Embedder(gpu_model, device="cuda:0", precision=precision, batch_size=128, extra_sessions_after_s=0)
    np.testing.assert_array_equal(both.embed_examples(examples), alone.embed_examples(examples))
    assert {slot for _, _, slot in both._runners} == {0, 1}
    default = Embedder(gpu_model, device="cuda:0", precision=precision, batch_size=128)
    np.testing.assert_array_equal(default.embed_examples(examples), alone.embed_examples(examples))
    assert {slot for _, _, slot in default._runners} == {0}


def test_tail_batch_is_padded_not_reshaped(gpu_model, examples, cpu_reference):
    embedder = Embedder(gpu_model, device="cuda:0", batch_size=384)  # 1000 = 2 x 384 + 232
    got = embedder.embed_examples(examples)
    np.testing.assert_allclose(got[:232], embedder.embed_examples(examples[:232]), rtol=0, atol=0)
    assert cosine(got, cpu_reference).min() >= 0.99999


def test_batches_assembled_on_the_device_equal_batches_from_host_memory(gpu_model, examples):
    """On one GPU rows go to the device as they arrive (engine.staging.DeviceBatchBuffers), float64 through the
    page-locked bounce buffer; the same runner on batches assembled in page-locked host memory gives the same bits.
    400 rows at batch 256: a tail batch of 144 (zeros after it on the device)."""
    from vggish_rt.engine.pipeline import batches
    from vggish_rt.engine.sources import Block, InputRows
    from vggish_rt.engine.staging import BatchBuffers, DeviceBatchBuffers, DeviceRows

    embedder = Embedder(gpu_model, device="cuda:0", batch_size=256)
    runner = embedder._runner(EXAMPLES)
    rows = np.concatenate([examples[:200], examples[200:400].astype(np.float64)])

    def run(buffers):
        blocks = [InputRows(0, Block(Path("x"), np.arange(a, a + 100), np.zeros(100), np.zeros(100), examples=rows[a:a + 100]))
                  for a in range(0, 400, 100)]
        made = list(batches(blocks, 256, buffers=buffers))
        assert all(isinstance(b.inputs, DeviceRows) == isinstance(buffers, DeviceBatchBuffers) for b in made)
        return np.concatenate([runner(b.inputs) for b in made])

    shape_bytes = 4 * 256 * 96 * 64
    on_device = run(DeviceBatchBuffers(3, shape_bytes, 0))
    from_host = run(BatchBuffers(3, shape_bytes, pinned=True))
    np.testing.assert_array_equal(on_device, from_host)
    np.testing.assert_array_equal(on_device, embedder.embed_examples(rows))


def test_end_to_end_graph_on_cuda(gpu_model):
    windows = np.random.default_rng(1).uniform(-0.5, 0.5, (300, 15600)).astype(np.float32)
    reference = Embedder(gpu_model, device="cpu").embed_examples(log_mel_examples(windows))
    for precision, floor in (("fp32", 0.99999), ("fp16", 0.9999)):
        got = Embedder(gpu_model, device="cuda:0", precision=precision).embed_windows(windows)
        assert cosine(got, reference).min() >= floor, precision


def test_resampling_in_the_graph_on_cuda_matches_the_cpu(gpu_model):
    """--resampler onnx on CUDA (TF32 convolutions, two sessions, native rows batched on the device) against the
    same rows on the CPU provider, at 48 and 44.1 kHz, with a 16 kHz waveform in the same call."""
    from vggish_rt.engine.sources import ReadOptions

    rng = np.random.default_rng(3)
    inputs = [(rng.uniform(-0.5, 0.5, int(rate * seconds)).astype(np.float32), rate)
              for rate, seconds in ((48000, 30.5), (44100, 12.2), (16000, 9.0))]
    options = ReadOptions(resampler="onnx", pad_tail=True)
    reference = Embedder(gpu_model, device="cpu").embed(inputs, options=options)
    for precision, floor in (("fp32", 0.99999), ("fp16", 0.9999)):
        got = Embedder(gpu_model, device="cuda:0", precision=precision, batch_size=64,
                       extra_sessions_after_s=0).embed(inputs, options=options)
        for mine, theirs in zip(got, reference):
            assert mine.embeddings.shape == theirs.embeddings.shape
            assert cosine(mine.embeddings, theirs.embeddings).min() >= floor, precision


def test_resampling_front_on_cuda_is_exact_with_tf32_on():
    """The graph's resampler on CUDA, TF32 on (the provider's default), gives the CPU's 16 kHz windows within
    3e-6 on a tone with a quiet partial: the split products (engine.resampling) are exact in TF32; without
    them the error is about 2e-4 (measured on an H200), which is what a quiet log-mel band notices."""
    from vggish_rt.engine.resampling import native_rows, with_resampler
    from vggish_rt.engine.session import create_session
    from vggish_rt.engine.windows import DEFAULT_HOP

    for rate in (48000, 44100, 22050, 8000):
        t = np.arange(int(rate * 6.3)) / rate
        rows = native_rows((0.5 * np.sin(2 * np.pi * 440 * t) + 1e-4 * np.sin(2 * np.pi * 3100 * t))
                           .astype(np.float32), rate, DEFAULT_HOP, pad_tail=True)
        cpu = create_session(with_resampler(windows_model(), rate), "cpu").run(None, {"waveform": rows})[0]
        cuda = create_session(with_resampler(windows_model(), rate, exact_tf32=True), "cuda").run(
            None, {"waveform": rows})[0]
        np.testing.assert_allclose(cuda, cpu, rtol=0, atol=3e-6, err_msg=str(rate))


@pytest.mark.skipif(cuda_device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_keep_order_and_values(gpu_model, examples):
    one = Embedder(gpu_model, device="cuda:0", batch_size=128).embed_examples(examples)
    two_embedder = Embedder(gpu_model, device="cuda:0,1", batch_size=128)
    assert two_embedder.devices == 2
    two = two_embedder.embed_examples(examples)
    assert cosine(one, two).min() >= 0.99999
    assert {r.device_id for r in two_embedder._runners.values()} == {0, 1}


def test_job_on_cuda_matches_cpu(gpu_model, tmp_path):
    data = np.random.default_rng(2).normal(-2.0, 1.5, (700, 96, 64))
    data.tofile(tmp_path / "spec.dat")
    for device in ("cpu", "cuda"):
        result = run_cli("embed", tmp_path / "spec.dat", "--model", gpu_model, "--device", device, "--batch-size", "256",
                         "--out", tmp_path / f"{device}.npy")
        assert result.returncode == 0, result.stderr
    assert cosine(np.load(tmp_path / "cuda.npy"), np.load(tmp_path / "cpu.npy")).min() >= 0.99999


def test_resume_on_cuda_gives_identical_bytes(gpu_model, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from test_job import wait_for_rows

    np.random.default_rng(3).normal(-2.0, 1.5, (6000, 96, 64)).tofile(tmp_path / "spec.dat")
    args = ["embed", tmp_path / "spec.dat", "--model", gpu_model, "--device", "cuda:0", "--batch-size", "256",
            "--commit-every", "0.01"]
    assert run_cli(*args, "--out", tmp_path / "ref.npy").returncode == 0
    out = tmp_path / "resumed.npy"
    process = subprocess.Popen([sys.executable, "-m", "vggish_rt.cli", *map(str, args), "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_rows(tmp_path / "resumed.npy.partial", 1000, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    resumed = run_cli(*args, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == (tmp_path / "ref.npy").read_bytes()


def test_frontend_graph_on_cuda_is_accurate_with_tf32_on():
    """TF32 (the CUDA provider's default) must not distort the in-graph log-mel: quiet bins come
    from cancelling sums, which a plain TF32 MatMul got wrong by up to 0.93 (docs/benchmarks.md)."""
    from vggish_rt.engine.session import create_session
    from vggish_rt.export.frontend_graph import frontend_model

    rng = np.random.default_rng(4)
    windows = np.concatenate([rng.uniform(-1, 1, (32, 15600)),
                              0.5 * np.sin(2 * np.pi * 1000 * np.arange(32 * 15600) / 16000).reshape(32, 15600),
                              1e-4 * rng.standard_normal((32, 15600))]).astype(np.float32)
    session = create_session(frontend_model(17, 8).SerializeToString(), "cuda", 0)  # use_tf32 defaults to on
    got = session.run(None, {"waveform": windows})[0]
    assert np.abs(got - log_mel_examples(windows)).max() <= 1e-3


def test_real_out_of_memory_halves_the_batch(gpu_model, capfd):
    """A 3 GB arena (gpu_mem_limit) cannot hold batch 8192 (12 GB for conv1 alone): onnxruntime's own
    allocation error, halved until it fits, the same embeddings as batch 1024 (seen on an H200: 8192 -> 1024)."""
    x = np.random.default_rng(0).normal(-2, 1.5, (12000, 96, 64)).astype(np.float32)
    limited = Embedder(gpu_model, device="cuda:0", batch_size=8192, sessions_per_device=1,
                       cuda_options={"gpu_mem_limit": str(3 * 2**30)})
    got = limited.embed_examples(x)
    assert all(runner.batch_size < 8192 for runner in limited._runners.values())
    assert "ran out of memory at batch size 8192" in capfd.readouterr().err
    reference = Embedder(gpu_model, device="cuda:0", batch_size=1024).embed_examples(x[:2000])
    np.testing.assert_allclose(got[:2000], reference, rtol=1e-5, atol=1e-5)
