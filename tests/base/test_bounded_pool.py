"""Each input under its own time and memory limit: a hung, greedy or crashing input costs its limit, the other
inputs still come back, and the pool goes on with a fresh worker."""

from __future__ import annotations

import os
import time

from base.bounded_pool import Limits, Stopped, run_bounded


def _job(kind: str) -> str:
    if kind == "hang":
        time.sleep(60)
    if kind == "greedy":
        hog = []
        for _ in range(64):  # 1 GB, 16 MB at a time: the pool sees it grow
            hog.append(bytearray(16 * 2**20))
            time.sleep(0.05)
        return str(len(hog))
    if kind == "crash":
        os._exit(3)
    if kind == "raise":
        raise ValueError("bad input here")
    if kind == "deep":

        def down(n: int) -> int:
            return down(n + 1)

        down(0)
    return kind.upper()


def test_every_input_comes_back_once_with_its_value_or_why_it_stopped():
    jobs = ["a", "hang", "b", "greedy", "c", "crash", "d", "raise", "deep", "e"]
    start = time.monotonic()
    out = dict(run_bounded(_job, jobs, workers=2, limits=Limits(seconds=3, memory_mb=200)))
    took = time.monotonic() - start
    assert sorted(out) == list(range(len(jobs)))
    assert [out[i] for i in (0, 2, 4, 6, 9)] == ["A", "B", "C", "D", "E"]
    assert out[1] == Stopped("took longer than 3 s")
    assert isinstance(out[3], Stopped) and "memory" in out[3].reason
    assert out[5] == Stopped("the worker processing it crashed")
    assert out[7] == Stopped("bad input here")
    assert out[8] == Stopped("nested too deeply to process")
    assert took < 50  # bounded by the limits, not by the 60 s the hung input asks for


def test_no_jobs_no_workers():
    assert list(run_bounded(_job, [], workers=2, limits=Limits())) == []
