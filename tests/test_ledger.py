"""engine.ledger: the job's policy, event by event, as a table (no sessions, no files)."""
from __future__ import annotations

import numpy as np
import pytest

from vggish_rt.engine.errors import VggishError
from vggish_rt.engine.ledger import InputEnded, Ledger
from vggish_rt.engine.store import Rows


def rows(number: int, first: int, n: int, bad: int | None = None) -> tuple[Rows, np.ndarray]:
    """``n`` rows of input ``number`` from example ``first``; the row at example ``bad`` is NaN."""
    values = np.ones((n, 128), np.float32)
    if bad is not None:
        values[bad - first] = np.nan
    example = np.arange(first, first + n)
    return Rows([f"in{number}"] * n, example, np.zeros(n), np.zeros(n), values), np.full(n, number)


def end(number: int, error: str | None = None, resumed_at: int = 0) -> InputEnded:
    return InputEnded(number, f"in{number}", error, resumed_at)


# (events, on_error) -> (rows kept per input, inputs done, failed inputs in order, short inputs); an event is
# ("rows", number, first, n[, bad example]) or ("end", number[, error[, resumed_at]]).
CASES = {
    "read whole": ([("rows", 0, 0, 3), ("end", 0), ("rows", 1, 0, 2), ("end", 1)], "skip",
                   ({0: 3, 1: 2}, 2, [], [])),
    "short input: done, and listed": ([("end", 0), ("rows", 1, 0, 2), ("end", 1)], "skip", ({1: 2}, 2, [], ["in0"])),
    "resumed at its end: not short": ([("end", 0, None, 5)], "skip", ({}, 1, [], [])),
    "bad part-way: rows before kept, failed": ([("rows", 0, 0, 2), ("end", 0, "in0: bad"), ("rows", 1, 0, 1),
                                                ("end", 1)], "skip", ({0: 2, 1: 1}, 1, ["in0"], [])),
    "a failed input's later rows and ends dropped": (
        [("end", 0, "in0: bad"), ("rows", 0, 8, 2), ("end", 0, "in0: worse"), ("end", 0)], "skip",
        ({}, 0, ["in0"], [])),
    "overflow: its input failed from that row, after reading failures": (
        [("rows", 0, 0, 4, 2), ("rows", 0, 4, 2), ("end", 0), ("end", 1, "in1: bad")], "skip",
        ({0: 2}, 0, ["in1", "in0"], [])),
    "overflow, then its input fails reading: one failure": (
        [("rows", 0, 0, 3, 1), ("end", 0, "in0: bad")], "skip", ({0: 1}, 0, ["in0"], [])),
}


@pytest.mark.parametrize("name", CASES)
def test_the_ledger_applies_the_jobs_policy(name):
    events, on_error, (kept, done, failed, short) = CASES[name]
    ledger, got = Ledger(on_error), {}
    for event in events:
        if event[0] == "rows":
            part, numbers = rows(*event[1:])
            stored = ledger.rows(part, numbers)
            for source in stored.source:
                got[int(source[2:])] = got.get(int(source[2:]), 0) + 1
        else:
            ledger.ended(end(*event[1:]))
    report = ledger.finish()
    assert got == kept
    assert report.inputs_done == done
    assert [path for path, _ in report.failures] == failed and report.short_inputs == short
    assert ledger.failed_sources() == frozenset(failed)


@pytest.mark.parametrize("event", [("end", 0, "in0: bad"), ("rows", 0, 0, 3, 1)])
def test_on_error_fail_raises_the_inputs_error(event):
    ledger = Ledger("fail")
    with pytest.raises(VggishError, match="in0: (bad|example 1 embeds to NaN)"):
        if event[0] == "end":
            ledger.ended(end(*event[1:]))
        else:
            ledger.rows(*rows(*event[1:]))


def test_the_position_resumes_the_same_report():
    """What a killed job committed is what its resumption goes on from: position and report, overflows kept."""
    ledger = Ledger("skip")
    ledger.rows(*rows(0, 0, 3))
    ledger.ended(end(0))
    ledger.ended(end(1, "in1: bad"))
    ledger.rows(*rows(2, 0, 4, 1))
    assert (ledger.position()["source"], ledger.position()["example"]) == (2, 4)
    resumed = Ledger("skip", ledger.position())
    assert resumed.rows(*rows(2, 4, 2)).values.shape == (0, 128)  # the overflowed input's later rows: dropped
    resumed.ended(end(2, resumed_at=4))
    report = resumed.finish()
    assert report.inputs_done == 1 and [p for p, _ in report.failures] == ["in1", "in2"]
    assert (resumed.position()["source"], resumed.position()["example"]) == (3, 0)
    with pytest.raises(VggishError, match="on_error"):
        Ledger("ignore")
