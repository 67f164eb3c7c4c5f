"""How fast the command line answers when it has nothing heavy to do: ``--help`` and ``campaign status``.

    python bench/cli.py --campaign runs/campaign [--repeat 10]

Each command runs as a fresh process (as a user types it); the table gives the median and the best wall time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaign", required=True, help="a campaign folder for `campaign status`")
    parser.add_argument("--repeat", type=int, default=10, help="runs per command (default 10)")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "clampdpo"]
    rows = [
        ("clampdpo --help", timed(cli + ["--help"], args.repeat)),
        ("clampdpo campaign status DIR", timed(cli + ["campaign", "status", args.campaign], args.repeat)),
    ]
    print(f"{'command':<30} {'median s':>9} {'best s':>8}")
    for name, times in rows:
        print(f"{name:<30} {statistics.median(times):>9.3f} {min(times):>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
