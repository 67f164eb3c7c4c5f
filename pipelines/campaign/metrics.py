"""Round metrics from score records: stable names, read the same in MLflow, metrics.json and compare."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

# The columns of the printed round table: (metric, header, format).
TABLE = [
    ("clamp/mean", "CLaMP mean", "{:.4f}"),
    ("clamp/median", "median", "{:.4f}"),
    ("clamp/std", "std", "{:.4f}"),
    ("judge/mean", "judge", "{:.4f}"),
    ("validity/rate", "valid", "{:.2f}"),
    ("plagiarism/rate", "plagiar.", "{:.2f}"),
    ("diversity/mean_pairwise_cosine", "div.cos", "{:.3f}"),
    ("frechet/mean_per_prompt", "FMD", "{:.4f}"),
    ("rewards/margins", "margin", "{:.3f}"),
    ("rewards/accuracies", "acc", "{:.2f}"),
    ("pairs/count", "pairs", "{:.0f}"),
]


def _stats(values: list[float], prefix: str) -> dict[str, float]:
    v = np.array([x for x in values if not math.isnan(x)], dtype=np.float64)
    if not len(v):
        return {
            f"{prefix}/mean": math.nan,
            f"{prefix}/median": math.nan,
            f"{prefix}/std": math.nan,
            f"{prefix}/scored": 0.0,
        }
    return {
        f"{prefix}/mean": float(v.mean()),
        f"{prefix}/median": float(np.median(v)),
        f"{prefix}/std": float(v.std()),
        f"{prefix}/scored": float(len(v)),
    }


def score_metrics(scores: list[dict], prefix: str = "clamp") -> dict[str, float]:
    """CLaMP and judge statistics and guard rates of a set of scored samples (unscored count as invalid)."""
    n = len(scores)
    out = _stats([s["clamp_score"] for s in scores], prefix)
    if prefix == "clamp":
        out.update(
            {f"judge/{k.split('/')[1]}": v for k, v in _stats([s["judge_score"] for s in scores], "judge").items()}
        )
        out["validity/rate"] = sum(bool(s["valid"]) for s in scores) / max(1, n)
        out["plagiarism/rate"] = sum(bool(s["plagiarism"]) for s in scores) / max(1, n)
        out["finished/rate"] = sum(bool(s.get("finished", True)) for s in scores) / max(1, n)
        pce = [s["pitch_class_entropy"] for s in scores if not math.isnan(s["pitch_class_entropy"])]
        out["pitch_class_entropy/mean"] = float(np.mean(pce)) if pce else math.nan
        out["samples/count"] = float(n)
    return out


def per_prompt(scores: list[dict], key: str = "clamp_score") -> dict[str, float]:
    """Mean score per prompt (nan-skipping); the per-prompt view of a round."""
    by: dict[str, list[float]] = defaultdict(list)
    for s in scores:
        if not math.isnan(s[key]):
            by[s["prompt"]].append(s[key])
    return {p: float(np.mean(v)) for p, v in sorted(by.items())}


DPO_KEYS = {
    "rewards/chosen": "rewards/chosen",
    "rewards/rejected": "rewards/rejected",
    "rewards/margins": "rewards/margins",
    "rewards/accuracies": "rewards/accuracies",
    "train_loss": "dpo/loss",
    "dpop/penalty": "dpop/penalty",
    "logps/chosen": "logps/chosen",
    "logps/rejected": "logps/rejected",
}


def eval_metrics(scores: list[dict], ref_features: np.ndarray, ref_prompts: list[str]) -> dict[str, float]:
    """A round's evaluation: score statistics and guard rates of the held-out samples, plus their diversity
    and Fréchet distance to the ground truth of their prompts (features in the evaluator's scoring space)."""
    from evaluators.guards import set_metrics

    out = score_metrics(scores)
    features = np.array([s["feature"] for s in scores], dtype=np.float32).reshape(len(scores), -1)
    out.update(set_metrics(features, [s["prompt"] for s in scores], ref_features, ref_prompts))
    return out


def training_metrics(candidate_scores: list[dict], pairs: dict, dpo: dict) -> dict[str, float]:
    """What round k trained on and how DPO went: the candidates' CLaMP statistics and validity, the pair
    count (from the pairs stage's record) and the DPO summary's metrics under stable names."""
    out = {
        f"candidates/{k.split('/')[1]}": v
        for k, v in _stats([s["clamp_score"] for s in candidate_scores], "clamp").items()
    }
    out["candidates/validity_rate"] = sum(bool(s["valid"]) for s in candidate_scores) / max(1, len(candidate_scores))
    out["pairs/count"] = float(pairs.get("pairs/count", 0))
    out.update({name: float(dpo[key]) for key, name in DPO_KEYS.items() if key in dpo})
    return out


def format_table(rows: list[dict[str, float]], label: str = "round") -> str:
    """Rounds × metrics as aligned text; a missing metric prints as '-'."""
    headers = [label] + [h for _, h, _ in TABLE]
    lines: list[list[str]] = []
    for row in rows:
        cells = [str(int(row.get("round", len(lines))))]
        for key, _, fmt in TABLE:
            v = row.get(key)
            cells.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v))
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(headers)]
    fmt_row = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([fmt_row(headers)] + [fmt_row(c) for c in lines])
