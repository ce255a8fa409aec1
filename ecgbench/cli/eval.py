"""``ecgbench eval``: score exported models on a dataset, or a stored run's models on their own splits.

- ``eval MODEL... --data DIR [--dataset NAME --set KEY=VALUE | --dataset-file FILE]``:
  every record of the dataset, read with the same settings a suite's
  ``matrix.datasets`` item takes (:mod:`ecgbench.measure.model_eval`); a folder
  of models (the ``models`` reporter's) scores each; ``--out DIR`` writes a
  cross-dataset report (:mod:`ecgbench.results.cross_dataset`).
- ``eval --run RUN --split test``: exactly the records each cell of a stored run
  was tested on, scored as the cell was (:mod:`ecgbench.results.rescore`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ecgbench import CLASSES
from ecgbench.errors import ConfigError
from ecgbench.measure.schema import lookup

DEFAULT_DATASET = "cinc2017"


def register(subparsers) -> None:
    """Add the ``eval`` subcommand."""
    p = subparsers.add_parser("eval", help="score exported models on a dataset, or a stored run's models on their test split")
    p.add_argument("models", type=Path, nargs="*", metavar="MODEL", help="model files exported by ecgbench (.onnx, sparse/zlib/zstd) or folders of them")
    p.add_argument("--data", type=Path, help="dataset folder (the plugin's 'path'; with --run: where the run's dataset lies now)")
    p.add_argument("--dataset", help=f"dataset plugin that reads the folder (default {DEFAULT_DATASET}, or the --dataset-file's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a dataset setting, as in a suite, e.g. --set window_s=30 (repeatable; values read as YAML)")
    p.add_argument("--dataset-file", type=Path, metavar="FILE", help="YAML with one dataset entry as in a suite's matrix.datasets, e.g. suites/datasets/cpsc2021.yaml")
    p.add_argument("--labels", choices=("final", "v1"), help="CinC 2017 reference labels (default: the plugin's, final)")
    p.add_argument("--run", metavar="RUN", help="a stored run (id, id prefix, suite name) or its JSON report folder: score each cell's own split")
    p.add_argument("--split", choices=("test", "val", "train", "all"), default="test", help="with --run: the split to score (default test)")
    p.add_argument("--only", metavar="PATTERN", help="with --run: glob on dataset/model/pipeline/seedN, a pipeline label, or a cell id prefix")
    p.add_argument("--db", type=Path, help="with --run: result store (default $ECGBENCH_HOME/results.sqlite)")
    p.add_argument("--out", type=Path, help="write a cross-dataset report (report.md, report.json) of the models to this folder")
    p.add_argument("--cache-dir", type=Path, help="keep preprocessed records here (default: a temporary folder; with --run the run's cache)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads (default 0: onnxruntime chooses)")
    p.add_argument(
        "--on-bad-record",
        choices=("error", "skip"),
        default="error",
        help="a record that cannot be used stops eval (error, default) or is left out and counted (skip)",
    )
    add_window_arguments(p)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (one object; a list for several models or cells)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """Run ``ecgbench eval``."""
    if args.run:
        return _cmd_rescore(args)
    if not args.models:
        raise ConfigError("eval needs MODEL files (or a folder of them) and --data DIR, or --run RUN to score a stored run's test split")
    _refuse(args, {"--split": args.split != "test", "--only": args.only, "--db": args.db}, "they apply to --run")
    from ecgbench.measure.model_eval import evaluate_model_file
    from ecgbench.results.cross_dataset import cross_dataset_report, model_entries, write_cross_dataset_report

    dataset = dataset_from_args(args)
    entries = model_entries(args.models)
    with tempfile.TemporaryDirectory(prefix="ecgbench-eval-") as tmp:
        # The temporary cache outlives prediction: the loader memory-maps its files.
        cache = Path(args.cache_dir or tmp)
        windows = {"window_s": args.deploy_window_s, "hop_s": args.deploy_hop_s, "aggregate": args.aggregate}
        results = [evaluate_model_file(e.path, dataset, cache, args.threads, args.on_bad_record, windows=windows) for e in entries]
    label = args.dataset_file.stem if args.dataset_file else None  # cpsc2021, not the plugin's name wfdb
    written = write_cross_dataset_report(cross_dataset_report(entries, results, label), args.out) if args.out else []
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 and not args.models[0].is_dir() else results, indent=2, sort_keys=True))
    else:
        print("\n\n".join(summary_text(r) for r in results))
    for path in written:  # on stderr with --json, so stdout stays one JSON document
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def add_window_arguments(p) -> None:
    """``--deploy-window-s``, ``--deploy-hop-s``, ``--aggregate``: override the windowing in the model's metadata."""
    from ecgbench.measure.windowing import AGGREGATES, parse_window_arg

    p.add_argument("--deploy-window-s", type=parse_window_arg, metavar="S", help="score windows of S seconds aggregated per record, or 'whole' (default: the model's metadata, else whole records)")
    p.add_argument("--deploy-hop-s", type=float, metavar="S", help="seconds between window starts (default: the window)")
    p.add_argument("--aggregate", choices=AGGREGATES, help="how windows make the record's class (default: the model's metadata, else mean_prob)")


