"""``ecgbench export --run RUN --cell CELL --format tflite``: a stored cell as a file for a microcontroller."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

FORMATS = ("tflite",)
CHECK_SPLITS = ("test", "val")  # as ecgbench.run.tflite_export.CHECK_SPLITS (not imported: torch-free CLI start)


def register(subparsers) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export",
        help="export a stored cell's model for a microcontroller (tflite: integer LiteRT flatbuffer, int8 weights, + C array; needs the extra [tflite])",
    )
    p.add_argument("--run", required=True, help="run id, id prefix or suite name (its latest run)")
    p.add_argument("--cell", required=True, help="pipeline label, cell id prefix, or dataset/model/pipeline/seedN glob")
    p.add_argument("--format", choices=FORMATS, default="tflite", help="tflite: integer LiteRT flatbuffer for TFLite Micro (int8 weights and activations, int16 logits; default)")
    p.add_argument("--out", type=Path, help="folder (default $ECGBENCH_HOME/exports/<cell id>-<format>)")
    p.add_argument("--input-s", type=float, help="seconds of ECG per inference (default: the cell's measure.input_s)")
    p.add_argument("--calibration-records", type=int, default=0, help="training records that calibrate int8 ranges (default 0: all)")
    p.add_argument(
        "--calibration-percentile",
        type=float,
        default=None,
        help="range of each activation: this percentile of the per-record maxima (100: global min/max; default 95 for int8 activations, 100 for int16)",
    )
    p.add_argument(
        "--activations",
        choices=("int8", "int16"),
        default="int8",
        help="int8 (default) or int16 activations (TFLite's 16x8: int8 weights, twice the activation RAM; closer to ONNX)",
    )
    p.add_argument("--check-split", choices=CHECK_SPLITS, default="test", help="records of the ONNX-against-LiteRT check (default test; val to compare settings)")
    p.add_argument("--check-records", type=int, default=0, help="records of the check (default 0: all of --check-split)")
    p.add_argument("--c-name", default="g_model", help="name of the C array (default g_model; its length is NAME_len)")
    p.add_argument("--tolerance", type=float, default=0.5, help="largest challenge-F1 gap to ONNX, in points, before export fails (default 0.5)")
    p.add_argument("--db", type=Path, help="result store (default $ECGBENCH_HOME/results.sqlite)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """Run ``ecgbench export``."""
    from ecgbench.errors import ConfigError
    from ecgbench.registry import process_registry
    from ecgbench.run.runner import default_home
    from ecgbench.run.store import ResultStore
    from ecgbench.run.stored_cell import find_cell, load_stored_cell
    from ecgbench.run.tflite_export import TFLiteExportOptions, export_tflite, summary_text
    from ecgbench.train.tflite import require_tflite

    require_tflite()  # before reading anything: a missing extra is the likeliest problem
    for flag, value in (("--calibration-records", args.calibration_records), ("--check-records", args.check_records)):
        if value < 0:
            raise ConfigError(f"{flag} {value}: must be 0 or more")
    home = Path(os.environ.get("ECGBENCH_HOME", args.db.parent if args.db else default_home()))
    store = ResultStore.open_existing(args.db or default_home() / "results.sqlite")
    results = store.run_results(args.run)
    row = find_cell(results, args.cell)
    cell = load_stored_cell(row, home, process_registry())
    options = TFLiteExportOptions(
        out=args.out or home / "exports" / f"{row.cell_id[:12]}-{args.format}",
        input_s=args.input_s,
        calibration_records=args.calibration_records,
        calibration_percentile=args.calibration_percentile,
        activation_bits=int(args.activations.removeprefix("int")),
        check_records=args.check_records,
        check_split=args.check_split,
        c_name=args.c_name,
        tolerance_points=args.tolerance,
    )
    result = export_tflite(cell, options, run_id=results.run.run_id)
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else summary_text(result))
    return 0 if result["check"]["within_tolerance"] else 1
