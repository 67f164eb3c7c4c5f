"""One error path: every bad input ends in one line naming it, exit 2 (usage, config, missing path) or 1
(failure), never a traceback; ``--debug`` shows the traceback instead. Run in process: seconds."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import pytest
import torch

from base import atomic
from clampdpo.main import main


class _Evil:
    def __reduce__(self):  # noqa: ANN204 - a pickle that would run code if it were ever unpickled
        return (os.system, ("touch PWNED",))


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("campaign: {rounds: [1\n")
    (tmp_path / "latin.yaml").write_bytes(b"campaign:\n  rounds: \xff\xfe\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "garbage.pth").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({"model": _Evil()}, tmp_path / "evil.pth")
    torch.save({"model": {"x": torch.zeros(2)}}, tmp_path / "unknown.pth")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "campaign.json").write_bytes(b"{\x00 not json")
    (tmp_path / "configless").mkdir()
    (tmp_path / "configless" / "campaign.json").write_text('{"config_name": "default"}')
    return tmp_path


CASES = [  # (argv, exit code, words the one line must contain)
    (["config", "show", "-c", "bad.yaml"], 2, "bad.yaml: not valid YAML"),
    (["config", "show", "-c", "latin.yaml"], 2, "latin.yaml: not UTF-8"),
    (["config", "show", "-c", "list.yaml"], 2, "list.yaml: the top level must be a mapping"),
    (["config", "show", "-c", "nowhere.yaml"], 2, "nowhere.yaml"),
    (["config", "show", "--set", "campaign.rounds=1e23"], 2, "campaign.rounds"),
    (["config", "show", "--set", "campaign.rounds=100000000000"], 2, "campaign.rounds"),
    (["config", "show", "--set", "campaign.rounds=5000"], 2, "campaign.rounds"),
    (["config", "show", "--set", "dpo.beta=.inf"], 2, "dpo.beta: expected a finite number"),
    (["config", "show", "--set", "dpo.beta=.nan"], 2, "dpo.beta: expected a finite number"),
    (["config", "show", "--set", "campaign.samples_per_prompt=10000000"], 2, "campaign.samples_per_prompt"),
    (["campaign", "status", "missing"], 2, "missing: not a campaign folder"),
    (["campaign", "status", "afile"], 2, "afile"),
    (["campaign", "resume", "missing"], 2, "missing: not a campaign folder"),
    (["campaign", "status", "garbled"], 1, "garbled/campaign.json: damaged"),
    (["campaign", "resume", "garbled"], 1, "garbled/campaign.json: damaged"),
    (["campaign", "status", "configless"], 1, "configless/campaign.json: holds no campaign config"),
    (["campaign", "compare", "missing", "missing2"], 2, "missing"),
    (["report", "missing"], 2, "missing"),
    (["ui", "missing", "--workers", "0"], 2, "--workers 0: the server needs at least one"),
    (["data", "verify", "missing"], 2, "missing"),
    (["model", "sample", "missing"], 2, "give --prompt"),
    (["model", "sample", "missing", "--prompt", "a_b"], 2, "--prompt 'a_b'"),
    (["evaluator", "import", "garbage.pth", "out"], 1, "garbage.pth: not a checkpoint of plain tensors"),
    (["evaluator", "import", "evil.pth", "out"], 1, "evil.pth: not a checkpoint of plain tensors"),
    (["evaluator", "import", "empty.pth", "out"], 1, "empty.pth: cannot be read"),
    (["evaluator", "import", "unknown.pth", "out"], 1, "not a CLaMP 2, CLaMP 3 or M3 checkpoint"),
    (["evaluator", "import", "missing.pth", "out"], 1, "missing.pth: no such file"),
]


@pytest.mark.parametrize("argv,code,words", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_ends_in_one_line_and_the_right_code(files, caplog, capsys, argv, code, words):
    caplog.set_level(logging.ERROR)
    assert main(argv) == code
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0] and words in errors[0], errors
    assert "Traceback" not in capsys.readouterr().err
    assert not (files / "PWNED").exists()  # nothing in a checkpoint ever runs


def test_debug_shows_the_traceback_instead(files):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "campaign", "status", "missing"])


def test_json_for_people_and_parsers_is_strict():
    text = atomic.dumps_strict({"mean": math.nan, "rows": [1.0, math.inf, {"x": -math.inf}], "n": 3})
    assert json.loads(text) == {"mean": None, "rows": [1.0, None, {"x": None}], "n": 3}
    assert "NaN" not in text and "Infinity" not in text


def test_a_failure_inside_a_ray_worker_is_named_as_such_never_bad_input():
    # Ray re-raises a worker's ValueError as a RayTaskError that is also a ValueError: it was not the user's input
    from ray.exceptions import RayTaskError

    from clampdpo.main import classify

    err = RayTaskError(
        "DPOWorker.train_round", "Traceback ...", ValueError("pyarrow: file changed")
    ).as_instanceof_cause()
    assert isinstance(err, ValueError)
    assert classify(err) == (1, "failed in a Ray worker")
    assert classify(ValueError("x")) == (1, "bad input")
