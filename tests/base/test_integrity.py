"""Sealed checkpoint folders: what we wrote verifies; a file planted, changed or removed, a forged or missing
seal, and a seal made with another key do not (so DeepSpeed never unpickles them)."""

from __future__ import annotations

import logging

import pytest

from base.integrity import KEY_ENV, SEAL_FILE, broken_seal, seal
from orchestration.deepspeed_setup import trusted_checkpoint


@pytest.fixture(autouse=True)
def own_key(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def _checkpoint(root):
    tag = root / "step10"
    tag.mkdir(parents=True)
    (tag / "mp_rank_00_model_states.pt").write_bytes(b"weights" * 100)
    (tag / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"adam" * 100)
    (root / "latest").write_text("step10")
    return tag


def test_a_sealed_folder_verifies_and_every_tampering_is_found(tmp_path, monkeypatch):
    tag = _checkpoint(tmp_path / "ckpt")
    assert "no seal" in broken_seal(tag)
    seal(tag)
    key = tmp_path / "config" / "clampdpo" / "seal.key"
    assert key.stat().st_mode & 0o077 == 0 and broken_seal(tag) is None
    (tag / "evil.pt").write_bytes(b"planted")
    assert "evil.pt" in broken_seal(tag)
    (tag / "evil.pt").unlink()
    (tag / "mp_rank_00_model_states.pt").write_bytes(b"weightz" * 100)
    assert "mp_rank_00_model_states.pt" in broken_seal(tag)
    seal(tag)
    (tag / SEAL_FILE).write_text((tag / SEAL_FILE).read_text().replace('"signature": "', '"signature": "0'))
    assert "not made with this user's key" in broken_seal(tag)
    seal(tag)
    monkeypatch.setenv(KEY_ENV, "another secret")  # a seal made elsewhere does not verify here
    assert "not made with this user's key" in broken_seal(tag)
    (tag / SEAL_FILE).write_text("{")
    assert "damaged" in broken_seal(tag)


def test_resume_loads_only_a_checkpoint_whose_seal_holds(tmp_path, caplog):
    ckpt = tmp_path / "ckpt"
    tag = _checkpoint(ckpt)
    caplog.set_level(logging.WARNING)
    assert trusted_checkpoint(ckpt) is None and "no seal" in caplog.text  # unsealed: never unpickled
    seal(tag)
    assert trusted_checkpoint(ckpt) == "step10"
    (tag / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"code that runs on unpickling")
    assert trusted_checkpoint(ckpt) is None
    (ckpt / "latest").write_text("../../elsewhere")
    assert trusted_checkpoint(ckpt) is None and "names no checkpoint folder" in caplog.text
    (ckpt / "latest").unlink()
    assert trusted_checkpoint(ckpt) is None
