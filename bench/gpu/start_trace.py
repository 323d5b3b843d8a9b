"""One job start in a fresh process: Embedder(...).embed_examples on 6,000 examples; logs Python-side events
(session creation, first runs) with the native thread id and CLOCK_MONOTONIC, as bench/gpu/capture_trace.c
does for CUDA's capture calls.

    VGGISH_RT_MODEL=/tmp/devmodel PY_TRACE=/tmp/py.log python3 bench/gpu/start_trace.py PRECISION SESSIONS

Prints OK or FAIL and the error's first line; exit 1 on failure.
"""
import os, sys, threading, time
import numpy as np

log = open(os.environ.get("PY_TRACE", "/tmp/py_trace.log"), "a")
def ev(what):
    log.write(f"{time.monotonic():.6f} tid={threading.get_native_id()} [{threading.current_thread().name}] {what}\n"); log.flush()

from vggish_rt.engine import runner as runner_mod, cudart
from vggish_rt.engine.embedder import Embedder
R = runner_mod.Runner
orig_init, orig_run = R.__init__, R._run
def init(self, *a, **k):
    ev("session create begin"); orig_init(self, *a, **k); ev("session create end"); self._n = 0
def run(self, batch):
    self._n += 1
    if self._n <= 3: ev(f"run {self._n} begin session={id(self.session):x}")
    out = orig_run(self, batch)
    if self._n <= 3: ev(f"run {self._n} end")
    return out
R.__init__, R._run = init, run
orig_start = cudart.start_contexts
def start_contexts(ids):
    ev("start_contexts called"); orig_start(ids)
cudart.start_contexts = start_contexts

precision, sessions = sys.argv[1], int(sys.argv[2])
# Every session from the first batch (a tree with engine.embedder.EXTRA_SESSIONS_AFTER_S would defer the others).
import inspect
extra = {"extra_sessions_after_s": 0.0} if "extra_sessions_after_s" in inspect.signature(Embedder).parameters else {}
x = np.random.default_rng(0).standard_normal((6000, 96, 64)).astype(np.float32)
try:
    e = Embedder(os.environ["VGGISH_RT_MODEL"], device="cuda:0", precision=precision, batch_size=256,
                 sessions_per_device=sessions, **extra)
    y = e.embed_examples(x)
    ev("done"); print("OK", y.shape, float(np.abs(y).sum()))
except Exception as exc:
    ev(f"FAILED {exc}"); print("FAIL", str(exc).splitlines()[0][:300]); sys.exit(1)
