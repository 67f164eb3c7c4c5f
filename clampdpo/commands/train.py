"""``clampdpo train``: supervised pre-training / fine-tuning of the decoder."""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)


def _sft(args: argparse.Namespace) -> int:
    from clampdpo.args import load_project
    from orchestration.ray_train import run_sft

    project = load_project(args, "train.out_dir")
    result = run_sft(project, config_name=str(args.config))
    s = result.summary
    sys.stdout.write(
        f"trained {s['step']} steps in {s['elapsed_s'] / 60:.1f} min on {s['world_size']} worker(s) ({s['device']})\n"
        f"eval loss {s.get('eval/loss', float('nan')):.4f} nats/char = "
        f"{s.get('eval/bpc', float('nan')):.3f} bits/char; "
        f"char-unigram baseline {result.baseline_bpc:.3f} bits/char\n"
        f"model written to {result.model_dir}\n"
    )
    return 0


def register(groups: argparse._SubParsersAction) -> None:
    from clampdpo.args import add_config_args

    p = groups.add_parser(
        "train",
        help="supervised training of the decoder (pre-training, fine-tuning)",
        description="Train the NotaGen decoder on a built corpus.",
    )
    sub = p.add_subparsers(dest="command", metavar="<command>", required=True)
    sft = sub.add_parser(
        "sft",
        help="pre-train or fine-tune on the corpus (DeepSpeed on Ray Train workers)",
        description="Supervised training on the corpus's train split with DeepSpeed ZeRO (train.zero_stage) on "
        "Ray Train workers (cluster.num_workers; GPUs when present, bf16 where supported). Warm-up + cosine "
        "schedule, eval loss on the eval split in bits per character next to a char-unigram baseline, "
        "resumable checkpoints, metrics to MLflow. Start from given weights with --set model.init_from=DIR "
        "(fine-tuning).",
    )
    add_config_args(sft)
    sft.add_argument("--out", help="output folder (train.out_dir)")
    sft.add_argument("--ray-address", help="existing Ray cluster to run on (cluster.ray_address)")
    sft.set_defaults(func=_sft)
