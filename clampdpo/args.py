"""Options that several commands share, and the config they resolve to."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestration.config import ProjectConfig


class UsageError(ValueError):
    """The command line asks for something impossible (exit code 2, like argparse's own errors)."""


def add_config_args(parser: argparse.ArgumentParser, default: str | None = "default") -> None:
    """--config/-c and --set: the config options every stage command shares."""
    parser.add_argument(
        "--config",
        "-c",
        default=default,
        metavar="PRESET|FILE",
        help=f"preset name from configs/ or a YAML file (default: {default})",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one config field, e.g. --set data.eval_fraction=0.2 (repeatable)",
    )


def load_project(
    args: argparse.Namespace, out_field: str | None = None, extra: dict[str, object] | None = None
) -> ProjectConfig:
    """The config of a command: --config and --set, then --out (into ``out_field``), --ray-address and the
    command's own flags (``extra``: dotted field → value, None values skipped)."""
    from orchestration.config import load_config

    overrides = list(args.overrides)
    fields: dict[str, object] = dict(extra or {})
    if out_field and getattr(args, "out", None):
        fields[out_field] = args.out
    if getattr(args, "ray_address", None):
        fields["cluster.ray_address"] = args.ray_address
    overrides += [f"{name}={json.dumps(value)}" for name, value in fields.items() if value is not None]
    return load_config(args.config, overrides)
