"""``clampdpo``: the command line of every stage, grouped as ``clampdpo <stage> <command>``.

Each stage module contributes a ``register(subparsers)`` function; heavy imports (torch, ray,
music21) happen inside the command functions so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from pipelines.typed_config import ConfigError

log = logging.getLogger("clampdpo")

DESCRIPTION = """\
clampdpo aligns NotaGen-style symbolic-music models with CLaMP-DPO: sample pieces per
period-composer-instrumentation prompt, score them with a CLaMP-style evaluator against the
centroid of real pieces, and train on best-vs-worst pairs with DPO, round after round.

Every command reads a typed config (a preset name from configs/ or a YAML file) that any
`--set section.field=value` overrides; `clampdpo config show` prints the resolved settings."""


def add_config_args(parser: argparse.ArgumentParser, default: str | None = "default") -> None:
    """The config options every stage command shares."""
    parser.add_argument("--config", "-c", default=default, metavar="PRESET|FILE",
                        help=f"preset name from configs/ or a YAML file (default: {default})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one config field, e.g. --set data.eval_fraction=0.2 (repeatable)")


def load_project(args: argparse.Namespace, out_field: str):
    """The config of a command with --config/--set, --out (into ``out_field``) and --ray-address."""
    import json

    from pipelines.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "out", None):
        overrides.append(f"{out_field}={json.dumps(args.out)}")
    if getattr(args, "ray_address", None):
        overrides.append(f"cluster.ray_address={json.dumps(args.ray_address)}")
    return load_config(args.config, overrides)


def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    from evaluators import cli as evaluator_cli
    from models import cli as model_cli
    from pipelines import config_cli
    from pipelines.campaign import cli as campaign_cli
    from pipelines.data import cli as data_cli
    from pipelines.train import cli as train_cli

    return [data_cli.register, model_cli.register, train_cli.register, evaluator_cli.register, campaign_cli.register,
            config_cli.register]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clampdpo", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    groups = parser.add_subparsers(dest="group", metavar="<stage>", required=True)
    for register in _registrars():
        register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        log.error("bad config: %s", err)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
