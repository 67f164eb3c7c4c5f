"""``clampdpo config``: show presets and the resolved settings of a run."""

from __future__ import annotations

import argparse
import sys

import yaml


def _show(args: argparse.Namespace) -> int:
    from base.typed_config import to_dict
    from orchestration.config import load_config

    cfg = load_config(args.config, args.overrides)
    sys.stdout.write(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return 0


def _presets(args: argparse.Namespace) -> int:
    from orchestration.config import CONFIGS_DIR, preset_names

    for name in preset_names():
        first = (CONFIGS_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[:1]
        sys.stdout.write(f"{name:<12} {first[0].lstrip('# ') if first else ''}\n")
    return 0


def _fields(args: argparse.Namespace) -> int:
    from base.typed_config import describe
    from orchestration.config import ProjectConfig

    for name, default, help_text in describe(ProjectConfig):
        sys.stdout.write(f"{name}  (default {default})\n    {help_text}\n")
    return 0


def register(groups: argparse._SubParsersAction) -> None:
    from clampdpo.args import add_config_args

    p = groups.add_parser(
        "config",
        help="show presets, fields and resolved settings",
        description="Inspect the typed config that every stage reads.",
    )
    sub = p.add_subparsers(dest="command", metavar="<command>", required=True)
    show = sub.add_parser(
        "show",
        help="print the resolved config as YAML",
        description="Load a preset or file, apply --set overrides, print the result.",
    )
    add_config_args(show)
    show.set_defaults(func=_show)
    sub.add_parser(
        "presets",
        help="list the presets in configs/",
        description="List the presets in configs/ with their one-line descriptions.",
    ).set_defaults(func=_presets)
    sub.add_parser(
        "fields",
        help="list every config field with its default and help",
        description="List every config field (section.field) with its default and help.",
    ).set_defaults(func=_fields)
