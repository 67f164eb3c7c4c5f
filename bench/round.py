"""Where a campaign round's time goes: each stage's wall time, the compute inside it, and the rest.

    python bench/round.py --campaign runs/campaign [--rounds 3]         # report a finished campaign's rounds
    python bench/round.py --config default --out runs/bench-round --rounds 5 \\
        --set campaign.policy_from=runs/campaign/sft/model \\
        --set campaign.evaluator_from=runs/campaign/evaluator \\
        --set campaign.judge_from=runs/campaign/judge                  # run 5 rounds, then report them

Compute is what the work itself took: generation inside the sampler actors, scoring inside the
evaluator actors (summed over units), and the DPO steps plus the reference's forward passes inside the
trainer ranks. Everything else in a stage's wall time — starting actors and the trainer group, publishing
weights, building TRL's trainer around the engine, reading and writing units, MLflow — is orchestration
overhead, reported per round and as a share of the round's loop (the round without its report). The round's
report (MIDI of the best and worst pieces, charts, the HTML page; part of the eval stage) is shown on a line
of its own: work the user asked for, neither orchestration nor the loop's compute. The trainer's resident memory
after each round shows whether the long-lived engine grows.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from base import atomic  # noqa: E402


def _unit_compute(folder: Path, actors: int) -> float:
    """The wall seconds the units of ``folder`` need on ``actors`` actors working side by side: their time
    inside the actors (each unit's counted once), spread over the pool (a sum over parallel actors would
    exceed the stage's wall and hide its overhead)."""
    total = 0.0
    for f in sorted((folder / "units").glob("unit-*.jsonl")):
        rows = atomic.read_jsonl(f)
        if rows:
            total += float(rows[0].get("unit_seconds", 0.0))
    return total / max(1, actors)


def round_report(campaign: Path, k: int) -> list[dict]:
    """One row per stage of round ``k``: wall, compute and overhead seconds."""
    d = campaign / f"round-{k:02d}"
    markers = campaign / "markers"
    pools = json.loads((campaign / "campaign.json").read_text())["config"]["campaign"]
    samplers, scorers = int(pools["num_samplers"]), int(pools["num_scorers"])

    def wall(stage: str) -> float:
        f = markers / f"round-{k:02d}.{stage}.json"
        if not f.is_file():
            raise SystemExit(f"{campaign}: round {k} has no finished {stage} stage")
        return float(json.loads(f.read_text())["seconds"])

    rows = []
    if k > 0:
        dpo = d / "dpo" / "dpo_summary.json"
        summary = json.loads(dpo.read_text()) if dpo.is_file() else {}
        train = float(summary.get("seconds", 0.0)) + float(summary.get("reference_seconds", 0.0))
        rows += [
            {"stage": "sample", "wall_s": wall("sample"), "compute_s": _unit_compute(d / "samples", samplers)},
            {"stage": "score", "wall_s": wall("score"), "compute_s": _unit_compute(d / "scores", scorers)},
            {"stage": "pairs", "wall_s": wall("pairs"), "compute_s": 0.0},
            {"stage": "dpo", "wall_s": wall("dpo"), "compute_s": train},
        ]
    eval_marker = json.loads((markers / f"round-{k:02d}.eval.json").read_text())
    report_marker = markers / f"round-{k:02d}.report.json"
    # a campaign from before the report had a stage of its own timed it inside its eval stage
    own = report_marker.is_file()
    report = json.loads(report_marker.read_text()) if own else eval_marker
    artifacts = float(report.get("artifacts_seconds", 0.0))
    report_wall = float(report["seconds"]) if own else artifacts
    rows.append(
        {
            "stage": "eval",
            "wall_s": wall("eval") - (0.0 if own else artifacts),
            "compute_s": _unit_compute(d / "eval" / "samples", samplers)
            + _unit_compute(d / "eval" / "scores", scorers),
        }
    )
    for r in rows:
        r["overhead_s"] = max(0.0, r["wall_s"] - r["compute_s"])
    # the round's report (MIDI of the best and worst pieces, charts, the HTML page, MLflow records) is work the
    # user asked for, neither orchestration nor the loop's compute: shown on its own line, outside both
    rows.append({"stage": "report", "wall_s": report_wall, "compute_s": 0.0, "overhead_s": 0.0, "artifacts": True})
    return rows


def trainer_facts(campaign: Path, k: int) -> dict[str, float]:
    """What round ``k``'s DPO stage recorded about the trainer group: its resident memory after the round,
    and the start-up it paid in this round (the first round, or a round whose group was started again)."""
    marker = campaign / "markers" / f"round-{k:02d}.dpo.json"
    info = json.loads(marker.read_text()) if marker.is_file() else {}
    return {
        "rss_mb": float(info.get("trainer/rss_mb", float("nan"))),
        "start_s": float(info.get("trainer/start_seconds", 0.0)),
        "restarts": float(info.get("trainer/restarts", 0.0)),
    }


def format_report(rows: list[dict], k: int, trainer: dict[str, float] | None = None) -> str:
    total = sum(r["wall_s"] for r in rows)
    loop = sum(r["wall_s"] for r in rows if not r.get("artifacts"))
    over = sum(r["overhead_s"] for r in rows)
    lines = [
        f"round {k}: {total:.1f} s in all, {loop:.1f} s without the report; orchestration overhead {over:.1f} s "
        f"({100 * over / max(loop, 1e-9):.1f}% of the loop outside sampling, scoring and training)",
        f"{'stage':<8} {'wall s':>8} {'compute s':>10} {'overhead s':>11}",
    ]
    lines += [f"{r['stage']:<8} {r['wall_s']:>8.1f} {r['compute_s']:>10.1f} {r['overhead_s']:>11.1f}" for r in rows]
    if trainer and k > 0:
        lines.append(
            f"trainer: {trainer['rss_mb']:.0f} MiB resident after the round; start-up paid in this round "
            f"{trainer['start_s']:.1f} s"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaign", help="report this campaign folder (no run)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds to run and report (default 1)")
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
            args.config, args.overrides + [f"campaign.out_dir={args.out}", f"campaign.rounds={max(1, args.rounds)}"]
        )
        run_campaign(project, args.config)
    report = []
    for k in range(1, max(1, args.rounds) + 1):
        rows, trainer = round_report(folder, k), trainer_facts(folder, k)
        sys.stdout.write(format_report(rows, k, trainer) + "\n\n")
        report.append({"round": k, "stages": rows, "trainer": trainer})
    rss = [r["trainer"]["rss_mb"] for r in report]
    if len(rss) > 1:
        sys.stdout.write(
            f"trainer resident memory, round 1 → {len(rss)}: {rss[0]:.0f} → {rss[-1]:.0f} MiB "
            f"({100 * (rss[-1] - rss[0]) / rss[0]:+.1f}%)\n"
        )
    sys.stdout.write(f"(machine: {platform.processor() or platform.machine()})\n")
    if args.out_json:
        atomic.write_json(args.out_json, {"rounds": report})
    return 0


if __name__ == "__main__":
    sys.exit(main())
