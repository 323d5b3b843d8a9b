"""engine.cudart.GATE's rules: exclusive sections alone, shared ones together, nested sections pass through."""
from __future__ import annotations

import threading
import time

import pytest

from vggish_rt.engine.cudart import _Gate


def test_an_exclusive_section_waits_for_shared_ones_and_holds_new_ones_back():
    gate, events = _Gate(), []
    inside, release = threading.Event(), threading.Event()

    def shared(name: str, wait: threading.Event | None = None) -> None:
        with gate.shared():
            events.append(f"{name} in")
            inside.set()
            if wait is not None:
                wait.wait(5)
            events.append(f"{name} out")

    def exclusive() -> None:
        with gate.exclusive():
            events.append("exclusive in")
            time.sleep(0.05)
            events.append("exclusive out")

    first = threading.Thread(target=shared, args=("first", release))
    first.start()
    inside.wait(5)
    writer = threading.Thread(target=exclusive)
    writer.start()
    time.sleep(0.05)  # the exclusive section now waits for the first shared one
    late = threading.Thread(target=shared, args=("late",))
    late.start()
    time.sleep(0.05)  # and a shared section asked for after it waits behind it
    assert events == ["first in"]
    release.set()
    for thread in (first, writer, late):
        thread.join(5)
    assert events == ["first in", "first out", "exclusive in", "exclusive out", "late in", "late out"]


def test_shared_sections_run_together():
    gate, both = _Gate(), threading.Barrier(2, timeout=5)

    def shared() -> None:
        with gate.shared():
            both.wait()  # breaks (BrokenBarrierError) unless both are inside at once

    threads = [threading.Thread(target=shared) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert not both.broken


def test_nested_sections_pass_through_and_an_upgrade_is_refused():
    gate = _Gate()
    with gate.exclusive():
        with gate.shared():  # a session's first run copies inside its exclusive start-up
            with gate.exclusive():
                pass
    with gate.shared():
        with gate.shared():
            pass
        with pytest.raises(RuntimeError, match="exclusive CUDA section inside a shared one"):
            with gate.exclusive():
                pass
    with gate.exclusive():  # the gate is free again
        pass
