"""The campaign driver in this process, over a runtime without Ray: whole multi-round campaigns in seconds,
resume after every stage, damage and invalidation at every stage, and round 100.

``InProcessRuntime`` stands in for the Ray runtime only (``orchestration.runtime.RayRuntime``, proven with
Ray, DeepSpeed and TRL by test_campaign.py and test_cluster_and_kills.py).
Everything else is the real code: the driver, the stage bodies, the markers, the metrics, MLflow (a sqlite
store) and the real evaluator, which scores in this process. Its samples are the corpus's held-out pieces
(the training pieces would be caught as copies), drawn by seed and policy version and some cut short, so a
run is deterministic and rounds differ; its DPO copies the start policy and reports numbers from the pairs.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from base import atomic
from base.corpus import split_rows
from orchestration.campaign import Campaign
from orchestration.config import load_config
from orchestration.work_units import run_units
from pipelines.campaign.layout import Layout
from pipelines.campaign.stages import all_stages, status
from tests.conftest import campaign_config

ROUNDS = 2
# the scorer's records of each text, kept across campaigns of this module (the evaluator is deterministic)
_SCORED: dict[tuple[str, str, bool], dict] = {}


class _Pool:
    """Runs a work unit's method in this process (what an ``ActorPool`` does across actors)."""

    def __init__(self, method: Any):
        self.method = method

    def run(self, todo: list[tuple[str, Any]], kind: str, done: Any) -> Any:
        for name, payload in todo:
            done(name, self.method(payload))
        return type("Stats", (), {"busy_seconds": [], "seconds": 0.0, "retried": 0, "actor_failures": 0})()


class InProcessRuntime:
    calls: Counter = Counter()  # every call of every runtime of the test, by kind (tests read and reset it)

    def __init__(self, project: Any):
        self.project, self.cfg = project, project.campaign
        corpus = Path(project.data.out_dir)
        self.pieces: dict[str, list[str]] = {}
        for r in split_rows(corpus, "eval"):
            text = (corpus / "interleaved" / f"{r['id']}.abc").read_text(encoding="utf-8")
            self.pieces.setdefault(r["prompt"], []).append(text)
        self._scorer: Any = None

    def train_policy(self, config_name: str) -> Any:
        raise AssertionError("these campaigns start from a given policy")

    def _sample(self, spec: dict, version: int) -> dict:
        texts = self.pieces[spec["prompt"]]
        text = texts[(spec["seed"] * 7919 + version * 104729) % len(texts)]
        finished = (spec["seed"] + version) % 4 != 0
        if not finished:  # cut short after its header and a few lines, as a sampler stopped by max_patches
            text = "\n".join(text.splitlines()[:8]) + "\n"
        return {
            "id": spec["id"],
            "prompt": spec["prompt"],
            "seed": spec["seed"],
            "text": "".join(spec["lines"]) + text,  # a sampler's text goes on from its prompt lines
            "interleaved": text,
            "error": None,
            "finished": finished,
            "patches": len(text) // 16 + 1,
            "chars": len(text),
            "stream_cuts": 0,
            "policy_version": version,
        }

    def generate(self, folder: Path, specs: list[dict], policy: Any, alongside: Any) -> Any:
        self.calls["generate"] += 1
        assert Path(policy.path).is_dir(), f"policy {policy.version} is not on disk"
        sample = _Pool(lambda unit: [self._sample(s, policy.version) for s in unit])
        return run_units(folder, specs, self.cfg.unit_size, "generate", lambda: sample)

    def _score_unit(self, unit: dict) -> list[dict]:
        out = []
        for row in unit["rows"]:
            key = (row["prompt"], row["interleaved"], unit["check_music21_reads"])
            if key not in _SCORED:
                if self._scorer is None:  # loaded only for a text not scored before (seconds a campaign)
                    from orchestration.actors import Resources, ScorerActor, ScorerSpec

                    spec = ScorerSpec(self._scorers.evaluator_dir, self.project.evaluator)
                    self._scorer = ScorerActor(spec, Resources(1))
                _SCORED[key] = self._scorer.score({"rows": [row], "check_music21_reads": unit["check_music21_reads"]})[
                    0
                ]
            out.append({**_SCORED[key], "id": row["id"], "seed": row["seed"], "finished": row["finished"]})
        return out

    def score(self, rows: list[dict], scoring: Any) -> Any:
        self.calls["score"] += 1
        self._scorers = scoring.scorers
        pool = _Pool(lambda unit: self._score_unit(unit))
        payload = lambda chunk: {"rows": chunk, "check_music21_reads": scoring.check_music21_reads}  # noqa: E731
        return run_units(scoring.folder, rows, self.cfg.unit_size, "score", lambda: pool, payload)

    def describe(self, folder: Path, rows: list[dict], scorers: Any) -> Any:
        self.calls["describe"] += 1
        pool = _Pool(lambda unit: [{k: r[k] for k in ("id", "prompt", "split")} | _music(r) for r in unit])
        return run_units(folder, rows, 64, "describe", lambda: pool)

    def train(self, job: Any) -> dict[str, Any]:
        self.calls["train"] += 1
        pairs = atomic.read_jsonl(Path(job.pairs_file))[1:]
        self.carry_over(job)
        margins = [p["chosen_score"] - p["rejected_score"] for p in pairs]
        return {"steps": len(pairs), "rewards/margins": sum(margins) / len(margins), "world_size": 1}

    def carry_over(self, job: Any) -> None:
        def copy(tmp: Path) -> None:
            shutil.copytree(job.start.path, tmp, dirs_exist_ok=True)

        atomic.write_dir(Path(job.out_dir) / "policy", copy)

    def shutdown(self) -> None:
        self.calls["shutdown"] += 1


