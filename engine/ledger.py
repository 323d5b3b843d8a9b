"""The job's policy, in one place: what a job does with each input's rows and with how each input ended.

Every way of running a job (threads in this process, one process per device, Ray) turns its work into
events in input order, and feeds them to one :class:`Ledger`:

    rows(rows, numbers)   embeddings of inputs ``numbers`` (int64 [n]), in order within each input;
    ended(InputEnded)     an input has given all its rows, or stopped early with an error.

The ledger decides, and nothing else does: ``on_error`` ('fail' raises the input's error, 'skip' records it
and drops any later row of that input), short inputs (read whole, no example), inputs done, the overflow
guard (no NaN or Inf row is ever written), the report, and the position a resumed job goes on from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vggish_rt.engine.errors import ArgumentError, VggishError
from vggish_rt.engine.inputs import printable
from vggish_rt.engine.store import Rows

ON_ERROR = ("fail", "skip")


def check_on_error(on_error: str) -> None:
    """Refuse an ``on_error`` that is not 'fail' or 'skip'."""
    if on_error not in ON_ERROR:
        raise ArgumentError("on_error", on_error, f"expected {' or '.join(ON_ERROR)}")


@dataclass
class JobReport:
    """What a job did: rows written, inputs done, failed inputs (path, reason), inputs too short."""

    rows: int = 0
    inputs_done: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    short_inputs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InputEnded:
    """Input ``number`` (``path``) gave all its rows, or stopped early with ``error`` (a one-line reason naming
    it); ``resumed_at``: the examples a resumed job skipped at its start (it gave rows before the kill)."""

    number: int
    path: str
    error: str | None = None
    resumed_at: int = 0


class Ledger:
    """The report, ``on_error``, short inputs, the overflow guard and the resume position of one job.

    ``position`` is a journal position of an earlier run of the same job (:meth:`position`), to go on from.
    """

    def __init__(self, on_error: str, position: dict[str, Any] | None = None) -> None:
        check_on_error(on_error)
        position = position or {}
        saved = position.get("report", {})
        self.on_error = on_error
        self.report = JobReport(inputs_done=saved.get("inputs_done", 0),
                                failures=[tuple(f) for f in saved.get("failures", [])],
                                short_inputs=list(saved.get("short_inputs", [])))
        self._failed_numbers: list[int] = list(saved.get("failed_numbers", []))  # of report.failures, in order
        self._failed = set(self._failed_numbers)
        self._overflowed = [list(e) for e in position.get("overflowed", [])]  # [number, path, reason]
        self._overflowed_numbers = {int(e[0]) for e in self._overflowed}
        self.source, self.example = position.get("source", 0), position.get("example", 0)
        self._rows_of: dict[int, int] = {}  # rows given by the inputs not yet ended

    def rows(self, rows: Rows, numbers: np.ndarray) -> Rows:
        """``rows`` of inputs ``numbers`` (int64 [n]) as the store takes them: without the rows of failed inputs,
        and without a non-finite row and every later row of its input (with on_error='fail' it raises)."""
        if not len(rows):
            return rows
        for number, count in zip(*np.unique(numbers, return_counts=True)):
            self._rows_of[int(number)] = self._rows_of.get(int(number), 0) + int(count)
        self.source, self.example = int(numbers[-1]), int(rows.example[-1]) + 1
        finite = np.isfinite(rows.values).reshape(len(rows.values), -1).all(axis=1)
        dropped = self._failed | self._overflowed_numbers
        if finite.all() and not dropped:
            return rows
        keep = finite & ~np.isin(numbers, list(dropped))
        for row in np.flatnonzero(~finite):
            number = int(numbers[row])
            reason = (f"{rows.source[row]}: example {rows.example[row]} embeds to NaN or Inf; nothing is written "
                      "for it (the model overflows on this input)")
            if self.on_error == "fail":
                raise VggishError(reason)
            if number not in self._overflowed_numbers:
                self._overflowed_numbers.add(number)
                self._overflowed.append([number, rows.source[row], reason])
            keep[row:][numbers[row:] == number] = False
        return rows if keep.all() else _select(rows, keep)

    def ended(self, event: InputEnded) -> None:
        """Input ``event.number`` gave its last row. An error fails it (raised with on_error='fail'); an input read
        whole is done, and short when it gave no row from its start. A failed input's later ends are ignored."""
        if event.number + 1 > self.source:
            self.source, self.example = event.number + 1, 0
        rows = self._rows_of.pop(event.number, 0)
        if event.number in self._failed:
            return
        if event.error is not None:
            if self.on_error == "fail":
                raise VggishError(event.error)
            self._fail(event.number, printable(event.path), printable(event.error))
            return
        if rows == 0 and event.resumed_at == 0:
            self.report.short_inputs.append(printable(event.path))
        if event.number not in self._overflowed_numbers:
            self.report.inputs_done += 1

    def position(self) -> dict[str, Any]:
        """Where a resumed job goes on (the next row's input and example) and the report so far, for the journal."""
        return {"source": self.source, "example": self.example, "overflowed": [list(e) for e in self._overflowed],
                "report": {"inputs_done": self.report.inputs_done, "failures": [list(f) for f in self.report.failures],
                           "short_inputs": list(self.report.short_inputs),
                           "failed_numbers": list(self._failed_numbers)}}

    def finish(self) -> JobReport:
        """Once every input ended: each input that overflowed is failed (after the inputs that failed reading)."""
        for number, path, reason in self._overflowed:
            if int(number) not in self._failed:
                self._fail(int(number), path, reason)
        self._overflowed, self._overflowed_numbers = [], set()
        return self.report

    def failed_sources(self) -> frozenset[str]:
        """The paths of the failed inputs (their pooled rows are dropped)."""
        return frozenset(path for path, _ in self.report.failures)

    def _fail(self, number: int, path: str, reason: str) -> None:
        self.report.failures.append((path, reason))
        self._failed_numbers.append(number)
        self._failed.add(number)


def _select(rows: Rows, keep: np.ndarray) -> Rows:
    """The rows where ``keep`` (bool [n]) is true."""
    flags = keep.tolist()
    return Rows([s for s, k in zip(rows.source, flags) if k], rows.example[keep], rows.start_s[keep],
                rows.end_s[keep], rows.values[keep], [m for m, k in zip(rows.metadata, flags) if k])
