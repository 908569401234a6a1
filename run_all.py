#!/usr/bin/env python
"""Run a terracarbon study: every stage notebook in order, into runs/<name>/.

Examples
--------
    python run_all.py                                  # the default synthetic study
    python run_all.py --params params/quick.yaml       # tiny study (about a minute)
    python run_all.py --params my_study.yaml --set trends.alpha=0.01 --from 04_trends
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

from terracarbon.errors import RunInterrupted, TerracarbonError
from terracarbon.pipeline.params import DEFAULT_PARAMS, REPO_ROOT, load_params
from terracarbon.pipeline.runner import Console, run_study


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None,
                        help="study YAML layered over params/default.yaml (default: none)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a parameter, e.g. trends.alpha=0.01")
    parser.add_argument("--runs-dir", default=str(REPO_ROOT / "runs"),
                        help="folder holding run folders (default: runs/)")
    parser.add_argument("--force", action="store_true", help="rerun stages even if up to date")
    parser.add_argument("--screenshots", action="store_true",
                        help="after the run, save PNGs of the index, a report and the dashboard "
                             "to runs/<name>/screenshots/ (needs Debian's chromium)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--from", dest="start", metavar="STAGE", help="run from this stage on")
    group.add_argument("--only", metavar="STAGE", help="run only this stage")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # SIGTERM (a batch scheduler, `kill`) ends the run the way Ctrl-C does: cleanly
    previous = signal.signal(signal.SIGTERM, _terminate)
    t0 = time.time()
    # "   12.3 s  message" lines; on a terminal also one live line of the running stage's
    # progress (model and fold, years mapped, chunks done: terracarbon.progress)
    progress = Console(t0=t0)

    try:
        params = load_params(args.params, args.overrides, defaults=DEFAULT_PARAMS)
        run_dir, _ = run_study(params, runs_dir=args.runs_dir, force=args.force,
                               start=args.start, only=args.only, progress=progress,
                               status=progress.status if progress.live else None)
        if args.screenshots:
            from terracarbon.viz.screenshots import capture_with_dashboard

            for path in capture_with_dashboard(run_dir):
                progress(f"screenshot {path}")
    except RunInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted; completed stages are kept, nothing half-written is left; rerun "
              "the same command to resume.", file=sys.stderr)
        return 130
    except TerracarbonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"done in {time.time() - t0:.1f} s; open {run_dir / 'index.html'}")
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
