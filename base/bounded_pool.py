"""Run a function over many inputs in worker processes, each input under a time and a memory limit.

One bad input (a 10 MB line of ABC, 50,000 nested brackets) must cost at most its limit, never the whole job:
the worker running it is killed when it passes either limit and a fresh one takes its place. Memory is the
growth of the worker's resident set over its size when it started (a forked worker shares its parent's
pages, so its own absolute size says little). Results come back as they finish, tagged with the input's
position; an input that was stopped or crashed its worker comes back as a ``Stopped`` reason instead.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

_POLL_S = 0.1
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class Limits:
    """What one input may cost; 0 switches a limit off."""

    seconds: float = 60.0
    memory_mb: int = 1024


@dataclass(frozen=True)
class Stopped:
    """Why an input has no result, for a person: over its time or memory limit, or its worker died."""

    reason: str


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None  # no /proc (macOS): the time limit still holds


def _serve(conn: Connection, fn: Callable[[Any], Any]) -> None:
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        index, job = msg
        try:
            conn.send((index, fn(job), None))
        except MemoryError:
            conn.send((index, None, "ran out of memory"))
        except RecursionError:
            conn.send((index, None, "nested too deeply to process"))
        except Exception as err:  # fn should catch its own errors; a stray one is this input's, not the job's
            conn.send((index, None, " ".join(str(err).split())[:300] or "failed without a message"))


class _Worker:
    def __init__(self, ctx: Any, fn: Callable[[Any], Any]):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, fn), daemon=True)
        self.proc.start()
        child.close()
        self.baseline = _rss_bytes(self.proc.pid or 0)
        self.job: int | None = None
        self.started = 0.0

    def give(self, index: int, job: Any) -> None:
        self.job, self.started = index, time.monotonic()
        if self.baseline is None:
            self.baseline = _rss_bytes(self.proc.pid or 0)
        self.conn.send((index, job))

    def over(self, limits: Limits) -> str | None:
        if limits.seconds and time.monotonic() - self.started > limits.seconds:
            return f"took longer than {limits.seconds:g} s"
        if limits.memory_mb and self.baseline is not None:
            rss = _rss_bytes(self.proc.pid or 0)
            if rss is not None and rss - self.baseline > limits.memory_mb * 2**20:
                return f"needed more than {limits.memory_mb} MB of memory"
        return None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


def run_bounded(
    fn: Callable[[Any], Any], jobs: list[Any], workers: int, limits: Limits
) -> Iterator[tuple[int, Any | Stopped]]:
    """(position, fn(job) or Stopped) for every job, in the order they finish; ``fn`` must be picklable."""
    if not jobs:
        return
    ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
    pool = [_Worker(ctx, fn) for _ in range(max(1, min(workers, len(jobs))))]
    queue = list(range(len(jobs)))[::-1]
    pending = len(jobs)
    try:
        while pending:
            for w in pool:
                if w.job is None and queue:
                    i = queue.pop()
                    w.give(i, jobs[i])
            busy = {w.conn: w for w in pool if w.job is not None}
            for conn in wait(list(busy), timeout=_POLL_S):
                w = busy[conn]
                try:
                    index, value, error = w.conn.recv()
                except (EOFError, OSError):  # the worker died mid-job (killed by the OS, a crash in C code)
                    yield w.job, Stopped("the worker processing it crashed")  # type: ignore[misc]
                    pending -= 1
                    w.kill()
                    pool[pool.index(w)] = _Worker(ctx, fn)
                    continue
                w.job = None
                pending -= 1
                yield index, (Stopped(str(error)) if error else value)
            for k, w in enumerate(pool):
                reason = w.over(limits) if w.job is not None else None
                if reason:
                    index = w.job
                    w.kill()
                    pool[k] = _Worker(ctx, fn)
                    pending -= 1
                    yield index, Stopped(reason)  # type: ignore[misc]
    finally:
        for w in pool:
            if w.job is None:
                w.stop()
            else:
                w.kill()
