"""The real ``clampdpo`` command line: its ``main`` in this process, as the installed command calls it (a
subprocess a command would spend seconds importing torch and music21 again), and the installed command itself
where that is what is checked."""

import argparse
import contextlib
import io
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clampdpo.main import build_parser, main

pytestmark = pytest.mark.e2e  # starts Ray, DeepSpeed or the CLI: `pytest -m 'not e2e'` leaves it out


@contextlib.contextmanager
def _log_to(stream: io.StringIO) -> Iterator[None]:
    """The log lines a command writes, on ``stream`` as on its stderr (pytest holds the root logger's handlers,
    so the command's own logging set-up leaves them be)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def clampdpo(*args: str) -> subprocess.CompletedProcess:
    """``clampdpo ARGS`` in this process: its exit code, its stdout and its stderr with the log lines."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _log_to(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 2
    return subprocess.CompletedProcess(["clampdpo", *args], code, out.getvalue(), err.getvalue())


def _levels(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every command path of the parser tree with its parser: (), ("data",), ("data", "build"), ..."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _levels(sub, (*path, name))


LEVELS = list(_levels(build_parser()))


@pytest.mark.parametrize("path,parser", LEVELS, ids=[" ".join(p) or "clampdpo" for p, _ in LEVELS])
def test_every_level_explains_itself(path, parser, capsys):
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(('clampdpo', *path))}")
    assert parser.description and " ".join(parser.description.split()[:4]) in " ".join(out.split())
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):  # a group lists each command with its help
            helps = {a.dest: a.help for a in action._choices_actions}
            assert set(helps) == set(action.choices) and all(helps.values()), helps
            assert all(name in out for name in action.choices)
        elif not isinstance(action, argparse._HelpAction):  # every option and argument says what it is
            assert action.help, f"{' '.join(path)} {action.dest}: no help"


def test_the_installed_command_runs():
    exe = shutil.which("clampdpo") or None
    cmd = [exe] if exe else [sys.executable, "-m", "clampdpo"]
    res = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and res.stdout.startswith("usage: clampdpo") and "campaign" in res.stdout


