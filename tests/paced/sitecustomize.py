"""Paced jobs for kill tests: every Python process started with this folder first on PYTHONPATH (the job,
its device processes, its decoding workers) makes each onnxruntime session run take at least
``VGGISH_RT_TEST_RUN_SECONDS`` more, so a kill -9 lands mid-job however fast the network runs.

The session and its outputs are real and unchanged; only time is added. Used by test_job.kill_at_rows.
"""
import os
import time

_SECONDS = float(os.environ.get("VGGISH_RT_TEST_RUN_SECONDS", "0"))

if _SECONDS > 0:
    import onnxruntime

    _run = onnxruntime.InferenceSession.run

    def _paced_run(self, *args, **kwargs):
        time.sleep(_SECONDS)
        return _run(self, *args, **kwargs)

    onnxruntime.InferenceSession.run = _paced_run
