"""``clampdpo campaign run|resume|status|compare|lab`` and ``clampdpo ui``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def _print_rounds(out: Path, rows: list[dict]) -> None:
    from pipelines.campaign.compare import last_round_details
    from pipelines.campaign.metrics import format_table, summary

    text = summary(rows, last_round_details(out))
    sys.stdout.write(f"campaign {out}\n{format_table(rows)}\n" + (f"\n{text}\n" if text else ""))
    if (out / "report.html").is_file():
        sys.stdout.write(f"report (engraved and playable samples): {out / 'report.html'}\n")
    sys.stdout.write(f"MLflow: clampdpo ui {out}\n")


def _run(args: argparse.Namespace) -> int:
    from clampdpo.args import load_project

    project = load_project(args, "campaign.out_dir")
    from orchestration.campaign import run_campaign

    out, rows = run_campaign(project, str(args.config), rebuild=args.no_cache)
    _print_rounds(out, rows)
    return 0


def _resume(args: argparse.Namespace) -> int:
    from orchestration.campaign import resume_campaign

    out, rows = resume_campaign(args.dir, args.ray_address)
    _print_rounds(out, rows)
    return 0


def _status(args: argparse.Namespace) -> int:
    from orchestration.config import campaign_config
    from pipelines.campaign.compare import read_rounds
    from pipelines.campaign.metrics import format_table
    from pipelines.campaign.stages import status
    from pipelines.campaign.state import Markers

    project, name = campaign_config(args.dir)
    markers = Markers(args.dir)
    rows = status(args.dir, project.campaign.rounds)
    done = sum(1 for _, s, _ in rows if s == "done")
    lines = [f"campaign {args.dir} (config {name or '?'}): {done}/{len(rows)} stages done"]
    signs = {"done": "✓", "next": "→", "damaged": "✗", "stale": "~", "pending": " "}
    for stage, state, detail in rows:
        info = markers.done(stage) or {}
        extra = f"  {info['seconds']:.1f} s" if state == "done" and "seconds" in info else ""
        extra += f"  {detail}" if detail else ""
        extra += "  (its input will be made again)" if state == "stale" else ""
        lines.append(f"  {signs[state]} {stage:<16} {state}{extra}")
    damaged = [stage for stage, state, _ in rows if state == "damaged"]
    if damaged:
        lines.append(
            f"{len(damaged)} damaged stage(s): `clampdpo campaign resume {args.dir}` redoes them and every stage "
            "after them"
        )
    evaluated, unreadable = read_rounds(args.dir)
    if evaluated:
        lines.append(format_table(evaluated))
    lines += [f"unreadable: {u}" for u in unreadable]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pipelines.campaign.compare import compare_text, load_rounds, plot

    campaigns = {str(d): load_rounds(d) for d in args.dirs}
    sys.stdout.write(compare_text(campaigns) + "\n")
    png = Path(args.plot or Path(args.dirs[0]) / "compare.png")
    plot(campaigns, png)
    sys.stdout.write(f"plot written to {png}\n")
    return 0


def _lab(args: argparse.Namespace) -> int:
    from base.typed_config import ConfigError, load_yaml
    from clampdpo.args import UsageError
    from orchestration.config import campaign_config
    from pipelines.campaign.reward_lab import DEFAULT_SETTINGS, candidate_rounds, format_lab, lab_campaign
    from pipelines.campaign.state import Markers

    project, _ = campaign_config(args.dir)
    root = Path(args.dir).resolve()
    rounds = candidate_rounds(root)
    if not rounds:
        raise UsageError(f"{root}: no round with scored candidates yet (the lab reads a round's candidates)")
    k = args.round if args.round is not None else rounds[-1]
    if k not in rounds:
        raise UsageError(f"--round {k}: {root} has scored candidates for rounds {', '.join(map(str, rounds))}")
    settings: list[dict] = []
    if args.settings:
        loaded = load_yaml(args.settings)
        listed = loaded.get("settings") if isinstance(loaded, dict) else loaded
        if not isinstance(listed, list) or not all(isinstance(s, dict) for s in listed):
            raise ConfigError(f"{args.settings}: settings: expected a list of mappings of dpo fields")
        settings += listed
    for text in args.try_:
        import yaml

        fields: dict = {"name": text}
        for part in text.split(";"):
            key, sep, value = part.partition("=")
            if not sep:
                raise UsageError(f"--try {text!r}: expected FIELD=VALUE[;FIELD=VALUE...]")
            fields[key.strip().removeprefix("dpo.")] = yaml.safe_load(value)
        settings.append(fields)
    evaluator = (Markers(root).done("evaluator") or {}).get("dir") or str(root / "evaluator")
    rows = lab_campaign(
        root,
        project.dpo,
        evaluator,
        project.evaluator.center_features,
        settings or DEFAULT_SETTINGS,
        k,
    )
    sys.stdout.write(f"reward lab: round {k} of {root} ({len(rows)} settings, no training)\n{format_lab(rows)}\n")
    return 0


def _ui(args: argparse.Namespace) -> int:
    import os
    import signal
    import subprocess
    import time

    from mlflow.tracking import MlflowClient

    from base.tracking import EXPERIMENT_KIND, TRAINING_KIND
    from clampdpo.args import UsageError

    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: the server needs at least one")
    folder = Path(args.dir).resolve()
    db = folder / "mlflow.db"
    if not db.is_file():
        log.error("%s: no mlflow.db (a campaign, sft or evaluator folder has one)", folder)
        return 1
    # the folder's experiments open on their runs (MLflow's model-training view), older campaigns' too
    client = MlflowClient(f"sqlite:///{db}")
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    for e in experiments:
        if e.tags.get(EXPERIMENT_KIND) != TRAINING_KIND:
            client.set_experiment_tag(e.experiment_id, EXPERIMENT_KIND, TRAINING_KIND)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--backend-store-uri",
        f"sqlite:///{db}",
        "--default-artifact-root",
        (folder / "mlartifacts").as_uri(),
        "--workers",
        str(args.workers),
    ]
    # no job runner: its seven task consumers serve MLflow's GenAI jobs (judges, trace roll-ups), none of which a
    # campaign's runs use, and cost seconds of CPU each to start and stop
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    # its own process group: the server's job runner and workers are stopped with it, however this is stopped
    server = subprocess.Popen(cmd, env=env, start_new_session=True)

    stopping: list[float] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(time.monotonic())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, stop)
    for e in experiments:
        log.info(
            "%s: http://127.0.0.1:%d/#/experiments/%s/runs?workflowType=machine_learning",
            e.name,
            args.port,
            e.experiment_id,
        )
    log.info("MLflow UI on http://127.0.0.1:%d (Ctrl-C, SIGTERM or SIGHUP stops it)", args.port)
    if (folder / "report.html").is_file():
        log.info("the campaign's report (engraved and playable samples): %s", (folder / "report.html").as_uri())
    try:
        while server.poll() is None:
            # a server group still there 15 s after the stop is killed
            if stopping and time.monotonic() - stopping[0] > 15:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM if not stopping else signal.SIGKILL)
    code = server.returncode
    return 0 if code in (0, -signal.SIGTERM) else code


def register(groups: argparse._SubParsersAction) -> None:
    from clampdpo.args import add_config_args

    p = groups.add_parser(
        "campaign",
        help="run, resume, inspect and compare CLaMP-DPO campaigns",
        description="A campaign: corpus → policy (SFT or given) → evaluator and judge (trained or "
        "given) → ground-truth centroids → K rounds of sample (Ray sampler actors) → score (Ray "
        "evaluator actors) → pairs → DPO (TRL + DeepSpeed on a trainer group) → held-out evaluation. Samplers, "
        "scorers and the trainer group live for the whole campaign; the policy moves between them as numbered "
        "versions. "
        "Tracked in MLflow (parent run = campaign, child run = round); resumable stage by stage.",
    )
    sub = p.add_subparsers(dest="command", metavar="<command>", required=True)
    run = sub.add_parser(
        "run",
        help="run a whole campaign (continues one already in --out with the same config)",
        description="Run every stage of a campaign and print the per-round table.",
    )
    add_config_args(run)
    run.add_argument("--out", help="campaign folder (campaign.out_dir)")
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="train the policy, evaluator and judge again instead "
        "of taking them from campaign.cache_dir (and replace the cached ones)",
    )
    run.add_argument(
        "--ray-address",
        help="existing Ray cluster, e.g. auto or HEAD:6379 (cluster.ray_address); default: a local Ray in this process",
    )
    run.set_defaults(func=_run)
    res = sub.add_parser(
        "resume",
        help="continue a campaign after a crash, from its own saved config",
        description="Redo the stage a crash interrupted (keeping its finished work units) and "
        "run the rest. Nothing finished is redone; no sample is lost or duplicated.",
    )
    res.add_argument("dir", help="campaign folder")
    res.add_argument("--ray-address", help="run on this Ray cluster instead of a local one")
    res.set_defaults(func=_resume)
    st = sub.add_parser(
        "status",
        help="which stages are done, which is next, and the rounds so far",
        description="Read a campaign folder (nothing is started): every stage with its state and "
        "wall time, then the round table of the rounds evaluated so far.",
    )
    st.add_argument("dir", help="campaign folder")
    st.set_defaults(func=_status)
    cmp_ = sub.add_parser(
        "compare",
        help="rounds × metrics of campaigns, and a PNG of scores across rounds",
        description="Print the round table of each campaign and plot CLaMP score, judge score "
        "and validity across rounds, one line per campaign.",
    )
    cmp_.add_argument("dirs", nargs="+", help="campaign folders")
    cmp_.add_argument("--plot", help="PNG to write (default: DIR/compare.png of the first campaign)")
    cmp_.set_defaults(func=_compare)

    lab = sub.add_parser(
        "lab",
        help="judge reward and pair-rule settings on a round's candidates, without training",
        description="For each setting (the dpo section with some fields changed: reward, reward_k, "
        "reward_contrast, chosen_like_real, pair_within_style, guards), rank the round's scored candidates by "
        "that reward, build the pairs by those rules, and report what DPO would be taught, by measures that are "
        "not the reward: headroom AUC, the pairs' direction on the music statistics, the chosen set's music "
        "similarity, fidelity, metre mix and length against the real pieces', and agreement with the judge. "
        "Seconds, not rounds.",
    )
    lab.add_argument("dir", help="campaign folder")
    lab.add_argument("--round", type=int, help="round whose candidates to read (default: the last scored)")
    lab.add_argument(
        "--settings", help="YAML file: a list of mappings of dpo fields (and a name), e.g. - {name: knn, reward: knn}"
    )
    lab.add_argument(
        "--try",
        dest="try_",
        action="append",
        default=[],
        metavar="FIELD=VALUE[;FIELD=VALUE]",
        help="one setting on the command line, e.g. --try 'reward=knn;reward_contrast=0.5' (repeatable); "
        "without --settings or --try the lab runs its built-in list",
    )
    lab.set_defaults(func=_lab)

    ui = groups.add_parser(
        "ui",
        help="serve the MLflow UI of a campaign (or sft / evaluator) folder on 127.0.0.1",
        description="Start `mlflow server` on the folder's sqlite store, bound to 127.0.0.1.",
    )
    ui.add_argument("dir", help="folder holding mlflow.db")
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    ui.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (default 1: one person's browser needs no more, and it starts in about two thirds "
        "of the time of MLflow's default 4)",
    )
    ui.set_defaults(func=_ui)