_MUSIC: dict[str, dict] = {}


def _music(row: dict) -> dict:
    from evaluators.music_stats import piece_music

    if row["interleaved"] not in _MUSIC:
        _MUSIC[row["interleaved"]] = piece_music(row["interleaved"])
    return _MUSIC[row["interleaved"]]


# ---------------------------------------------------------------------------- campaigns


@pytest.fixture(scope="module")
def parts(tiny_parts, tmp_path_factory):
    """The tiny corpus, policy and evaluator, and an empty MLflow store each campaign starts from (creating
    MLflow's tables takes seconds; a campaign's own store is a copy of it)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tmp = tmp_path_factory.mktemp("driver")
    SqlAlchemyStore(f"sqlite:///{tmp / 'mlflow.db'}", str(tmp / "unused-artifacts"))
    return {**tiny_parts, "tmp": tmp, "store": tmp / "mlflow.db"}


def project(parts: dict, out: Path, rounds: int = ROUNDS, **campaign: object) -> Any:
    cfg = campaign_config(
        parts["tmp"],
        parts["corpus"],
        out,
        rounds=rounds,
        unit_size=2,
        samples_per_prompt=8,
        eval_samples_per_prompt=4,
        use_judge=False,
        policy_from=str(parts["policy"]),
        evaluator_from=str(parts["evaluator"]),
        report_every=0,  # no round writes its pieces and report.html (seconds each; test_campaign.py checks them)
        **campaign,
    )
    return load_config(cfg)


def run(parts: dict, out: Path, rounds: int = ROUNDS, crash_after: str | None = None) -> list[dict]:
    """The campaign in ``out`` run (or resumed) in this process; ``crash_after``: the driver dies right after
    that stage's marker is written."""
    if not (out / "mlflow.db").exists():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(parts["store"], out / "mlflow.db")
    campaign = Campaign(project(parts, out, rounds), "driver-test", runtime=InProcessRuntime)
    if crash_after is not None:
        run_stage = campaign.runner.run

        def crashing(name: str, body: Any) -> dict:
            marker = run_stage(name, body)
            if name == crash_after:
                raise KeyboardInterrupt(f"killed after {name}")
            return marker

        campaign.runner.run = crashing  # type: ignore[method-assign]
    return campaign.run()


def table(out: Path) -> str:
    rows = [json.loads(Layout(out).metrics(k).read_text())["metrics"] for k in Layout(out).evaluated_rounds()]
    return json.dumps(rows, sort_keys=True)  # NaN compares equal as text


def finished(out: Path) -> dict[str, float]:
    """When each stage's marker was written."""
    markers = out / "markers"
    return {f.stem.replace(".", "/"): json.loads(f.read_text())["finished_at"] for f in markers.glob("*.json")}


