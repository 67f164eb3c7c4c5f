"""One writer per folder: a second campaign (or corpus build) on a folder another live process writes is refused
at once, naming the first; a lock left by a killed process is taken over with a warning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from base.folder_lock import LOCK_FILE, FolderBusy, FolderLock

REPO = Path(__file__).resolve().parents[2]
HOLD = (
    "import sys, time; from base.folder_lock import FolderLock; "
    "lock = FolderLock(sys.argv[1], 'campaign run').acquire(); print('held', flush=True); time.sleep(600)"
)


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.e2e  # runs the CLI in a subprocess (refused at once: it starts nothing)
def test_a_second_writer_is_refused_naming_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path, caplog):
    folder = tmp_path / "campaign"
    first = _holder(folder)
    try:
        with pytest.raises(FolderBusy, match=rf"pid {first.pid} on .*since .*\(campaign run\)"):
            FolderLock(folder, "campaign resume").acquire()
        # the command line: one line, the first writer's pid, a non-zero exit, nothing written in the folder
        before = sorted(p.name for p in folder.iterdir())
        res = subprocess.run(
            [sys.executable, "-m", "clampdpo", "campaign", "run", "-c", "tiny", "--out", str(folder)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        errors = [ln for ln in res.stderr.splitlines() if "ERROR" in ln]
        assert res.returncode == 1 and len(errors) == 1 and f"pid {first.pid}" in errors[0] and "busy" in errors[0]
        assert sorted(p.name for p in folder.iterdir()) == before == [LOCK_FILE]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the kernel dropped the dead process's lock; its record is still there, so the next writer says whose it was
    with caplog.at_level("WARNING"), FolderLock(folder, "campaign resume"):
        held = json.loads((folder / LOCK_FILE).read_text())
        assert held["pid"] == os.getpid() and held["command"] == "campaign resume" and time.time() - held["since"] < 60
    assert f"stale lock left by pid {first.pid}" in caplog.text
    assert (folder / LOCK_FILE).read_text() == ""  # a clean exit leaves no holder behind
    with FolderLock(folder, "campaign run"):  # and a lock released cleanly is taken without a warning
        pass