def dataset_from_args(args: argparse.Namespace):
    """The dataset plugin and settings of ``--dataset-file``, ``--dataset``, ``--set``, ``--labels`` and ``--data``."""
    from ecgbench.config.dataset_ref import dataset_ref, load_dataset_file, parse_assignments
    from ecgbench.registry import process_registry

    registry = process_registry()
    updates = parse_assignments(args.set)
    if args.dataset_file:
        ref = load_dataset_file(args.dataset_file)
        if args.dataset and args.dataset != ref.name:
            raise ConfigError(f"--dataset {args.dataset} disagrees with {args.dataset_file}, which names '{ref.name}'; drop one of them")
        name, params = ref.name, ref.params()
    else:
        name, params = args.dataset or DEFAULT_DATASET, {}
    cls = registry.get("datasets", name, "--dataset")
    _check_keys(updates, cls, name)
    if args.labels is not None:
        if "labels" not in cls.Config.model_fields:
            raise ConfigError(f"--labels applies to datasets with reference label versions (cinc2017); '{name}' has none")
        updates["labels"] = args.labels
    if args.data is not None:
        if "path" not in cls.Config.model_fields:
            raise ConfigError(f"--data: dataset '{name}' reads no folder (it has no 'path' setting); drop --data")
        updates["path"] = str(args.data.resolve())
    return dataset_ref(name, {**params, **updates}, f"--dataset {name}", registry)


def _check_keys(updates: dict[str, Any], cls, name: str) -> None:
    """Every ``--set`` key is a setting of the dataset plugin (else a ConfigError with a close match)."""
    import difflib

    known = list(cls.Config.model_fields)
    for key in updates:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else f"its settings: {', '.join(known)}"
            raise ConfigError(f"--set {key}=...: dataset '{name}' has no setting '{key}'; {fix}")


def _refuse(args, given: dict[str, Any], why: str) -> None:
    flags = [flag for flag, value in given.items() if value]
    if flags:
        raise ConfigError(f"{', '.join(flags)}: not used here ({why}); remove {'it' if len(flags) == 1 else 'them'}")


def _cmd_rescore(args: argparse.Namespace) -> int:
    """``eval --run RUN``: each cell's split, scored as the cell was."""
    from ecgbench.results.compare import load_results
    from ecgbench.results.rescore import rescore_run
    from ecgbench.run.runner import HOME_ENV, default_home

    _refuse(
        args,
        {"MODEL": args.models, "--dataset": args.dataset, "--set": args.set, "--dataset-file": args.dataset_file, "--labels": args.labels, "--out": args.out,
         "--deploy-window-s": args.deploy_window_s, "--deploy-hop-s": args.deploy_hop_s, "--aggregate": args.aggregate},
        "--run scores each cell's own model on its own dataset",
    )
    # The store and caches `ecgbench run` used: $ECGBENCH_HOME, else the folder of --db, else ./.ecgbench.
    home = default_home() if os.environ.get(HOME_ENV) or not args.db else args.db.parent
    results = load_results(args.run, args.db or default_home() / "results.sqlite")
    ref = Path(args.run)
    report_dir = ref if ref.is_dir() else ref.parent if ref.is_file() else None
    rescored = rescore_run(
        results, args.split, args.only, data_dir=args.data, cache_dir=args.cache_dir or home / "data", report_dir=report_dir
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in rescored], indent=2, sort_keys=True))
        return 0
    print(f"run {results.run.run_id}: {len(rescored)} cell(s) scored on their {args.split} split{'s' if args.split == 'all' else ''}")
    for r in rescored:
        row = r.to_dict()
        f1 = "  ".join(f"{name} {value:.3f}" for name, value in r.scores["f1"].items())
        stored = row["stored_challenge_f1"]
        check = "" if stored is None else f" (stored {stored:.3f}, {'identical' if row['matches_stored'] else 'DIFFERENT'})"
        print(f"  {r.cell.dataset}/{r.cell.model}/{r.cell.pipeline}/seed{r.cell.seed}: {r.scores['n_records']} records, "
              f"challenge F1 {r.scores['challenge_f1']:.3f}{check}; F1 {f1}")
    return 0