@pytest.fixture(scope="module")
def whole(parts):
    out = parts["tmp"] / "whole"
    InProcessRuntime.calls.clear()
    start = time.perf_counter()
    rows = run(parts, out)
    seconds = time.perf_counter() - start
    calls = Counter(InProcessRuntime.calls)
    return {"parts": parts, "out": out, "rows": rows, "table": table(out), "calls": calls, "seconds": seconds}


def folder(whole: dict, name: str) -> Path:
    """A campaign folder of its own for each test: MLflow keeps one database engine per store path in this
    process, and a store deleted and made again under the same path would be read through the stale one."""
    return whole["out"].parent / name.replace("/", "-")


def copy(whole: dict, name: str) -> Path:
    dst = folder(whole, name)
    shutil.copytree(whole["out"], dst)
    return dst


def test_a_whole_campaign_runs_every_stage_through_the_driver(whole, parts):
    out = whole["out"]
    assert [r["round"] for r in whole["rows"]] == list(range(ROUNDS + 1))
    assert set(finished(out)) == set(all_stages(ROUNDS))
    assert all(state == "done" for _, state, _ in status(out, ROUNDS))
    # rounds 1 and 2 sampled candidates; every round (0 included) sampled its evaluation
    assert whole["calls"]["generate"] == 2 * ROUNDS + 1 and whole["calls"]["train"] == ROUNDS
    assert whole["calls"]["shutdown"] == 1
    metrics = json.loads(Layout(out).metrics(ROUNDS).read_text())["metrics"]
    assert metrics["pairs/count"] > 0 and "train/clamp/mean" in metrics and "heldout/music/similarity/mean" in metrics
    assert not (out / "report.html").exists() and not Layout(out).artifacts(ROUNDS).exists()  # report_every 0
    state = json.loads((out / "campaign.json").read_text())
    assert sorted(state["registered"]) == [str(k) for k in range(ROUNDS + 1)]
    print(f"whole {ROUNDS}-round campaign in-process: {whole['seconds']:.1f} s")


def test_running_a_finished_campaign_again_runs_nothing(whole):
    out = copy(whole, "again")
    before = finished(out)
    InProcessRuntime.calls.clear()
    run(whole["parts"], out)
    assert finished(out) == before and InProcessRuntime.calls == Counter({"shutdown": 1})


STAGES = all_stages(ROUNDS)


def test_a_driver_killed_after_each_stage_in_turn_resumes_to_the_same_campaign(whole):
    # one campaign killed 19 times: each resume runs exactly the next stage before it is killed again
    out = folder(whole, "killed-each")
    done: dict[str, float] = {}
    for stage in STAGES[:-1]:
        with pytest.raises(KeyboardInterrupt):
            run(whole["parts"], out, crash_after=stage)
        now = finished(out)
        assert set(now) == set(STAGES[: STAGES.index(stage) + 1]), f"killed after {stage}"
        assert {s: now[s] for s in done} == done, f"resumed to {stage}: a stage done before ran again"
        done = now
    run(whole["parts"], out)
    after = finished(out)
    assert {s: after[s] for s in done} == done and set(after) == set(STAGES)
    assert table(out) == whole["table"]


# a kill in each kind of stage, resumed in one go: set-up, sampling, DPO, evaluation, the last round's report
@pytest.mark.parametrize("stage", ["real", "round-01/sample", "round-01/dpo", "round-01/eval", "round-02/eval"])
def test_a_driver_killed_after_a_stage_resumes_to_the_same_campaign_in_one_go(whole, stage):
    out = folder(whole, f"killed-{stage}")
    with pytest.raises(KeyboardInterrupt):
        run(whole["parts"], out, crash_after=stage)
    done = finished(out)
    assert set(done) == set(STAGES[: STAGES.index(stage) + 1])
    run(whole["parts"], out)
    after = finished(out)
    assert {s: after[s] for s in done} == done  # what was done is not done again
    assert set(after) == set(STAGES) and table(out) == whole["table"]


def _damage(out: Path, stage: str) -> None:
    """Change one file the stage wrote and its marker recorded (the last, so a unit file where it has units)."""
    recorded = [
        n
        for n, (size, _) in json.loads((out / "markers" / f"{stage.replace('/', '.')}.json").read_text())[
            "outputs"
        ].items()
        if size
    ]
    target = Path(recorded[-1]) if Path(recorded[-1]).is_absolute() else out / recorded[-1]
    assert target.is_file(), f"{stage} recorded no file of its own"
    target.write_bytes(target.read_bytes()[:-7] + b"damaged")