def test_data_build_and_verify_end_to_end(tmp_path: Path, score_dir: Path):
    out = tmp_path / "corpus"
    res = clampdpo(
        "data",
        "build",
        "--source",
        str(score_dir),
        "--out",
        str(out),
        "--workers",
        "2",
        "--augment-keys",
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    assert "pieces: 4" in res.stdout and "pieces per prompt:" in res.stdout
    assert "Baroque_Bach, Johann Sebastian_Strings" in res.stdout
    assert len(list((out / "train").glob("*.abc"))) > 4
    res = clampdpo("data", "verify", str(out), "--sample", "10")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4/4 = 100.0%" in res.stdout
    res = clampdpo("data", "stats", str(out))
    assert res.returncode == 0 and "pieces: 4" in res.stdout
    res = clampdpo("model", "patches", str(out / "train" / "scores.duet.abc"), "--show")
    assert res.returncode == 0, res.stderr
    assert "scores.duet.abc: " in res.stdout and "fits" in res.stdout and "[r:0/3][V:1]c2 d" in res.stdout
    # a rebuild converts nothing and says so
    res = clampdpo("data", "build", "--source", str(score_dir), "--out", str(out), "--augment-keys", "--no-progress")
    assert "converted now: 0   transposed now: 0" in res.stdout


def test_music21_default_source_small_sample(tmp_path: Path):
    out = tmp_path / "m21"
    res = clampdpo(
        "data",
        "build",
        "-c",
        "tiny",
        "--set",
        "data.collection_limits={bach: 4, haydn: 1, monteverdi: 2, trecento: 2, oneills1850: 4}",
        "--out",
        str(out),
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {m["source"] for m in manifest} <= {
        "music21:bach",
        "music21:haydn",
        "music21:monteverdi",
        "music21:trecento",
        "music21:oneills1850",
    }
    assert {"Bach, Johann Sebastian", "Traditional, Irish"} <= {m["composer"] for m in manifest}


def test_model_patches_counts_the_whole_piece(tmp_path: Path):
    piece = tmp_path / "long.abc"
    # each line "[r:i/n][V:1]cX|\n" is 17-18 chars = 2 patches: bos + 2 metadata + 100 + eos = 104,
    # whatever the streaming cut would keep
    piece.write_text("%Folk\nK:C\n" + "".join(f"[V:1]c{i % 9}|\n" for i in range(50)))
    for length, verdict in (("104", "fits"), ("103", "longer: training sees a streamed cut")):
        res = clampdpo("model", "patches", str(piece), "--patch-length", length)
        assert res.returncode == 0, res.stderr
        assert "104 patches of 16" in res.stdout and verdict in res.stdout


def test_nothing_produced_exits_non_zero_with_reason(tmp_path: Path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.abc").write_bytes(b"")
    res = clampdpo("data", "build", "--source", str(bad), "--out", str(tmp_path / "o"), "--no-progress")
    assert res.returncode == 1
    assert "no pieces produced" in res.stderr and "empty file" in res.stderr


def test_bad_config_exits_2_naming_the_field(tmp_path: Path):
    res = clampdpo("data", "build", "--set", "data.eval_fraction=7", "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert "data.eval_fraction" in res.stderr


def test_import_then_sample_with_validity_check(tmp_path: Path):
    import torch

    from models.notagen import NotaGenConfig
    from tests.conftest import notagen_layout

    torch.manual_seed(0)
    torch.save({"model": notagen_layout(NotaGenConfig.from_size("tiny")).state_dict()}, tmp_path / "ng.pth")
    res = clampdpo("model", "import-notagen", str(tmp_path / "ng.pth"), str(tmp_path / "m"), "--size", "tiny")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "m" / "model.safetensors").is_file()
    res = clampdpo("model", "import-notagen", str(tmp_path / "ng.pth"), str(tmp_path / "m2"), "--size", "small")
    assert res.returncode == 1 and "shape mismatch" in res.stderr and not (tmp_path / "m2").exists()

    out = tmp_path / "samples"
    res = clampdpo(
        "model",
        "sample",
        str(tmp_path / "m"),
        "--prompt",
        "Baroque_Bach, Johann Sebastian_Choral",
        "-n",
        "3",
        "--seed",
        "10",
        "--out",
        str(out),
        "--check",
        "--set",
        "sampling.max_patches=8",
    )
    assert res.returncode == 0, res.stderr
    assert "3 pieces (0 finished)" in res.stdout and "valid (music21 parses" in res.stdout
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows] == [10, 11, 12]
    assert all(r["patches"] == 8 and r["valid"] is False for r in rows)  # random weights: not music
    assert (out / "original" / "sample_000010.abc").read_text().startswith("%Baroque\n%Bach, Johann Sebastian\n")


def test_evaluator_train_score_and_features(tmp_path: Path):
    from tests.conftest import two_style_corpus

    two_style_corpus(tmp_path / "corpus", n=10)
    res = clampdpo(
        "evaluator",
        "train",
        "-c",
        "tiny",
        "--corpus",
        str(tmp_path / "corpus"),
        "--out",
        str(tmp_path / "ev"),
        "--set",
        "evaluator.pretrain_steps=5",
        "--set",
        "evaluator.contrastive_steps=5",
        "--set",
        "evaluator.batch_size=4",
        "--set",
        "evaluator.train_patches=16",
        "--set",
        "evaluator.min_prompt_pieces=2",
    )
    assert res.returncode == 0, res.stderr
    assert "composer by nearest centroid" in res.stdout and "real pieces" in res.stdout
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["train/pretrain_steps"] == 5

    res = clampdpo(
        "evaluator",
        "score",
        str(tmp_path / "corpus" / "interleaved"),
        "--prompt",
        "Folk_Traditional, Irish_Solo melody",
        "--evaluator",
        str(tmp_path / "ev"),
    )
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 20 and all(-1 <= r["clamp_score"] <= 1 for r in rows)
    jigs = [r["clamp_score"] for r in rows if Path(r["path"]).name.startswith("j")]
    chorales = [r["clamp_score"] for r in rows if Path(r["path"]).name.startswith("c")]
    assert len(jigs) == len(chorales) == 10
    assert min(jigs) > max(chorales)  # the Irish prompt's centroid is made of jigs
    summary = json.loads(res.stderr.strip().splitlines()[-1])
    assert summary["plagiarism"] == 0.5  # the jigs are this prompt's ground truth; the chorales are not

    res = clampdpo(
        "evaluator",
        "score",
        str(tmp_path / "corpus" / "interleaved"),
        "--prompt",
        "Nope_X_Y",
        "--evaluator",
        str(tmp_path / "ev"),
    )
    assert res.returncode == 2 and "no ground truth" in res.stderr
    res = clampdpo(
        "evaluator",
        "features",
        str(tmp_path / "corpus" / "interleaved"),
        "--evaluator",
        str(tmp_path / "ev"),
        "--out",
        str(tmp_path / "f.npz"),
    )
    assert res.returncode == 0, res.stderr
    import numpy as np

    with np.load(tmp_path / "f.npz") as z:
        assert z["features"].shape == (20, 128)


def test_commands_that_only_read_files_import_no_torch_or_ray(tmp_path: Path):
    # what makes `--help` and `campaign status` answer at once (bench/cli.py times them)
    from base.typed_config import to_dict
    from orchestration.config import load_config
    from pipelines.campaign import identity
    from pipelines.campaign.state import Markers

    identity.write_state(tmp_path, identity.new_state(to_dict(load_config("default")), "default"))
    Markers(tmp_path).mark("corpus", {"seconds": 1.5})
    probe = (
        "import sys\n"
        "from clampdpo.main import main\n"
        f"assert main(['campaign', 'status', {str(tmp_path)!r}]) == 0\n"
        "heavy = sorted(m for m in ('torch', 'ray', 'transformers', 'mlflow', 'music21', 'deepspeed') "
        "if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "1/26 stages done" in res.stdout and "corpus" in res.stdout  # 6 set-up + round 0 (2) + 3 × 6
    assert "HEAVY []" in res.stdout


def test_import_clamp2_index_it_on_a_corpus_and_score(tmp_path: Path):
    import torch

    from tests.conftest import clamp_layout, two_style_corpus

    two_style_corpus(tmp_path / "corpus", n=6)
    torch.save({"model": clamp_layout("music", ()).state_dict(), "epoch": 3}, tmp_path / "weights_clamp2.pth")
    res = clampdpo("evaluator", "import", str(tmp_path / "weights_clamp2.pth"), str(tmp_path / "c2"))
    assert res.returncode == 0, res.stderr
    assert "imported CLaMP 2 (2 layers, hidden 64, epoch 3, preprocessing clamp2)" in res.stdout
    res = clampdpo(
        "evaluator",
        "index",
        str(tmp_path / "c2"),
        "--corpus",
        str(tmp_path / "corpus"),
        "-c",
        "tiny",
        "--set",
        "evaluator.min_prompt_pieces=2",
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "c2" / "reference.npz").is_file() and "indexed" in res.stdout
    res = clampdpo(
        "evaluator",
        "score",
        str(tmp_path / "corpus" / "interleaved"),
        "--evaluator",
        str(tmp_path / "c2"),
        "--prompt",
        "Folk_Traditional, Irish_Solo melody",
        "--no-guards",
    )
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 12
    # a NotaGen checkpoint given to the evaluator importer: one line that says what it is, exit 1
    torch.save({"model": {"patch_level_decoder.patch_embedding.weight": torch.zeros(2, 2)}}, tmp_path / "ng.pth")
    res = clampdpo("evaluator", "import", str(tmp_path / "ng.pth"), str(tmp_path / "x"))
    assert res.returncode == 1 and "model import-notagen" in res.stderr and "Traceback" not in res.stderr