def summary_text(result: dict[str, Any]) -> str:
    """A few lines for people: score with interval, per-class F1, dataset settings, dropped pieces, size."""
    from ecgbench.measure.schema import stored_declarations
    from ecgbench.text import KB_NOTE, human_bytes

    lo, hi = result["challenge_f1_ci"]
    counts = result.get("class_counts") or {}
    absent = [name for name in CLASSES if counts and not counts.get(name)]
    per_class = "  ".join(f"{name} {'–' if name in absent else f'{value:.3f}'}" for name, value in result["f1"].items())
    plugin_lines = [f"{m.label}: {m.show(lookup(result, m.path))}" for m in stored_declarations([result])]
    lines = [
        f"{result['model']}: {result['n_records']} records of {result['data']} ({result['dataset']})",
        *_settings_text(result.get("dataset_settings")),
        f"challenge F1 (mean of N, A, O) {result['challenge_f1']:.3f}  [{result['ci_level']:.0%} CI {lo:.3f}-{hi:.3f}]"
        + (f"  ({_windows_text(result['windowing'])})" if result.get("windowing") else ""),
        f"F1 {per_class}  |  AF F1 {result['f1'].get('A', 0.0):.3f}  macro F1 {result['macro_f1']:.3f}  accuracy {result['accuracy']:.3f}",
    ]
    if absent:
        lines.append(f"absent from the data: {', '.join(absent)} (not scored; the challenge F1 counts an absent N, A or O as 0, AF F1 does not)")
    lines += [
        f"size: {human_bytes(result['storage_bytes'])} stored ({result['storage_format']}, the smallest lossless file; {KB_NOTE}); "
        f"{result['nonzero_params']:,} of {result['total_params']:,} parameters non-zero",
        *plugin_lines,
        *_dropped_text(result.get("dropped") or {}),
        *_skipped_text(result.get("skipped") or {}),
        *_own_dataset_text(result),
    ]
    return "\n".join(lines)


def _own_dataset_text(result: dict[str, Any]) -> list[str]:
    """A note when the model was trained on the dataset it is scored on: the folder may hold its training records."""
    trained_on = (result.get("exported") or {}).get("dataset")
    if trained_on != result.get("dataset"):
        return []
    return [
        f"note: this model was trained on {trained_on} records; if this folder holds them, its training and validation "
        "records are among those scored (--run RUN_OR_REPORT_FOLDER --split test scores only the records it was tested on)"
    ]


def _settings_text(settings: dict[str, Any] | None) -> list[str]:
    """The dataset plugin's settings, but the folder (on the line above) and unset ones."""
    if not settings:
        return []
    shown = {k: v for k, v in settings["settings"].items() if k != "path" and v is not None}
    return [f"dataset {settings['name']}: " + (", ".join(f"{k}={json.dumps(v)}" for k, v in shown.items()) or "default settings")]


def _dropped_text(dropped: dict[str, int]) -> list[str]:
    """One line counting what the dataset left out by design, by reason (e.g. windows crossing a rhythm change)."""
    if not dropped:
        return []
    return [f"dropped by the dataset's settings: {sum(dropped.values())} ({', '.join(f'{n} {reason}' for reason, n in dropped.items())})"]


def _skipped_text(skipped: dict[str, dict]) -> list[str]:
    """Lines naming the records ``--on-bad-record skip`` left out (none when nothing was skipped)."""
    from ecgbench.results.records import skipped_lines

    if not skipped:
        return []
    total = sum(e["count"] for e in skipped.values())
    return [f"skipped {total} record(s) (--on-bad-record skip):", *(f"  {line}" for line in skipped_lines(skipped))]


def _windows_text(windowing: dict[str, Any]) -> str:
    from ecgbench.measure.windowing import Windowing

    return "record class from " + Windowing(windowing["window_s"], windowing["hop_s"], windowing["aggregate"]).describe()
