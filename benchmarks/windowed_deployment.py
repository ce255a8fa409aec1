"""Windowed deployment of the published CinC 2017 models, without retraining: reports/windowed-deployment.md.

    OMP_NUM_THREADS=1 python benchmarks/windowed_deployment.py [--data-dir DIR] [--home DIR] [--windows 10 5]
        [--suite suites/cinc2017-cpu-v2.yaml --report reports/cinc2017-cpu-v2 --out reports/windowed-deployment-v2.md]

Rebuilds the test split of ``--suite`` (default ``suites/cinc2017-cpu.yaml``) through
the library (same dataset, data settings and split seed as the suite; ``--data-dir``
defaults to $ECGBENCH_CINC2017_DIR, else ../shared/data/cinc2017), checks that each
published model in ``--report``'s ``models/`` (default ``reports/cinc2017-cpu``) scores
its published whole-record test F1 on it, then scores every model on whole records
and on windows of each ``--windows`` length (side by side, mean probability over a record's windows:
:mod:`ecgbench.measure.windowing`), with a paired bootstrap 95% interval of
its ΔF1 against the dense model at the same window. Each model is simulated for
one window (one 30-s record when whole) on ``nrf52840`` and ``implant_m0plus``:
latency and energy per window and per 30-s record, peak RAM, flash bytes in the
form TFLite Micro + CMSIS-NN executes, and whether flash and peak RAM fit.

The test split is only scored and reported here: nothing is chosen on it.
Inference only, one thread: a few minutes (plus a first preprocessing of the
records into ``--home``, default $ECGBENCH_HOME or .ecgbench).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "suites" / "cinc2017-cpu.yaml"
REPORT = REPO / "reports" / "cinc2017-cpu"  # its models/ (index.json) and results.json
OUT = REPO / "reports" / "windowed-deployment.md"
DEVICES = ("nrf52840", "implant_m0plus")
RECORD_S = 30.0  # per-record figures: a 30-s record, as the suite's measure.input_s
BUDGET_POINTS = 1.0


@dataclass
class Row:
    pipeline: str
    window: str  # "whole" or "10 s"
    f1: float
    delta: float  # points against dense at the same window
    ci: tuple[float, float]  # points
    windows: int  # model runs per 30-s record
    devices: dict  # name -> figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ECGBENCH_CINC2017_DIR", REPO.parent / "shared" / "data" / "cinc2017")))
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("ECGBENCH_HOME", ".ecgbench")), help="data cache root (its data/ folder)")
    parser.add_argument("--windows", type=float, nargs="+", default=[10.0, 5.0], help="deploy windows in seconds (default 10 5)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--suite", type=Path, default=SUITE, help="the suite the published models were made by (its data settings and split)")
    parser.add_argument("--report", type=Path, default=REPORT, help="published report folder: its models/ and results.json")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    test, fs_hz = test_split(args.suite, args.data_dir, args.home)
    models = published_models(args.report / "models")
    published = published_f1(args.report / "results.json")
    print(f"test split: {len(test)} records at {fs_hz:g} Hz; {len(models)} published models", file=sys.stderr)

    settings: list[tuple[str, object]] = [("whole", None)] + [(f"{w:g} s", windowing_of(w)) for w in args.windows]
    predictions = {label: {name: predict(onnx, test, fs_hz, w) for name, onnx in models.items()} for label, w in settings}
    checks = {name: (float(challenge(test.labels, predictions["whole"][name])), published.get(name)) for name in models}
    mismatched = [n for n, (ours, theirs) in checks.items() if theirs is None or abs(ours - theirs) > 1e-9]
    if mismatched:
        print(f"warning: whole-record F1 differs from the published figure for {mismatched}", file=sys.stderr)

    rows = []
    for label, w in settings:
        dense = predictions[label]["dense"]
        for name, onnx in models.items():
            pred = predictions[label][name]
            f1, dense_f1 = challenge(test.labels, pred), challenge(test.labels, dense)
            lo, hi = paired_ci(test.labels, pred, dense, args.resamples)
            seconds = w.window_s if w is not None else RECORD_S
            windows = w.windows_in(RECORD_S, fs_hz) if w is not None else 1
            rows.append(Row(name, label, f1, (f1 - dense_f1) * 100, (lo * 100, hi * 100), windows, simulate_on_devices(onnx, seconds, fs_hz)))
    args.out.write_text(render(rows, checks, mismatched, len(test), args, time.perf_counter() - start))
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


def registry():
    from ecgbench.plugin_manager import make_plugin_manager
    from ecgbench.registry import build_registry

    return build_registry(make_plugin_manager())


def test_split(suite_path: Path, data_dir: Path, home: Path):
    """The suite's test records, preprocessed and split exactly as its cells were (same dataset, data config, seed)."""
    from ecgbench.config.suite import load_suite
    from ecgbench.data.loader import load_splits

    reg = registry()
    suite = load_suite(suite_path, reg, {"cinc2017": {"path": str(data_dir.resolve())}})
    (dataset,) = suite.datasets
    splits = load_splits(reg.get("datasets", dataset.name)(dataset.config), suite.data, home / "data")
    return splits.test, splits.fs_hz


