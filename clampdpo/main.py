"""``clampdpo``: the command line of every stage, grouped as ``clampdpo <group> <command>``.

Each module of ``clampdpo/commands/`` contributes a ``register(groups)`` function. A command that fails on
bad input ends with one line naming the file or field and exit code 2 (a usage or config error) or 1 (a
failure); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys

from base.typed_config import ConfigError

log = logging.getLogger("clampdpo")

DESCRIPTION = """\
clampdpo aligns NotaGen-style symbolic-music models with CLaMP-DPO: sample pieces per
period-composer-instrumentation prompt, score them with a CLaMP-style evaluator against the
centroid of real pieces, and train on best-vs-worst pairs with DPO, round after round.

Every command reads a typed config (a preset name from configs/ or a YAML file) that any
`--set section.field=value` overrides; `clampdpo config show` prints the resolved settings."""


def build_parser() -> argparse.ArgumentParser:
    from clampdpo.commands import campaign, config, data, evaluator, model, report, train

    parser = argparse.ArgumentParser(
        prog="clampdpo", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    groups = parser.add_subparsers(dest="group", metavar="<group>", required=True)
    for module in (data, model, train, evaluator, campaign, report, config):
        module.register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as err:
        if args.debug:
            raise
        code, what = classify(err)
        log.error("%s: %s", what, " ".join(str(err).split()) or "(no message)")
        return code


def classify(err: BaseException) -> tuple[int, str]:
    """Exit code (2: usage or config, 1: failure) and the words that start the one-line error."""
    from base.errors import CheckpointError
    from base.folder_lock import FolderBusy
    from clampdpo.args import UsageError

    # Ray's errors from a worker subclass the worker's own exception class (a ValueError raised in an actor
    # arrives as a RayTaskError that is also a ValueError): named for what they are, never "bad input"
    if any(c.__module__.startswith("ray.") for c in type(err).__mro__):
        return 1, "failed in a Ray worker"
    if isinstance(err, FolderBusy):
        return 1, "busy"
    if isinstance(err, ConfigError):
        return 2, "bad config"
    if isinstance(err, UsageError):
        return 2, "usage"
    if isinstance(err, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return 2, "not found" if isinstance(err, FileNotFoundError) else "wrong kind of path"
    if isinstance(err, PermissionError):
        return 1, "permission denied"
    if isinstance(err, CheckpointError):
        return 1, "bad checkpoint"
    if isinstance(err, UnicodeDecodeError):
        return 1, "not UTF-8 text"
    if isinstance(err, (ValueError, KeyError)):
        return 1, "bad input"
    return 1, f"failed ({type(err).__name__})"


if __name__ == "__main__":
    sys.exit(main())
