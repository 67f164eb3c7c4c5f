"""A small corpus of three clearly different styles and a tiny campaign config, for campaign tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

STYLES = {
    # prompt key: (period, composer, instrumentation)
    "jig": ("Folk", "Traditional, Irish", "Solo melody"),
    "reel": ("Folk", "Traditional, Scottish", "Solo melody"),
    "chorale": ("Baroque", "Bach, Johann Sebastian", "Chorus"),
}


def _jig(rng: random.Random) -> str:
    bars = [f"[V:1]{rng.choice(['DFA', 'AFD', 'dfa'])} {rng.choice(['d3', 'f3', 'gfe'])}|\n" for _ in range(6)]
    return "L:1/8\nM:6/8\nK:D\nV:1 treble\n" + "".join(bars)


def _reel(rng: random.Random) -> str:
    bars = [f"[V:1]{rng.choice(['GABc', 'dcBA', 'GBdB'])} {rng.choice(['d2B2', 'c2A2', 'G4'])}|\n" for _ in range(6)]
    return "L:1/8\nM:4/4\nK:G\nV:1 treble\n" + "".join(bars)


def _chorale(rng: random.Random) -> str:
    bars = [f"[V:1]{' '.join(rng.choice(['G2', 'A2', 'B2', 'c2']) for _ in range(4))}|"
            f"[V:2]{rng.choice(['G,8', 'D,8', 'C,8'])}|\n" for _ in range(5)]
    return "L:1/8\nM:4/4\nK:G\nV:1 treble\nV:2 bass\n" + "".join(bars)


MAKERS = {"jig": _jig, "reel": _reel, "chorale": _chorale}


def write_corpus(root: Path, per_style: int = 14, eval_per_style: int = 3) -> Path:
    """A built corpus: train/ (NotaGen form with prompt lines), interleaved/, train.jsonl, eval.jsonl."""
    rng = random.Random(0)
    for d in ("train", "interleaved"):
        (root / d).mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict]] = {"train": [], "eval": []}
    for style, (period, composer, inst) in STYLES.items():
        for i in range(per_style):
            pid = f"{style}{i:02d}"
            body = MAKERS[style](rng)
            (root / "interleaved" / f"{pid}.abc").write_text(body)
            (root / "train" / f"{pid}.abc").write_text(f"%{period}\n%{composer}\n%{inst}\n{body}")
            row = {"id": pid, "path": f"train/{pid}.abc", "prompt": f"{period}_{composer}_{inst}", "period": period,
                   "composer": composer, "instrumentation": inst, "title": f"{style} {i}"}
            splits["eval" if i >= per_style - eval_per_style else "train"].append(row)
    for split, rows in splits.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def campaign_config(tmp: Path, corpus: Path, out: Path, **campaign) -> Path:
    """A YAML config for a campaign of tiny everything (seconds per stage on 2 cores)."""
    evaluator = {"size": "tiny", "train_patches": 32, "pretrain_steps": 10, "contrastive_steps": 20,
                 "batch_size": 8, "eval_every": 20, "log_every": 10, "min_prompt_pieces": 3, "dropout": 0.0,
                 "plagiarism_cosine": None}
    cfg = {
        "data": {"out_dir": str(corpus)},
        "model": {"size": "tiny", "hidden_size": 64, "patch_num_layers": 1, "char_num_layers": 1,
                  "patch_length": 64, "dropout": 0.0},
        "train": {"max_steps": 80, "batch_pieces": 8, "lr": 3e-3, "warmup_steps": 5, "eval_every": 40,
                  "save_every": 80, "log_every": 20, "eval_pieces": 8},
        "cluster": {"num_workers": 1, "cpus_per_worker": 1},
        "sampling": {"max_patches": 48, "batch_size": 8},
        "evaluator": {**evaluator, "subset": "even"},
        "judge": {**evaluator, "subset": "odd", "seed": 1},
        "dpo": {"select_portion": 0.25, "lr": 1e-4, "epochs": 1, "batch_pairs": 2, "max_pairs_per_prompt": 4},
        "campaign": {"out_dir": str(out), "rounds": 1, "heldout_keys": ["Folk_Traditional, Scottish_Solo melody"],
                     "min_prompt_pieces": 5, "samples_per_prompt": 8, "eval_samples_per_prompt": 4,
                     "unit_size": 4, "cpus_per_sampler": 1, "cpus_per_scorer": 1, **campaign},
    }
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