def published_models(models: Path) -> dict[str, bytes]:
    """Pipeline -> ONNX bytes of every model ``models/index.json`` lists."""
    from ecgbench.measure.sizing import load_any

    index = json.loads((models / "index.json").read_text())
    return {entry["pipeline"]: load_any((models / entry["file"]).read_bytes()) for entry in index["models"]}


def published_f1(results: Path) -> dict[str, float]:
    cells = json.loads(results.read_text())["cells"]
    return {c["pipeline"]: c["metrics"]["test"]["challenge_f1"] for c in cells if c.get("metrics")}


def windowing_of(window_s: float):
    from ecgbench.measure.windowing import Windowing

    return Windowing(window_s, window_s, "mean_prob")


def predict(onnx: bytes, test, fs_hz: float, windowing) -> np.ndarray:
    """Record classes: whole records (as the suite scored them), or windows aggregated per record."""
    from ecgbench.measure.windowing import onnx_session, predict_windowed
    from ecgbench.train.trainer import length_buckets

    session = onnx_session(onnx, threads=1)
    if windowing is not None:
        probs, _ = predict_windowed(session, test, windowing, fs_hz)
        return probs.argmax(axis=1)
    name = session.get_inputs()[0].name
    out = np.zeros(len(test), dtype=np.int64)
    for idx, x in length_buckets(test, 64):
        out[idx] = session.run(None, {name: x})[0].argmax(axis=1)
    return out


def challenge(labels, pred) -> float:
    from ecgbench.measure.scores import challenge_f1

    return challenge_f1(labels, pred)


def paired_ci(labels, pred, dense, resamples: int) -> tuple[float, float]:
    from ecgbench.measure.scores import bootstrap_delta_ci

    return bootstrap_delta_ci(labels, pred, dense, resamples, seed=0, level=0.95)


def simulate_on_devices(onnx: bytes, seconds: float, fs_hz: float) -> dict:
    """Figures of one inference of ``seconds`` of ECG on each device (flash: the runtime's executable form)."""
    from ecgbench.measure.flash import flash_figure
    from ecgbench.measure.onnx_graph import analyze_onnx
    from ecgbench.measure.onnx_model import OnnxModel
    from ecgbench.measure.simulator import simulate

    reg = registry()
    graph = analyze_onnx(onnx, input_shape=(1, 1, int(round(seconds * fs_hz))))
    model = OnnxModel(onnx)
    out = {}
    for name in DEVICES:
        profile = reg.get("devices", name)
        flash = flash_figure(model, profile.sparse_layouts, profile.runtime)
        p = simulate(graph, profile, flash=flash)
        out[name] = {
            "latency_ms": p.latency_ms, "energy_mj": p.energy_mj, "peak_ram_bytes": p.peak_ram_bytes,
            "ram_capacity_bytes": p.ram_capacity_bytes, "flash_bytes": p.flash_bytes, "flash_capacity_bytes": p.flash_capacity_bytes,
            "flash_format": flash.format, "runtime": flash.runtime, "fits": p.fits, "why": p.why, "notes": list(p.notes),
        }
    return out