# the set-up stages that record files of the campaign's own: the others' are the given policy and evaluator
DAMAGEABLE = [s for s in STAGES if s not in ("corpus", "policy", "evaluator", "judge")]


@pytest.mark.parametrize("stage", DAMAGEABLE)
def test_damage_to_any_stage_redoes_it_and_what_it_fed_and_nothing_before(whole, stage):
    out = copy(whole, f"damaged-{stage}")
    before = finished(out)
    if stage.endswith("/report"):  # it wrote no files (report_every 0): its marker is what goes
        (out / "markers" / f"{stage.replace('/', '.')}.json").write_text("{ not json")
    else:
        _damage(out, stage)
    states = {name: state for name, state, _ in status(out, ROUNDS)}
    assert states[stage] == "damaged"
    later = STAGES[STAGES.index(stage) + 1 :]
    leaf = stage.endswith("/report")
    assert all(states[s] == ("done" if leaf else "stale") for s in later), states
    run(whole["parts"], out)
    after = finished(out)
    redone = {s for s in STAGES if after[s] != before[s]}
    assert redone == ({stage} if leaf else {stage, *later})
    assert table(out) == whole["table"]
    assert all(state == "done" for _, state, _ in status(out, ROUNDS))


def _status_text(out: Path, capsys: pytest.CaptureFixture) -> dict[str, str]:
    """``clampdpo campaign status``'s lines, by stage (the real CLI, in this process)."""
    from clampdpo.main import main

    capsys.readouterr()
    assert main(["campaign", "status", str(out)]) == 0
    text = capsys.readouterr().out
    rows = {"_text": text}
    for line in text.splitlines():
        stage, _, rest = line[4:].partition(" ")
        if line[:2] == "  " and stage in STAGES:
            rows[stage] = rest.strip()
    return rows


def test_damage_in_several_stages_at_once_is_reported_and_resume_restores_the_table(whole, capsys):
    out = copy(whole, "several")
    unit = out / "round-01" / "samples" / "units" / "unit-0001.jsonl"
    unit.write_bytes(unit.read_bytes()[:-40])  # cut short, its markers intact
    (out / "round-01" / "pairs.jsonl").unlink()
    (out / "round-01" / "metrics.json").write_text("{ garbage")
    rows = _status_text(out, capsys)
    assert rows["round-01/sample"].startswith("damaged") and "unit-0001.jsonl changed" in rows["round-01/sample"]
    assert rows["round-01/pairs"].startswith("damaged") and "pairs.jsonl is missing" in rows["round-01/pairs"]
    assert rows["round-01/eval"].startswith("damaged") and "metrics.json" in rows["round-01/eval"]
    assert rows["round-01/score"].startswith("stale") and "campaign resume" in rows["_text"]
    assert "unreadable:" in rows["_text"] and rows["round-00/eval"].startswith("done")
    InProcessRuntime.calls.clear()
    run(whole["parts"], out)
    assert table(out) == whole["table"]
    # the cut-short unit is generated again, not the whole stage: one unit of 2 samples
    assert atomic.read_jsonl(unit) == atomic.read_jsonl(whole["out"] / unit.relative_to(out))
    assert all(v.startswith("done") for k, v in _status_text(out, capsys).items() if k != "_text")


def test_a_garbage_or_deleted_marker_redoes_its_stage_and_all_after(whole, capsys):
    out = copy(whole, "markers")
    (out / "markers" / "round-01.score.json").write_text("\x00\x01 not json")
    rows = _status_text(out, capsys)
    assert rows["round-01/score"].startswith("damaged") and "marker" in rows["round-01/score"]
    run(whole["parts"], out)
    assert table(out) == whole["table"]
    before = finished(out)
    (out / "markers" / "round-01.dpo.json").unlink()  # redoing DPO must not keep the old eval as done
    rows = _status_text(out, capsys)
    assert rows["round-01/dpo"].startswith("next") and rows["round-01/eval"].startswith("stale")
    run(whole["parts"], out)
    after = finished(out)
    assert {s for s in STAGES if after.get(s) != before.get(s)} == set(STAGES[STAGES.index("round-01/dpo") :])
    assert table(out) == whole["table"]
