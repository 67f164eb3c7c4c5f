"""``clampdpo report``: a self-contained HTML page that shows and plays a campaign (or compares several)."""

from __future__ import annotations

import argparse
import sys


def _report(args: argparse.Namespace) -> int:
    from pipelines.campaign.report import build_report

    out = build_report(args.dirs, args.out, args.pairs)
    size = out.stat().st_size / 1e6
    sys.stdout.write(f"report written to {out} ({size:.1f} MB; open it in a browser, no network needed)\n")
    return 0


def register(groups: argparse._SubParsersAction) -> None:
    p = groups.add_parser(
        "report",
        help="one self-contained HTML page of one or more campaigns: tables, curves, engraved and playable samples",
        description="Write an HTML report: the round tables with intervals, curves across rounds, the reward "
        "against the independent judge, score histograms, the evaluator's headroom, and for each prompt and "
        "round the best, median and worst samples engraved as sheet music with a player beside each, and "
        "chosen / rejected pairs. Several campaigns: curves overlaid and config differences. Every image and "
        "sound is inside the file; it opens with the network off.",
    )
    p.add_argument("dirs", nargs="+", help="campaign folders")
    p.add_argument("--out", help="HTML file to write (default: DIR/report.html of the first campaign)")
    p.add_argument("--pairs", type=int, default=2, help="chosen / rejected pairs shown per round (default 2)")
    p.set_defaults(func=_report)