# --- the report ----------------------------------------------------------------------------
def kb(n: float) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1024**2 else f"{n / 1024**2:.2f} MiB"  # binary units, as the datasheets state capacities


def fits_text(figures: dict) -> str:
    if figures["fits"]:
        return "yes"
    short = []
    if figures["flash_bytes"] > figures["flash_capacity_bytes"]:
        short.append("flash")
    if figures["peak_ram_bytes"] > figures["ram_capacity_bytes"]:
        short.append("RAM")
    return "no (" + " + ".join(short) + ")"


def render(rows: list[Row], checks: dict, mismatched: list[str], n_test: int, args, seconds: float) -> str:
    nrf, imp = DEVICES
    windows = list(dict.fromkeys(r.window for r in rows))
    lines = [
        "# Windowed deployment of the published CinC 2017 models",
        "",
        f"- regenerate: `OMP_NUM_THREADS=1 python benchmarks/windowed_deployment.py --windows {' '.join(f'{w:g}' for w in args.windows)}{_paths_text(args)}`",
        f"- models: the {len(checks)} published models of `{_rel(args.report)}/models/` (suite `{_rel(args.suite)}`, 100 Hz, "
        "trained on random 15-s crops), not retrained",
        f"- records: the suite's test split rebuilt through the library ({n_test} records; same dataset, data settings and split seed). "
        + ("Every model's whole-record test F1 here equals its published figure exactly, so the split and preprocessing are the suite's."
           if not mismatched else f"Whole-record F1 differs from the published figure for {', '.join(mismatched)}: read the figures with care."),
        "- windows: side by side (hop = window), the final partial window dropped, a record shorter than a window zero-padded to one window; "
        "the record's class is the argmax of the mean window probability (`mean_prob`); `ecgbench.measure.windowing`",
        "- ΔF1: record-level challenge F1 minus the dense model's at the same window, in points, with a paired bootstrap 95% interval "
        f"({args.resamples} resamples of the test records, both models scored on each resample)",
        f"- devices: simulated (`ecgbench.measure.simulator`, not measured on boards) for one inference of the window ({RECORD_S:g} s when whole); "
        f"per record = per window x windows in a {RECORD_S:g}-s record. Peak RAM is per window (activations, the window's input "
        "and scratch; not the runtime, nor a second buffer filling with the next window while one is classified: 4 bytes a sample); "
        "flash is the form TFLite Micro + CMSIS-NN executes in place (dense fp32 or int8; neither device has sparse kernels). "
        f"Fits = flash and peak RAM within the device's ({nrf}: 1 MiB flash, 256 KiB RAM; {imp}: 256 KiB flash, 32 KiB RAM)",
        f"- run time {seconds:.0f} s on one thread",
        "",
        "| pipeline | window | record F1 | ΔF1 to dense [95% CI] | windows / 30 s | peak RAM | flash | "
        f"{nrf} ms/window | {nrf} ms/record | {nrf} mJ/window | {nrf} mJ/record | {imp} ms/record | {imp} mJ/record | fits {nrf} | fits {imp} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for window in windows:
        for r in (r for r in rows if r.window == window):
            a, b = r.devices[nrf], r.devices[imp]
            delta = "0 (reference)" if r.pipeline == "dense" else f"{r.delta:+.2f} [{r.ci[0]:+.2f}, {r.ci[1]:+.2f}]"
            lines.append(
                f"| {r.pipeline} | {r.window} | {r.f1:.3f} | {delta} | {r.windows} | {kb(a['peak_ram_bytes'])} | "
                f"{kb(a['flash_bytes'])} ({a['flash_format']}) | {a['latency_ms']:.0f} | {a['latency_ms'] * r.windows:.0f} | "
                f"{a['energy_mj']:.2f} | {a['energy_mj'] * r.windows:.2f} | {b['latency_ms'] * r.windows:.0f} | {b['energy_mj'] * r.windows:.2f} | "
                f"{fits_text(a)} | {fits_text(b)} |"
            )
    lines += ["", "## Which pipelines fit, within 1 point of dense", ""]
    lines += verdict(rows)
    return "\n".join(lines) + "\n"


def _rel(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _paths_text(args) -> str:
    """The non-default ``--suite``/``--report``/``--out`` of a run, for its regenerate line."""
    given = (("--suite", args.suite, SUITE), ("--report", args.report, REPORT), ("--out", args.out, OUT))
    return "".join(f" {flag} {_rel(value)}" for flag, value, default in given if value.resolve() != default.resolve())


def verdict(rows: list[Row]) -> list[str]:
    """One plain statement per device: pipelines that fit and are at most BUDGET_POINTS below dense at the same window."""
    out = []
    dense_by_window = {r.window: r for r in rows if r.pipeline == "dense"}
    whole_f1 = dense_by_window["whole"].f1
    for device in DEVICES:
        fitting = [r for r in rows if r.devices[device]["fits"]]
        runnable = [r for r in fitting if not r.devices[device]["notes"]]
        good = [r for r in runnable if r.delta >= -BUDGET_POINTS]
        if good:
            names = "; ".join(
                f"{r.pipeline} at {r.window} (F1 {r.f1:.3f}, ΔF1 {r.delta:+.2f} [{r.ci[0]:+.2f}, {r.ci[1]:+.2f}], "
                f"{(r.f1 - whole_f1) * 100:+.2f} against whole-record dense; peak RAM {kb(r.devices[device]['peak_ram_bytes'])}, "
                f"flash {kb(r.devices[device]['flash_bytes'])})"
                for r in good
            )
            out.append(f"- **{device}**: {names}.")
            near_whole = [f"{r.pipeline} at {r.window}" for r in good if r.f1 >= whole_f1 - BUDGET_POINTS / 100]
            sure = [f"{r.pipeline} at {r.window}" for r in good if r.ci[0] >= -BUDGET_POINTS]
            out.append(f"  Of these, within {BUDGET_POINTS:g} point of the whole-record dense F1 ({whole_f1:.3f}): {', '.join(near_whole) or 'none'}.")
            out.append(f"  Of these, with the 95% interval of ΔF1 wholly above -{BUDGET_POINTS:g} point: {', '.join(sure) or 'none'}.")
        else:
            candidates = [r for r in rows if not r.devices[device]["notes"]] or rows
            smallest_ram = min(candidates, key=lambda r: r.devices[device]["peak_ram_bytes"])
            smallest_flash = min(candidates, key=lambda r: r.devices[device]["flash_bytes"])
            why = (
                f"the models that fit ({', '.join(f'{r.pipeline} at {r.window}' for r in runnable)}) lose more than {BUDGET_POINTS:g} point"
                if runnable else
                f"none fits at any window: the smallest peak RAM is {kb(smallest_ram.devices[device]['peak_ram_bytes'])} "
                f"({smallest_ram.pipeline} at {smallest_ram.window}) against {kb(smallest_ram.devices[device]['ram_capacity_bytes'])}, "
                f"and the smallest flash {kb(smallest_flash.devices[device]['flash_bytes'])} ({smallest_flash.pipeline}) "
                f"against {kb(smallest_flash.devices[device]['flash_capacity_bytes'])}: hannun34 at width 8 has 0.66 M weights, "
                "and pruning without sparse kernels saves no flash"
            )
            out.append(f"- **{device}**: none; {why}.")
        unrunnable = sorted({r.pipeline for r in fitting if r.devices[device]["notes"]})
        if unrunnable:
            out.append(
                f"  Left out although its memory fits: {', '.join(unrunnable)} (dynamic quantization, ConvInteger/MatMulInteger: "
                "TFLite Micro and CMSIS-NN have no such kernels; the simulator costs it at static int8 rates)."
            )
    changes = ", ".join(f"{r.f1:.3f} at {w}" for w, r in dense_by_window.items() if w != "whole")
    out += ["", f"The dense model itself scores {whole_f1:.3f} on whole records and {changes}."]
    lost = [w for w, r in dense_by_window.items() if w != "whole" and r.f1 < whole_f1 - BUDGET_POINTS / 100]
    if lost:
        out.append(
            f"At {', '.join(lost)} the windows are well short of the 15-s training crops and the dense model already loses more "
            f"than {BUDGET_POINTS:g} point, so a pipeline close to dense at that window is not close to the whole-record figure."
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
