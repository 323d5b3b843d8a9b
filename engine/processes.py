"""A group of worker processes: started together, watched while the main process waits for their messages,
ended together. Used by the decoding workers (engine.decoding) and the device processes (engine.shards).

    main --tasks (None: stop)--> each process: follow(job), Ready, its own messages --results--> main

Messages are small frozen dataclasses (each module defines its own beside :class:`Ready` and
:class:`Failed`), never positional tuples. While the main process waits, it watches the processes: one
that ended with another exit code than 0 (a crash, kill -9) is named in the VggishError it raises, and a
group whose processes all ended without a message left to read has stopped before its work was done.
A process follows the job: it ends when the job's process ends (kill -9 included), and leaves Ctrl-C and
SIGTERM to it.
"""
from __future__ import annotations

import os
import queue
import select
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from vggish_rt.engine.errors import VggishError

_POLL_SECONDS = 1.0  # how often a waiting main process looks at its processes


@dataclass(frozen=True)
class Ready:
    """Process ``worker`` has started (mapped shared memory, made its sessions) and takes tasks."""

    worker: int


@dataclass(frozen=True)
class Failed:
    """A process's own failure (a session it cannot create, a read it cannot do): the group's job ends with
    ``message``."""

    message: str


def follow(job: int) -> None:
    """In a worker process: end with process ``job`` (:func:`exit_with`), and ignore Ctrl-C and SIGTERM,
    which are the job's to handle (a terminal sends them to the whole process group)."""
    exit_with(job)
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)


def exit_with(pid: int) -> None:
    """End this process as soon as process ``pid`` has ended (kill -9 included): a thread waits on a Linux
    pidfd (polls once a second where there is none). A decoding worker's parent is the forkserver, which
    lives as long as any worker does, so the parent-death signal cannot serve."""
    def watch() -> None:
        try:
            select.select([os.pidfd_open(pid)], [], [])
        except (AttributeError, OSError):
            while running(pid):
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="vggish-watch-job", daemon=True).start()


def running(pid: int) -> bool:
    """Whether process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class ProcessGroup:
    """``processes`` (multiprocessing Process objects, not started) that take tasks from ``tasks`` and send
    messages on ``results``; ``role`` names one of them in errors ("device process")."""

    def __init__(self, role: str, processes: list, tasks: Any, results: Any) -> None:
        self.role, self.processes, self.tasks, self.results = role, processes, tasks, results

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def wait_ready(self) -> None:
        """Return once every process has sent :class:`Ready`."""
        for _ in self.processes:
            message = self.receive()
            if not isinstance(message, Ready):
                raise VggishError(f"internal error: a {self.role} sent {message!r} before it was ready")

    def receive(self) -> Any:
        """The next message from any process; VggishError for a :class:`Failed` one, a process that died, or
        a group that ended before sending everything."""
        while True:
            try:
                message = self.results.get(timeout=_POLL_SECONDS)
            except queue.Empty:  # a process that ended with 0 has sent everything; others may still work
                dead = [p for p in self.processes if p.exitcode not in (None, 0)]
                if dead:
                    raise VggishError(f"{self.role} {dead[0].name} died (exit code {dead[0].exitcode})") from None
                if all(p.exitcode == 0 for p in self.processes) and self.results.empty():
                    raise VggishError(f"every {self.role} ended before the job's inputs were embedded") from None
                continue
            if isinstance(message, Failed):
                raise VggishError(message.message)
            return message

    def close(self, grace_s: float) -> None:
        """End every process: tell each to stop and wait up to ``grace_s`` for it (none: kill at once), then
        kill what still runs."""
        if grace_s > 0:
            for process in self.processes:  # a process waiting for a task ends at once
                if process.is_alive():
                    self.tasks.put(None)
            for process in self.processes:
                if process.pid is not None:
                    process.join(timeout=grace_s)
        for process in self.processes:
            if process.is_alive():
                process.kill()
        for process in self.processes:
            if process.pid is not None:  # started
                process.join()
