"""The report of a campaign whose policy writes nothing readable (a freshly imported checkpoint of random weights):
the page is built, shows what the samples say and why each failed, and the summary says so in words."""

from __future__ import annotations

import json
import math

from base import atomic
from pipelines.campaign import identity
from pipelines.campaign.layout import SAMPLES_FILE, SCORES_FILE, Layout
from pipelines.campaign.metrics import summary
from pipelines.campaign.report import build_report

PROMPT = "Folk_Traditional, Irish_Solo melody"


def _garbage_round(lay: Layout, k: int) -> None:
    samples = [
        {"id": f"r{k}-{i}", "prompt": PROMPT, "seed": i, "text": f"%Folk\nX:{i} ]]]{'q' * i}", "interleaved": ""}
        for i in range(4)
    ]
    scores = [
        {
            "id": s["id"],
            "prompt": PROMPT,
            "seed": s["seed"],
            "clamp_score": math.nan,
            "judge_score": math.nan,
            "valid": False,
            "invalid_reason": f"empty piece {i}",
            "meter_bars": 0,
            "meter_full": 0,
        }
        for i, s in enumerate(samples)
    ]
    atomic.write_jsonl(lay.eval_samples(k) / SAMPLES_FILE, samples)
    atomic.write_jsonl(lay.eval_scores(k) / SCORES_FILE, scores)
    metrics = {"round": k, "train/clamp/mean": math.nan, "train/validity": 0.0, "train/samples": 4.0}
    atomic.write_json(lay.metrics(k), {"metrics": metrics, "per_prompt": {}, "per_prompt_music": {}})


def test_the_report_of_a_campaign_without_one_valid_sample_shows_each_samples_text_and_reason(tmp_path):
    root = tmp_path / "c"
    lay = Layout(root)
    identity.write_state(root, identity.new_state({"campaign": {"rounds": 1}}, "default"))
    atomic.write_jsonl(lay.real / SCORES_FILE, [{"id": "real", "prompt": PROMPT, "clamp_score": 0.5}])
    for k in (0, 1):
        _garbage_round(lay, k)
    page = build_report([root]).read_text()
    assert page.count('class="piece unscored"') == 2 * 3  # the first three samples of the prompt, each round
    assert "empty piece 0" in page and "X:2 ]]]qq" in page and "no valid sample (4 sampled)" in page
    assert "no valid samples in the last round" in page and "nan" not in page.split("<h3>round table")[0]
    rows = [json.loads(lay.metrics(k).read_text())["metrics"] for k in (0, 1)]
    assert "nan" not in summary(rows)
