"""Files we wrote and will unpickle later, sealed so that nothing else is ever unpickled in their place.

DeepSpeed reads its checkpoints with ``torch.load(weights_only=False)``: a ``.pt`` planted in a run folder
would run code on resume. So when a checkpoint is written we record every file's SHA-256 and sign the list
with a key that lives outside run folders (``~/.config/clampdpo/seal.key``, owner-only; ``CLAMPDPO_SEAL_KEY``
overrides it, e.g. one secret for every node of a cluster without a shared home); before it is loaded, the
folder must still match. Whoever can write the run folder but not the key cannot forge a seal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from base import atomic
from base.atomic import file_sha256

SEAL_FILE = "clampdpo-seal.json"
KEY_ENV = "CLAMPDPO_SEAL_KEY"


def _key() -> bytes:
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    path = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "clampdpo" / "seal.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def _listing(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != SEAL_FILE
    }


def _signature(files: dict[str, str]) -> str:
    return hmac.new(_key(), json.dumps(files, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def seal(folder: str | Path) -> None:
    """Record and sign what ``folder`` holds now."""
    folder = Path(folder)
    files = _listing(folder)
    atomic.write_json(folder / SEAL_FILE, {"files": files, "signature": _signature(files)})


def broken_seal(folder: str | Path) -> str | None:
    """Why ``folder`` may not be trusted (no seal, a forged one, a file added, changed or removed), or None."""
    folder = Path(folder)
    try:
        sealed = json.loads((folder / SEAL_FILE).read_text(encoding="utf-8"))
        files, signature = sealed["files"], sealed["signature"]
    except FileNotFoundError:
        return "it has no seal (not written by clampdpo, or written before seals existed)"
    except (OSError, ValueError, KeyError, TypeError):
        return "its seal is damaged"
    if not hmac.compare_digest(str(signature), _signature(files)):
        return "its seal was not made with this user's key"
    now = _listing(folder)
    if now != files:
        changed = sorted(set(now) ^ set(files) | {k for k in now if k in files and now[k] != files[k]})
        return f"its files changed since it was written ({', '.join(changed[:3])})"
    return None
