"""Where a campaign round's time goes: each stage's wall time, the compute inside it, and the rest.

    python bench/round.py --campaign runs/campaign [--round 1]          # report a finished round
    python bench/round.py --config default --out runs/bench-round \\
        --set campaign.policy_from=runs/campaign/sft/model \\
        --set campaign.evaluator_from=runs/campaign/evaluator \\
        --set campaign.judge_from=runs/campaign/judge                  # run one round, then report it

Compute is what the work itself took: generation inside the sampler actors, scoring inside the
evaluator actors (summed over units), and ``trainer.train()`` inside the DPO workers. Everything else in a
stage's wall time — starting actors and Ray Train workers, publishing weights, DeepSpeed set-up, reading
and writing units, MLflow — is orchestration overhead, reported as a share of the round.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from base import atomic  # noqa: E402


def _unit_compute(folder: Path) -> float:
    """Seconds spent inside actors on the units of ``folder`` (each unit's time counted once)."""
    total = 0.0
    for f in sorted((folder / "units").glob("unit-*.jsonl")):
        rows = atomic.read_jsonl(f)
        if rows:
            total += float(rows[0].get("unit_seconds", 0.0))
    return total


def round_report(campaign: Path, k: int) -> list[dict]:
    """One row per stage of round ``k``: wall, compute and overhead seconds."""
    d = campaign / f"round-{k:02d}"
    markers = campaign / "markers"

    def wall(stage: str) -> float:
        f = markers / f"round-{k:02d}.{stage}.json"
        if not f.is_file():
            raise SystemExit(f"{campaign}: round {k} has no finished {stage} stage")
        return float(json.loads(f.read_text())["seconds"])

    rows = []
    if k > 0:
        dpo = d / "dpo" / "dpo_summary.json"
        train = float(json.loads(dpo.read_text())["seconds"]) if dpo.is_file() else 0.0
        rows += [
            {"stage": "sample", "wall_s": wall("sample"), "compute_s": _unit_compute(d / "samples")},
            {"stage": "score", "wall_s": wall("score"), "compute_s": _unit_compute(d / "scores")},
            {"stage": "pairs", "wall_s": wall("pairs"), "compute_s": 0.0},
            {"stage": "dpo", "wall_s": wall("dpo"), "compute_s": train},
        ]
    rows.append(
        {
            "stage": "eval",
            "wall_s": wall("eval"),
            "compute_s": _unit_compute(d / "eval" / "samples") + _unit_compute(d / "eval" / "scores"),
        }
    )
    for r in rows:
        r["overhead_s"] = max(0.0, r["wall_s"] - r["compute_s"])
    return rows


def format_report(rows: list[dict], k: int) -> str:
    total = sum(r["wall_s"] for r in rows)
    over = sum(r["overhead_s"] for r in rows)
    lines = [
        f"round {k}: {total:.1f} s in all, orchestration overhead {over:.1f} s "
        f"({100 * over / max(total, 1e-9):.0f}% outside sampling, scoring and training)",
        f"{'stage':<8} {'wall s':>8} {'compute s':>10} {'overhead s':>11}",
    ]
    lines += [f"{r['stage']:<8} {r['wall_s']:>8.1f} {r['compute_s']:>10.1f} {r['overhead_s']:>11.1f}" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaign", help="report this campaign folder (no run)")
    parser.add_argument("--round", type=int, default=1, help="round to report (default 1)")
    parser.add_argument("--config", default="default", help="preset or YAML of the round to run")
    parser.add_argument("--out", default="runs/bench-round", help="campaign folder of the run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--out-json")
    args = parser.parse_args()

    folder = Path(args.campaign) if args.campaign else Path(args.out)
    if not args.campaign:
        import logging

        from orchestration.campaign import run_campaign
        from orchestration.config import load_config

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        project = load_config(
            args.config, args.overrides + [f"campaign.out_dir={args.out}", f"campaign.rounds={max(1, args.round)}"]
        )
        run_campaign(project, args.config)
    rows = round_report(folder, args.round)
    sys.stdout.write(format_report(rows, args.round) + f"\n(machine: {platform.processor() or platform.machine()})\n")
    if args.out_json:
        atomic.write_json(args.out_json, {"round": args.round, "stages": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
