"""The smoke campaign end to end through the real CLI: tiny everything, two rounds, on a local Ray.

The campaign (conftest's ``smoke``, run once a test run) trains its own policy, evaluator and judge through the
real stack, has its driver killed mid-round and is resumed; these tests check what it left, what the CLI shows
of it, and the samples the kill interrupted. test_cluster_and_kills.py resumes a two-node twin of it to it.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from pipelines.campaign.music_metrics import has_music
from pipelines.campaign.plan import Prompts, round_samples
from tests.conftest import SMOKE_ROUNDS, SMOKE_SAMPLES, planned_samples

pytestmark = pytest.mark.e2e  # starts Ray, DeepSpeed or the CLI: `pytest -m 'not e2e'` leaves it out

CLI = [sys.executable, "-m", "clampdpo"]
REPO = Path(__file__).resolve().parents[2]
ROUNDS = [f"round-{k:02d}" for k in range(SMOKE_ROUNDS + 1)]


def clampdpo(*args: str, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def test_smoke_campaign_runs_every_stage_and_prints_the_round_table(smoke):
    out, stdout = smoke["out"], smoke["stdout"]
    lines = stdout.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith(("training prompts:", "held-out prompts:"))]
    assert len(starts) == 2  # one block per group of prompts
    for start in starts:
        assert "CLaMP [95% CI]" in lines[start + 1] and "judge [95% CI]" in lines[start + 1]
        assert lines[start + 2].split()[0] == "real"  # the group's real held-out pieces on top
        assert [lines[start + 3 + k].split()[0] for k in range(SMOKE_ROUNDS + 1)] == ["0", "1", "2"]
    assert f"training prompts, round 0 → {SMOKE_ROUNDS}: CLaMP" in stdout and "of the gap closed" in stdout
    markers = {p.stem for p in (out / "markers").glob("*.json")}
    set_up = {"corpus", "policy", "evaluator", "judge", "prompts", "real", "round-00.eval", "round-00.report"}
    steps = ["sample", "score", "pairs", "dpo", "eval", "report"]
    assert markers == set_up | {f"{r}.{step}" for r in ROUNDS[1:] for step in steps}
    pairs = (out / "round-01" / "pairs.jsonl").read_text().splitlines()
    head = json.loads(pairs[0])
    assert head["format"] == "clampdpo.pairs" and head["candidates"] == 16 and len(pairs) - 1 == head["pairs"] > 0
    pair = json.loads(pairs[1])
    assert pair["chosen_score"] > pair["rejected_score"] and pair["prompt_text"].startswith("%")
    dpo = json.loads((out / "markers" / "round-01.dpo.json").read_text())
    assert dpo["steps"] >= 1 and "rewards/margins" in dpo and dpo["world_size"] == 1
    assert (out / "round-01" / "dpo" / "policy" / "model.safetensors").is_file()
    metrics = json.loads((out / "round-01" / "metrics.json").read_text())["metrics"]
    for group in ("train", "heldout"):
        assert {
            f"{group}/{k}"
            for k in (
                "clamp/mean",
                "clamp/ci_low",
                "clamp_gain/mean",
                "judge/mean",
                "judge_gain/ci_high",
                "auc_real_vs_samples",
                "above_real",
                "validity",
                "meter_fill",
                "music21_reads",
                "diversity",
                "real/clamp",
                "real/diversity",
                "js/interval",
                "frechet",
            )
        } <= set(metrics)
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "pairs/count"} <= set(
        metrics
    )
    # the held-out prompt and the two training prompts × eval_samples_per_prompt, the real pieces of all three
    assert metrics["heldout/samples"] == 4 and metrics["train/samples"] == 8
    assert metrics["heldout/real/pieces"] == 3 and metrics["train/real/pieces"] == 6
    # the music statistics of every corpus piece, and the round measured against them (no network)
    corpus_music = [json.loads(line) for line in (out / "real" / "corpus" / "music.jsonl").read_text().splitlines()]
    assert {r["split"] for r in corpus_music} == {"train", "eval"} and any(r["music"] for r in corpus_music)
    for group in ("train", "heldout"):
        assert {
            f"{group}/{k}"
            for k in ("music/similarity/mean", "music_gain/ci_low", "fidelity/mean", "real/fidelity", "two_sample_auc")
        } <= set(metrics)
    assert 0 <= metrics["train/real/music/similarity"] <= 1
    for r in ROUNDS:  # every prompt, every round; its fidelity wherever one of its samples has notes
        per_prompt = json.loads((out / r / "metrics.json").read_text())["per_prompt_music"]
        scored = [json.loads(x) for x in (out / r / "eval" / "scores" / "scores.jsonl").read_text().splitlines()]
        with_notes = {row["prompt"] for row in scored if has_music(row)}
        assert len(per_prompt) == 3 and {p for p, v in per_prompt.items() if "fidelity/mean" in v} == with_notes
    assert with_notes  # the last round has some
    # the pairs were checked against the real music before DPO, and the verdict says what the numbers say
    pairs_marker = json.loads((out / "markers" / "round-01.pairs.json").read_text())
    assert "pairs/direction" in pairs_marker and set(pairs_marker["pair_checks"]) <= set(per_prompt)
    assert "  verdict: " in stdout


def test_driver_killed_mid_round_resumes_to_the_planned_samples(smoke):
    out = smoke["out"]
    specs = round_samples(Prompts.from_dict(json.loads((out / "prompts.json").read_text())).train, 1, SMOKE_SAMPLES, 0)
    assert 1 <= smoke["units_when_killed"] < len(specs) // 2 and not smoke["sampled_when_killed"]
    rows = [json.loads(x) for x in (out / "round-01" / "samples" / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [s.id for s in specs]  # every sample once, in plan order
    policy = json.loads((out / "markers" / "policy.json").read_text())["policy"]
    assert [r["text"] for r in rows] == planned_samples(policy, specs)  # as generated in one process, here
    # the resumed driver ran the rest, its trainer group standing from round 1 to the last
    dpos = [json.loads((out / "markers" / f"{r}.dpo.json").read_text()) for r in ROUNDS[1:]]
    assert dpos[0]["trainer/start_seconds"] > 0 and all(d["trainer/start_seconds"] == 0 for d in dpos[1:])
    # the resume trained nothing again: the set-up stages and round 0 were done when the driver died
    for stage in ("policy", "evaluator", "judge", "real", "round-00/eval"):
        assert f"stage {stage}: done already" in smoke["stderr"]
    assert "stage round-01/sample ..." in smoke["stderr"]


def test_smoke_campaign_mlflow_parent_child_runs_artifacts_and_registry(smoke):
    out = smoke["out"]
    client = mlflow.tracking.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    state = json.loads((out / "campaign.json").read_text())
    parent = client.get_run(state["parent_run_id"])
    assert parent.data.tags["clampdpo.stage"] == "campaign" and parent.info.status == "FINISHED"
    assert parent.data.params["dpo.loss_type"] == "dpop" and parent.data.params["dpo.beta"] == "0.1"
    every_round = list(range(SMOKE_ROUNDS + 1))
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "train/clamp/mean")] == every_round
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "heldout/judge/ci_low")] == every_round
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_stage: dict[str, list] = {}
    for run in children:
        by_stage.setdefault(run.data.tags["clampdpo.stage"], []).append(run)
    assert sorted(r.info.run_name for r in by_stage["round"]) == ROUNDS
    assert len(by_stage["sft"]) == 1 and len(by_stage["evaluator"]) == 2  # the evaluator and the judge
    round1 = next(r for r in by_stage["round"] if r.info.run_name == "round-01")
    assert len(client.get_metric_history(round1.info.run_id, "rewards/margins")) >= 1  # per training step
    names = {a.path for a in client.list_artifacts(round1.info.run_id)}
    assert {"metrics.json", "artifacts", "pairs", "policy"} <= names
    art = {a.path for a in client.list_artifacts(round1.info.run_id, "artifacts")}
    assert "artifacts/clamp_scores.png" in art and "artifacts/heldout" in art and "artifacts/candidates" in art
    heldout = [a.path for a in client.list_artifacts(round1.info.run_id, "artifacts/heldout")]
    assert any(".best." in p and p.endswith(".abc") for p in heldout)
    assert any(".worst." in p and p.endswith(".abc") for p in heldout)
    assert any(p.endswith(".mid") for p in heldout)  # valid pieces are rendered to MIDI
    versions = client.search_model_versions("name = 'clampdpo-policy'")
    assert sorted(v.tags["round"] for v in versions) == [str(k) for k in every_round]
    model = client.get_registered_model("clampdpo-policy")
    assert {"best", *ROUNDS} <= set(model.aliases)


def test_status_compare_and_rerun_of_a_finished_campaign(smoke, tmp_path):
    out = smoke["out"]
    status = clampdpo("campaign", "status", str(out))
    stages = 8 + 6 * SMOKE_ROUNDS  # set-up and round 0, then six a round
    assert status.returncode == 0 and f"{stages}/{stages} stages done" in status.stdout
    assert "CLaMP [95% CI]" in status.stdout
    png = tmp_path / "cmp.png"
    cmp_ = clampdpo("campaign", "compare", str(out), str(out), "--plot", str(png))
    assert cmp_.returncode == 0 and f"training prompts, round 0 → {SMOKE_ROUNDS}" in cmp_.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = clampdpo("campaign", "resume", str(out))  # nothing left to do: no stage runs twice
    assert again.returncode == 0, again.stderr[-3000:]
    assert "stage round-01/dpo ..." not in again.stderr and "done already" in again.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_pids(port: int) -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "mlflow" in " ".join(cmd) and str(port) in cmd:
            pids.append(proc.pid)
    return pids


def test_ui_opens_on_the_campaign_runs_and_sigterm_stops_the_whole_server(smoke, tmp_path):
    import urllib.request

    import psutil

    from tests.conftest import CHROMIUM, open_page

    port = _free_port()
    proc = subprocess.Popen(
        CLI + ["ui", str(smoke["out"]), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10"
        deadline, body = time.time() + 300, None  # MLflow's server starts slowly on a busy machine
        while time.time() < deadline and body is None:
            try:
                body = json.loads(urllib.request.urlopen(url, timeout=5).read())
            except OSError:
                assert proc.poll() is None, "the UI server exited"
                time.sleep(1)
        assert body
        [experiment] = [e for e in body["experiments"] if e["name"] == "clampdpo"]
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        assert tags["mlflow.experimentKind"] == "custom_model_development"  # the model-training view, not GenAI
        servers = _server_pids(port)
        group = {p for pid in servers for p in [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]}
        assert servers and len(group) >= 2  # the server and its workers
        if CHROMIUM:  # the runs page the command names, in the model-training view: the campaign's parent run
            url = f"http://127.0.0.1:{port}/#/experiments/{experiment['experiment_id']}/runs?workflowType=machine_learning"
            page = open_page(url, tmp_path / "ui.png", wait_ms=20000)
            # the parent run, its children (sft, evaluator, judge, one per round) nested under it
            runs = 4 + SMOKE_ROUNDS + 1
            assert "campaign-smoke" in page.dom and re.search(rf"<strong>{runs}</strong> matching runs", page.dom)
    finally:
        proc.send_signal(signal.SIGTERM)  # to the command only, as a job manager sends it
        proc.wait(timeout=60)
    time.sleep(1)
    assert not [p for p in group if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
    assert f"#/experiments/{experiment['experiment_id']}/runs?workflowType=machine_learning" in (
        proc.stderr.read() if proc.stderr else ""
    )


def test_report_shows_and_plays_the_campaign_offline_in_a_real_browser(smoke, tmp_path):
    from tests.conftest import CHROMIUM, WHY_SKIPPED, open_page

    out = smoke["out"]
    assert (out / "report.html").is_file()  # the campaign writes it after every round
    other = tmp_path / "report.html"
    res = clampdpo("report", str(out), str(out), "--out", str(other))  # two campaigns: curves overlaid
    assert res.returncode == 0 and "report written to" in res.stdout, res.stderr[-2000:]
    text = (out / "report.html").read_text()
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text  # nothing fetched
    assert "<th>DPO accuracy</th>" in text and "<th>FMD held-out</th>" in text
    if not CHROMIUM:
        pytest.skip(WHY_SKIPPED)
    page = open_page(out / "report.html", tmp_path / "report.png")
    assert not [ln for ln in page.console if "rror" in ln or "Uncaught" in ln], page.console
    pieces = page.dom.count('class="piece"')
    # 3 prompts × best / median / worst × every round, and 2 chosen / rejected pairs a trained round
    assert pieces == 3 * 3 * (SMOKE_ROUNDS + 1) + SMOKE_ROUNDS * 2 * 2
    scores = [s[: s.find("</svg>")] for s in page.dom.split('class="score"')[1:]]
    engraved = len(scores)
    placeholders = page.dom.count('class="placeholder"')
    assert engraved + placeholders >= pieces and all('class="note"' in s for s in scores)  # notes in every one
    durations = [float(d) for d in re.findall(r'data-duration="([0-9.]+)"', page.dom)]
    assert len(durations) == page.dom.count("<audio") == engraved and all(d > 0 for d in durations)
    assert page.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _sound_and_downloads(text)


def _sound_and_downloads(page: str) -> None:
    """Every player's sound decodes to a sane loudness (ITU-R BS.1770, pyloudnorm), rendered with the SoundFont
    where one is installed; every download link gives a file music21 reads back."""
    import base64
    import io

    import music21
    import pyloudnorm
    import soundfile

    from pipelines.campaign.sound import soundfont

    sounds = re.findall(r'<audio[^>]*src="data:(audio/[a-z]+);base64,([^"]+)"', page)
    assert sounds and {mime for mime, _ in sounds} == ({"audio/ogg"} if soundfont() else {"audio/wav"})
    for _, data in sounds:
        audio, rate = soundfile.read(io.BytesIO(base64.b64decode(data)))
        assert rate >= (22050 if soundfont() else 8000) and len(audio) / rate > 0.5
        if soundfont():
            assert audio.ndim == 2 and audio.shape[1] == 2  # stereo
            loudness = pyloudnorm.Meter(rate).integrated_loudness(audio)
            assert -45 < loudness < -5, loudness  # neither silent nor clipping
    assert ("sound: SoundFont" in page) == bool(soundfont())
    links = re.findall(r'<a download="([^"]+)" href="data:[^;]+;base64,([^"]+)"', page)
    kinds = {name.rsplit(".", 1)[1] for name, _ in links}
    assert kinds == {"abc", "musicxml", "mid"}
    for name, data in links:
        raw = base64.b64decode(data)
        if name.endswith(".abc"):  # standard ABC, read as notation programs read it (abc2xml, then music21)
            from base.abc.convert import abc_to_musicxml

            xml = abc_to_musicxml(raw.decode())
            assert music21.converter.parseData(xml, format="musicxml").parts  # a listed piece may hold only rests
        else:
            assert music21.converter.parseData(raw, format="midi" if name.endswith(".mid") else "musicxml").parts
