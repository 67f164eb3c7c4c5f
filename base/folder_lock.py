"""One writer per folder: a campaign or corpus folder is written by one process at a time.

Two ``campaign run`` on one ``--out`` (two terminals, a job retried by a cluster's scheduler) would interleave
their writes into the same unit files and markers. The first process to start holds an exclusive ``flock`` on
``<folder>/.lock`` for as long as it lives, and writes who it is (host, pid, since when) into the file; a
second is refused at once with those facts. The kernel drops the lock when its holder dies, however it dies,
so a lock left by a killed process is stale by construction: the next process takes it over and says whose
it was.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class FolderBusy(RuntimeError):
    """Another live process writes the folder; the message names it (host, pid, since when)."""


def _holder(text: str) -> dict[str, Any]:
    try:
        info = json.loads(text)
        return info if isinstance(info, dict) else {}
    except ValueError:
        return {}


def _describe(info: dict[str, Any]) -> str:
    since = info.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, since {when} ({info.get('command', '?')})"


class FolderLock:
    """``with FolderLock(folder, "campaign run"):`` holds the folder for this process or raises ``FolderBusy``."""

    def __init__(self, folder: str | Path, command: str):
        self.folder = Path(folder)
        self.command = command
        self._file: IO[str] | None = None

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_FILE
        f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            info = _holder(f.read())
            f.close()
            raise FolderBusy(
                f"{self.folder}: another process is writing it ({_describe(info)}); wait for it to finish or stop "
                f"it, then `clampdpo campaign resume {self.folder}`"
            ) from None
        f.seek(0)
        before = _holder(f.read())
        if before.get("pid") and before.get("pid") != os.getpid():
            log.warning(
                "%s: taking over a stale lock left by %s (it is no longer running)", self.folder, _describe(before)
            )
        f.seek(0)
        f.truncate()
        f.write(
            json.dumps(
                {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), "command": self.command}
            )
        )
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()  # a clean exit leaves no holder behind
            self._file.flush()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
