"""``ecgbench compare BASE CURRENT``: diff two runs; exit 0 ok, 1 regression, 2 unreadable input, 3 missing cells."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parse_percent(text: str) -> float:
    """``"5%"`` or ``"5"`` -> 0.05 (a share, never negative)."""
    try:
        value = float(text.strip().removesuffix("%")) / 100
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 5% or 2.5, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a percentage >= 0, got '{text}'")
    return value


def parse_points(text: str) -> float:
    """F1 points (``0.5`` = 0.005 of challenge F1), never negative."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected F1 points such as 0.5, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected F1 points >= 0, got '{text}'")
    return value


def parse_threshold(text: str) -> tuple[str, float]:
    """``"plugin_metrics.af_sens=2"`` -> (path, 2.0); ``"...=5%"`` -> (path, 0.05) for relative gates."""
    path, sep, value = text.partition("=")
    if not sep or not path.strip():
        raise argparse.ArgumentTypeError(f"expected METRIC=VALUE such as plugin_metrics.af_sensitivity=2, got '{text}'")
    parse = parse_percent if value.strip().endswith("%") else parse_points
    return path.strip(), parse(value)


def register(subparsers) -> None:
    """Add the ``compare`` subcommand."""
    p = subparsers.add_parser(
        "compare",
        help="diff two runs cell by cell; non-zero exit on a regression",
        description="Match cells by dataset, model, pipeline and seed and judge CURRENT against BASE. "
        "Exit codes: 0 ok; 1 regression (F1 drop, size growth or a plugin metric's worsening over its threshold); "
        "2 BASE or CURRENT unreadable; 3 cells done in BASE missing, failed or unfinished in CURRENT.",
    )
    p.add_argument("base", help="run id, id prefix or suite name in the store, or a JSON report (file or folder with results.json)")
    p.add_argument("current", help="the same, for the run being judged")
    p.add_argument("--db", type=Path, help="result store (default $ECGBENCH_HOME/results.sqlite, ECGBENCH_HOME defaulting to ./.ecgbench)")
    p.add_argument("--max-f1-drop", type=parse_points, default=0.5, metavar="POINTS", help="largest allowed drop of test challenge F1, in points (default 0.5)")
    p.add_argument("--max-size-growth", type=parse_percent, default=0.05, metavar="PCT", help="largest allowed growth of storage bytes, the smallest lossless file (default 5%%)")
    p.add_argument(
        "--threshold",
        action="append",
        type=parse_threshold,
        default=[],
        metavar="METRIC=VALUE",
        help="largest allowed worsening of another gated metric, by its path, in its gate's terms (points, or a share such as 5%%); repeatable",
    )
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    """Run ``ecgbench compare``; returns the comparison's exit code."""
    from ecgbench.results.compare import compare_runs, format_comparison, load_results
    from ecgbench.run.runner import default_home

    db = args.db or default_home() / "results.sqlite"
    base = load_results(args.base, db)
    current = load_results(args.current, db)
    comparison = compare_runs(
        base, current, max_f1_drop_points=args.max_f1_drop, max_size_growth=args.max_size_growth, thresholds=dict(args.threshold)
    )
    print(json.dumps(comparison.to_dict(), indent=2) if args.json else format_comparison(comparison))
    return comparison.exit_code
