"""The md, csv, json and html reporters on a hand-made store, and the shared table helpers."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest

from ecgbench.errors import ConfigError
from ecgbench.run.store import ResultStore
from ecgbench.results import table as _table
from ecgbench_plugins.reporters.html import HtmlReporter
from ecgbench_plugins.reporters.markdown import MarkdownReporter, markdown_table
from ecgbench_plugins.reporters.tabular import CsvReporter, JsonReporter

VERSION = "0.1.0"


def cell_metrics(f1, ci, delta, ratio, storage, fmt, reduction, host_ms, nrf_ms, nrf_mj, fits, synthetic=True, steps=(), delta_ci=None):
    """A done cell's metrics in the schema of ecgbench.measure.artifact plus cell.run_cell's sections (``delta_ci``: absent as in older stores)."""
    metrics = {
        "val": {"challenge_f1": f1 + 0.01, "f1": {"N": 0.9, "A": 0.7, "O": 0.6, "~": 0.3}, "n_records": 40},
        "test": {"challenge_f1": f1, "f1": {"N": 0.9, "A": 0.7, "O": 0.6, "~": 0.3}, "af_f1": 0.7, "challenge_f1_ci": list(ci), "n_records": 50,
                 "confusion": [[10, 0, 0, 0], [0, 5, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]]},
        "size": {"onnx": 40000, "sparse": storage + 500, "storage_bytes": storage, "storage_format": fmt,
                 "total_params": 10000, "nonzero_params": int(10000 / ratio), "compression_ratio": ratio, "size_reduction": reduction},
        "compute": {"macs": 1_000_000, "effective_macs": 1_000_000, "per_layer": [{"name": "conv1", "macs": 1_000_000}]},
        "latency": {"host_median_ms": host_ms, "host_p95_ms": host_ms * 1.2, "threads": 1, "repeats": 30, "host_vs_dense": host_ms / 2.0},
        "devices": {"nrf52840": {"latency_ms": nrf_ms, "energy_mj": nrf_mj, "energy_per_day_j": nrf_mj * 0.288,
                                 "peak_ram_bytes": 20000, "flash_bytes": 40000, "flash_format": "fp32", "flash_runtime": "TFLite Micro + CMSIS-NN",
                                 "flash_source": "runtime", "fits": fits, "why": "" if fits else "flash 40000 B > 1 MB"}},
        "delta_f1_points": delta,
        "compression": {"steps": list(steps), "precision": "fp32"},
        "baseline": {"val_challenge_f1": 0.82, "test_challenge_f1": 0.8},
        "data": {"dataset": "synthetic", "synthetic": synthetic},
    }
    if delta_ci is not None:
        metrics["delta_f1_ci_points"] = list(delta_ci)
    return metrics


LTH_ROUNDS = [
    {"round": 1, "rate": 0.2, "sparsity": 0.2, "val_challenge_f1": 0.815, "accepted": True, "seconds": 1.0},
    {"round": 2, "rate": 0.2, "sparsity": 0.36, "val_challenge_f1": 0.70, "accepted": False, "seconds": 1.0},
    {"round": 3, "rate": 0.1, "sparsity": 0.28, "val_challenge_f1": 0.812, "accepted": True, "seconds": 1.0},
]

# (pipeline, seed, status, metrics, error)
CELLS = [
    ("dense", 0, "done", cell_metrics(0.8, (0.75, 0.85), 0.0, 1.0, 40000, "onnx", 1.0, 2.0, 1500.0, 15.0, False), None),
    ("magnitude-80", 0, "done", cell_metrics(0.79, (0.74, 0.84), -1.0, 5.0, 12000, "sparse_zstd", 3.3, 2.0, 1500.0, 15.0, True), None),
    ("magnitude-80", 1, "done", cell_metrics(0.81, (0.76, 0.86), -0.5, 5.0, 13000, "sparse_zstd", 3.1, 2.2, 1500.0, 15.0, True), None),
    (
        "lth_ecg",
        0,
        "done",
        cell_metrics(0.805, (0.75, 0.86), 0.5, 1 / 0.72, 30000, "sparse_zlib", 1.3, 2.0, 1500.0, 15.0, True,
                     steps=[{"name": "lth_ecg", "params": {}, "seconds": 3.0, "record": {"min_val_challenge_f1": 0.81, "rounds": LTH_ROUNDS}}],
                     delta_ci=(-0.7, 1.8)),
        None,
    ),
    ("int8", 0, "failed", {}, "Traceback (most recent call last):\n  File \"x.py\", line 1\nCompressionError: int8_static needs calibration data\n"),
]


def make_store(tmp_path, cells=CELLS, suite_name="quick", prefix="c"):
    """A store holding one finished run of ``cells``; returns (store, run_id)."""
    store = ResultStore(tmp_path / "r.sqlite")
    suite = {"name": suite_name, "matrix": {"devices": ["nrf52840"]}}
    run_id = store.start_run(suite_name, f"suites/{suite_name}.yaml", suite, VERSION)
    for position, (pipeline, seed, status, metrics, error) in enumerate(cells):
        cell_id = f"{prefix}{position}"
        labels = {"dataset": "synthetic", "model": "hannun34", "pipeline": pipeline, "seed": seed}
        config = {"synthetic": True, "measure": {"ci_level": 0.95}, "devices": ["nrf52840"]}
        store.mark_running(run_id, position, cell_id, labels, config, VERSION)
        store.finish_cell(run_id, cell_id, status, metrics, {"total_s": 1.5}, {}, error)
    store.finish_run(run_id, "failed", {"done": 4, "failed": 1})
    return store, run_id


@pytest.fixture
def results(tmp_path):
    store, run_id = make_store(tmp_path)
    return store.run_results(run_id)


def row_of(table, pipeline):
    return dict(zip(table.headers, next(r for r in table.rows if r[0] == pipeline)))


def test_summary_table_values_match_the_stored_metrics(results):
    table = _table.summary_table(results)
    assert table.headers == [
        "pipeline", "test challenge F1 [95% CI]", "ΔF1 pts [95% CI]", "compression ratio", "storage", "size reduction", "measured host ms",
        "host vs dense", "nrf52840 sim ms", "nrf52840 mJ", "flash on nrf52840", "nrf52840 fits",
    ]
    assert [r[0] for r in table.rows] == ["dense", "magnitude-80", "lth_ecg", "int8"]
    assert list(row_of(table, "dense").values()) == [
        "dense", "0.800 [0.750, 0.850]", "+0.00", "1.0x", "40.0 kB (onnx)", "1.0x", "2.00", "1.00x", "1500", "15.0",
        "40.0 kB (fp32, TFLite Micro + CMSIS-NN)", "no",
    ]
    lth = row_of(table, "lth_ecg")
    assert lth["compression ratio"] == "1.4x" and lth["storage"] == "30.0 kB (sparse_zlib)"
    assert lth["ΔF1 pts [95% CI]"] == "+0.50 [-0.70, +1.80]"  # the stored paired interval
    failed = row_of(table, "int8")
    assert failed["test challenge F1 [95% CI]"] == "failed" and failed["storage"] == "-" and failed["flash on nrf52840"] == "-"


@pytest.mark.parametrize("budget, winner, over", [(1.0, "magnitude-80", []), (0.5, "lth_ecg", ["magnitude-80"])])
def test_f1_budget_marks_the_over_budget_and_bolds_the_winners(results, budget, winner, over):
    table = _table.summary_table(results, devices=[], f1_budget_points=budget)
    assert table.headers[-1] == "host vs dense"  # no device columns
    names = [r[0] for r in table.rows]
    assert [n[: -len(" (over budget)")] for n in names if n.endswith(" (over budget)")] == over
    assert "int8" in names  # a failed pipeline has no ΔF1: never marked
    ratio_col, bytes_col = table.headers.index("compression ratio"), table.headers.index("storage")
    assert table.strong == {(names.index(winner), ratio_col), (names.index(winner), bytes_col)}
    report = MarkdownReporter.from_params({"f1_budget_points": budget, "devices": []}).render(results, Path("."))
    expected_bytes = {"magnitude-80": "12.5 kB", "lth_ecg": "30.0 kB"}[winner]
    assert f"smallest stored model: {winner} ({expected_bytes})" in report
    assert f"largest compression ratio: {winner} (" in report


def test_rows_stored_by_an_older_version_read_with_storage_keys(tmp_path):
    """Before storage and flash bytes were told apart, 'deployable' held the compressed file, also used as flash."""
    old = cell_metrics(0.8, (0.75, 0.85), 0.0, 1.0, 12000, "sparse_zstd", 1.0, 2.0, 1500.0, 15.0, True)
    size = old["size"]
    size["deployable_bytes"], size["deployable_format"] = size.pop("storage_bytes"), size.pop("storage_format")
    for key in ("flash_format", "flash_runtime"):
        del old["devices"]["nrf52840"][key]
    old["devices"]["nrf52840"].update(flash_bytes=12000, flash_source="deployable")
    store, run_id = make_store(tmp_path, [("magnitude-95", 0, "done", old, None)])
    results = store.run_results(run_id)
    assert results.cells[0].metrics["devices"]["nrf52840"]["legacy_storage_flash_bytes"] == 12000
    row = row_of(_table.summary_table(results), "magnitude-95")
    assert row["storage"] == "12.0 kB (sparse_zstd)"
    assert row["flash on nrf52840"] == "-" and row["nrf52840 fits"] == "-"  # the compressed file never counts as flash


def test_unknown_device_column_is_a_clear_error(results):
    with pytest.raises(ConfigError, match="nrf5284 not among the run's devices \\(nrf52840\\)"):
        _table.summary_table(results, devices=["nrf5284"])


def test_several_seeds_are_mean_and_sample_std(results):
    mag = row_of(_table.summary_table(results), "magnitude-80")
    # F1 0.79, 0.81: mean 0.800, sample std sqrt(2 * 0.01**2 / 1) = 0.01414
    assert mag["test challenge F1 [95% CI]"] == "0.800 ± 0.014 (2 seeds)"
    # delta -1.0, -0.5: mean -0.75, std 0.3536; bytes 12000, 13000: mean 12.5 kB, std 707 B
    assert mag["ΔF1 pts [95% CI]"] == "-0.75 ± 0.35 (2 seeds)"
    assert mag["storage"] == "12.5 kB ± 707 B (sparse_zstd)"
    assert mag["flash on nrf52840"] == "40.0 kB (fp32, TFLite Micro + CMSIS-NN)"  # pruned fp32 weights run dense
    assert mag["measured host ms"] == "2.10 ± 0.14" and mag["nrf52840 fits"] == "yes"
    assert mag["host vs dense"] == "1.05x ± 0.07x"


def test_pareto_front_of_a_hand_made_set():
    points = [
        (10.0, 0.80),  # 0: front (smallest)
        (20.0, 0.85),  # 1: front
        (20.0, 0.84),  # 2: dominated by 1 (same bytes, lower F1)
        (30.0, 0.83),  # 3: dominated by 1
        (40.0, 0.90),  # 4: front
        (40.0, 0.90),  # 5: equal to 4: both on the front
        (5.0, float("nan")),  # 6: no F1, never on the front
        (50.0, 0.95),  # 7: front (best F1)
    ]
    assert _table.pareto_front(points) == [0, 1, 4, 5, 7]
    assert _table.pareto_front([]) == []


def test_tradeoff_points_flag_the_front(results):
    points = {p["pipeline"]: p for p in _table.tradeoff_points(results, "size.storage_bytes")}
    assert set(points) == {"dense", "magnitude-80", "lth_ecg"}  # the failed pipeline has no point
    assert points["magnitude-80"]["x"] == 12500 and points["magnitude-80"]["f1"] == pytest.approx(0.8)
    # magnitude (12.5 kB, 0.800) and lth_ecg (30 kB, 0.805) are on the front; dense (40 kB, 0.800) is dominated.
    assert {name: p["pareto"] for name, p in points.items()} == {"dense": False, "magnitude-80": True, "lth_ecg": True}


def test_markdown_report(results, tmp_path):
    [path] = MarkdownReporter().write(results, tmp_path / "out")
    text = path.read_text()
    assert path.name == "report.md"
    assert "> **Warning: synthetic data: not clinical results" in text
    assert f"`ecgbench report {results.run.run_id} --format md --out {tmp_path / 'out'} --db {results.store_path}`" in text
    assert "- suite: quick (suites/quick.yaml)" in text and f"- ecgbench: {VERSION}" in text
    assert "- dense test challenge F1: 0.800" in text  # what every ΔF1 is measured from
    # The key columns only: pipeline, ΔF1 with its interval, compression, the first device's flash bytes, latency and fit.
    assert "| pipeline | ΔF1 pts [95% CI] | compression ratio | flash on nrf52840 | nrf52840 sim ms | nrf52840 fits |" in text
    assert "|---|---:|---:|---:|---:|---|" in text
    assert "| dense | +0.00 | 1.0x | 40.0 kB (fp32, TFLite Micro + CMSIS-NN) | 1500 | no |" in text
    assert "| lth_ecg | +0.50 [-0.70, +1.80] | 1.4x | 40.0 kB (fp32, TFLite Micro + CMSIS-NN) | 1500 | yes |" in text
    assert "`--set md.columns=all` puts every column here" in text
    assert "- **flash on <device>**: bytes of the model's weights in the form the device's runtime executes in place" in text
    assert "- `synthetic/hannun34/int8/seed0`: CompressionError: int8_static needs calibration data" in text
    assert "non-zero parameters of the dense baseline / non-zero parameters" in text
    assert "mean F1 of the classes N (normal)" not in text and "measured host ms" not in text  # defined where shown


def test_markdown_has_no_warning_on_real_data(tmp_path):
    real = [(p, s, st, {**m, "data": {"synthetic": False}} if m else m, e) for p, s, st, m, e in CELLS]
    store, run_id = make_store(tmp_path, real)
    results = store.run_results(run_id)
    for cell in results.cells:
        cell.config["synthetic"] = False
    assert _table.synthetic_warning(results) is None
    assert "synthetic" not in markdown_table(_table.summary_table(results))


def test_markdown_escapes_pipes():
    table = _table.Table(["a|b"], [["x|y"]], [False])
    assert markdown_table(table) == "| a\\|b |\n|---|\n| x\\|y |"


def test_csv_round_trips_the_stored_values(results, tmp_path):
    [path] = CsvReporter().write(results, tmp_path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["pipeline"] for r in rows] == ["dense", "magnitude-80", "magnitude-80", "lth_ecg", "int8"]
    for row, cell in zip(rows, results.cells):
        if cell.status != "done":
            assert row["status"] == "failed" and row["error_line"] == "CompressionError: int8_static needs calibration data"
            assert row["test.challenge_f1"] == ""
            continue
        assert float(row["test.challenge_f1"]) == cell.metrics["test"]["challenge_f1"]
        assert float(row["size.compression_ratio"]) == cell.metrics["size"]["compression_ratio"]  # 1/0.72 exactly
        assert float(row["devices.nrf52840.latency_ms"]) == cell.metrics["devices"]["nrf52840"]["latency_ms"]
        assert json.loads(row["devices.nrf52840.fits"]) is cell.metrics["devices"]["nrf52840"]["fits"]
        assert json.loads(row["test.challenge_f1_ci"]) == cell.metrics["test"]["challenge_f1_ci"]
        assert int(row["seed"]) == cell.seed and float(row["timings.total_s"]) == 1.5
    assert "compute.per_layer" not in rows[0] and "compute.macs" in rows[0]


def test_json_keeps_run_metadata_rows_and_nested_metrics(results, tmp_path):
    [path] = JsonReporter().write(results, tmp_path)
    doc = json.loads(path.read_text())
    assert doc["run"]["run_id"] == results.run.run_id and doc["run"]["suite_name"] == "quick"
    assert doc["run"]["ecgbench_version"] == VERSION
    assert [c["metrics"] for c in doc["cells"]] == [c.metrics for c in results.cells]
    assert doc["rows"][3]["compression.steps"][0]["record"]["rounds"] == LTH_ROUNDS
    assert doc["rows"][1]["devices.nrf52840.energy_mj"] == 15.0 and doc["rows"][4]["status"] == "failed"


def two_device_cells():
    """CELLS with a second device, stm32h7, on which only the dense model is too slow to matter and every model fits."""
    out = []
    for pipeline, seed, status, metrics, error in CELLS:
        if metrics:
            nrf = metrics["devices"]["nrf52840"]
            metrics = {**metrics, "devices": {**metrics["devices"], "stm32h7": {**nrf, "latency_ms": nrf["latency_ms"] / 10, "fits": True}}}
        out.append((pipeline, seed, status, metrics, error))
    return out


@pytest.fixture
def two_devices(tmp_path):
    store, run_id = make_store(tmp_path, two_device_cells())
    results = store.run_results(run_id)
    results.run.suite["matrix"]["devices"] = ["stm32h7", "nrf52840"]  # the suite's order decides the default device
    return results


def header(report: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith("| pipeline"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_md_key_columns_show_the_suites_first_device_or_the_chosen_one(two_devices):
    assert header(MarkdownReporter().render(two_devices, Path(".")))[-2:] == ["stm32h7 sim ms", "stm32h7 fits"]
    chosen = MarkdownReporter.from_params({"devices": ["nrf52840"]}).render(two_devices, Path("."))
    assert header(chosen)[-2:] == ["nrf52840 sim ms", "nrf52840 fits"]
    both = header(MarkdownReporter.from_params({"devices": ["nrf52840", "stm32h7"]}).render(two_devices, Path(".")))
    assert both[3:] == ["flash on nrf52840", "nrf52840 sim ms", "nrf52840 fits", "flash on stm32h7", "stm32h7 sim ms", "stm32h7 fits"]  # device by device


def test_md_key_columns_are_declared_in_one_place(two_devices, monkeypatch):
    from ecgbench.measure import builtin_metrics

    monkeypatch.setattr(builtin_metrics, "KEY_COLUMNS", ("size.nonzero_params", "devices.{device}.energy_mj"))
    assert header(MarkdownReporter().render(two_devices, Path("."))) == ["pipeline", "non-zero parameters", "stm32h7 mJ"]


def test_md_all_columns_is_the_full_summary_table(results):
    text = MarkdownReporter.from_params({"columns": "all"}).render(results, Path("."))
    assert (
        "| dense | 0.800 [0.750, 0.850] | +0.00 | 1.0x | 40.0 kB (onnx) | 1.0x | 2.00 | 1.00x | 1500 | 15.0 | "
        "40.0 kB (fp32, TFLite Micro + CMSIS-NN) | no |"
    ) in text
    assert "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|" in text
    assert "- **storage**: bytes of the smallest lossless file" in text
    assert "mean F1 of the classes N (normal), A (atrial fibrillation) and O" in text
    assert "puts every column here" not in text


def test_md_columns_as_a_list_of_metric_paths(two_devices):
    reporter = MarkdownReporter.from_params({"columns": ["test.af_f1", "devices.{device}.fits", "devices.nrf52840.latency_ms", "delta_f1_points"]})
    text = reporter.render(two_devices, Path("."))
    assert header(text) == ["pipeline", "test AF F1", "stm32h7 fits", "nrf52840 fits", "nrf52840 sim ms", "ΔF1 pts [95% CI]"]
    assert "| magnitude-80 | 0.700 | yes | yes | 1500 | -0.75 ± 0.35 (2 seeds) |" in text
    assert f"--set 'md.columns=[\"test.af_f1\"" in text  # the regenerate command repeats the setting


def test_md_unknown_column_is_a_clear_error(results):
    with pytest.raises(ConfigError, match=r"report setting md.columns: no metric 'test.f1' in this run; give key, all or a list of metric paths \(test.challenge_f1, "):
        MarkdownReporter.from_params({"columns": ["test.f1"]}).render(results, Path("."))
    with pytest.raises(ConfigError):
        MarkdownReporter.from_params({"columns": "some"})


def test_html_loads_only_its_plotly_bundle_from_beside_it(results, tmp_path):
    from ecgbench_plugins.reporters import plots

    page, script = HtmlReporter().write(results, tmp_path)
    text = page.read_text()
    assert script == tmp_path / "plotly.min.js" and script.read_text() == plots.plotly_js()
    assert not re.search(r"https?://", text)
    assert re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text) == ["plotly.min.js"]
    assert text.index('<script src="plotly.min.js"') < text.index("Plotly.newPlot")  # loaded before the plots draw
    for div in ("size-plot", "latency-plot", "lottery-plot"):
        assert f'<div id="{div}" class="plotly-graph-div"' in text
    assert "Warning: synthetic data: not clinical results" in text
    mtime = script.stat().st_mtime_ns
    HtmlReporter().write(results, tmp_path)
    assert script.stat().st_mtime_ns == mtime  # an unchanged bundle is not written again


def test_html_table_has_every_column_sortable_and_a_chooser(results, tmp_path):
    from ecgbench_plugins.reporters.html import full_table

    page, _ = HtmlReporter().write(results, tmp_path)
    text = page.read_text()
    table, shown, key = full_table(results, HtmlReporter().config)
    assert table.paths[:4] == ["pipeline", "test.challenge_f1", "delta_f1_points", "size.compression_ratio"]
    assert {"val.challenge_f1", "size.nonzero_params", "devices.nrf52840.peak_ram_bytes"} <= set(table.paths)  # beyond the summary
    results_table = text[text.index('id="results-table"'):]
    results_table = results_table[: results_table.index("</table>")]
    headers = re.findall(r'<th class="c(\d+)" data-col="\1" aria-sort="none" title="([^"]*)"><button type="button">([^<]*)</button></th>', results_table)
    assert [h[2] for h in headers] == table.headers
    boxes = re.findall(r'<input type="checkbox" value="c(\d+)" data-key="([01])"( checked)?>', text)
    assert len(boxes) == len(table.headers) - 1  # every column but the pipeline
    hidden = {int(j) for j, _, checked in boxes if not checked}
    assert hidden == {table.paths.index(p) for p in ("data.dropped_total", "val.challenge_f1", "test.af_f1", "size.nonzero_params", "compute.effective_macs",
                                                  "devices.nrf52840.energy_per_day_j", "devices.nrf52840.peak_ram_bytes")}
    assert re.search(r'<table id="results-table" class="([^"]*)"', text).group(1).split() == [f"hide-c{j}" for j in sorted(hidden)]
    assert {table.paths[j] for j in key} == {"pipeline", "test.challenge_f1", "delta_f1_points", "size.compression_ratio",
                                             "devices.nrf52840.flash_bytes", "devices.nrf52840.latency_ms", "devices.nrf52840.fits"}
    # Cells sort by the mean across seeds, flags as 1/0; a failed pipeline has no sort value.
    ratio_col = table.paths.index("size.compression_ratio")
    mag = next(r for r in re.findall(r"<tr>(.*?)</tr>", text) if ">magnitude-80<" in r)
    assert f'<td class="c{ratio_col} num" data-sort="5.0">5.0x</td>' in mag
    fits_col = table.paths.index("devices.nrf52840.fits")
    assert f'<td class="c{fits_col}" data-sort="1.0">yes</td>' in mag
    failed = next(r for r in re.findall(r"<tr>(.*?)</tr>", text) if ">int8<" in r)
    assert f'<td class="c{ratio_col} num">-</td>' in failed


def test_latency_plot_is_one_figure_with_a_device_selector(two_devices):
    from ecgbench_plugins.reporters.html import figures, plot_inputs

    data = plot_inputs(two_devices)
    assert data["fits"]["nrf52840"] == {"synthetic/hannun34/dense": "no", "synthetic/hannun34/magnitude-80": "yes", "synthetic/hannun34/lth_ecg": "yes"}
    fig = dict((div, f) for div, _, f in figures(data))["latency-plot"]
    [menu] = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["device: stm32h7", "device: nrf52840"]
    first = [bool(t.visible) for t in fig.data]
    assert any(first) and not all(first)
    for button in menu.buttons:
        visible = button.args[0]["visible"]
        names = sorted(t.name for t, v in zip(fig.data, visible) if v and t.name != "Pareto front")
        assert names == ["dense", "lth_ecg", "magnitude-80"]  # each device shows every pipeline once
    assert menu.buttons[0].args[0]["visible"] == first  # the first device is shown at first
    assert "stm32h7" in fig.layout.xaxis.title.text and "nrf52840" in menu.buttons[1].args[1]["xaxis.title.text"]
    # Only dense does not fit the nrf52840: an open marker there, filled on stm32h7.
    dense = [t for t in fig.data if t.name == "dense"]
    assert [t.marker.symbol.endswith("-open") for t in dense] == [False, True]


def test_points_at_one_spot_name_each_other_and_keep_their_style(results):
    from ecgbench_plugins.reporters import plots
    from ecgbench_plugins.reporters.html import figures, plot_inputs

    data = plot_inputs(results)
    by_div = {div: f for div, _, f in figures(data)}
    hovers = {t.name: t.hovertemplate for t in by_div["latency-plot"].data if t.name != "Pareto front"}
    # dense, magnitude-80 and lth_ecg all simulate 1500 ms; magnitude (0.800) and dense (0.800) share the spot.
    assert "same spot: magnitude-80" in hovers["dense"] and "same spot: dense" in hovers["magnitude-80"]
    assert "same spot" not in hovers["lth_ecg"]
    size = {t.name: (t.marker.color, t.marker.symbol) for t in by_div["size-plot"].data if t.name != "Pareto front"}
    latency = {t.name: (t.marker.color, t.marker.symbol.removesuffix("-open")) for t in by_div["latency-plot"].data if t.name != "Pareto front"}
    assert size == latency and len(set(size.values())) == 3
    assert all(t.mode == "markers" and not t.text for t in by_div["size-plot"].data if t.name != "Pareto front")  # no labels to collide


def test_identical_lottery_trajectories_are_told_apart():
    from ecgbench_plugins.reporters.plots import lottery_figure

    twin = {"rounds": LTH_ROUNDS, "min_val_challenge_f1": 0.81, "label": ""}
    fig = lottery_figure([{**twin, "label": "lth seed0"}, {**twin, "label": "lth seed1"}])
    accepted = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in accepted] == ["lth seed0", "lth seed1"]
    a, b = accepted
    assert a.line.color != b.line.color and a.line.dash != b.line.dash and a.marker.symbol != b.marker.symbol
    assert b.x[0] - a.x[0] == pytest.approx(0.004)  # drawn beside, not on top
    assert [c[1] for c in b.customdata] == [0.2, 0.28]  # the hover keeps the true sparsity
    assert [t.name for t in fig.data if t.showlegend is not False] == ["lth seed0", "lth seed1"]


def test_html_embeds_the_plotted_numbers(results, tmp_path):
    path, _ = HtmlReporter().write(results, tmp_path)
    payload = re.search(r'<script type="application/json" id="plot-data">(.*?)</script>', path.read_text(), re.S).group(1)
    data = json.loads(payload)
    [trajectory] = data["lottery"]
    assert trajectory["label"] == "lth_ecg seed0" and trajectory["min_val_challenge_f1"] == 0.81
    assert [(r["sparsity"], r["val_challenge_f1"], r["accepted"]) for r in trajectory["rounds"]] == [
        (0.2, 0.815, True), (0.36, 0.70, False), (0.28, 0.812, True)
    ]
    nrf = {p["pipeline"]: (p["x"], p["pareto"]) for p in data["latency_f1"]["nrf52840"]}
    # equal latency everywhere: only the best F1 (lth_ecg 0.805) is on the front
    assert nrf == {"dense": (1500.0, False), "magnitude-80": (1500.0, False), "lth_ecg": (1500.0, True)}


def test_lth_rounds_without_accepted_field_count_as_accepted():
    rounds = [{"round": 1, "rate": 0.2, "sparsity": 0.2, "val_challenge_f1": 0.8, "seconds": 1.0}]
    cell = type("Cell", (), {"metrics": {"compression": {"steps": [{"name": "lth", "record": {"rounds": rounds}}]}},
                             "pipeline": "lth", "seed": 0, "dataset": "d", "model": "m"})()
    [trajectory] = _table.lottery_trajectories(type("R", (), {"cells": [cell]})())
    assert trajectory["rounds"][0]["accepted"] is True and trajectory["min_val_challenge_f1"] is None


def test_reporters_are_registered_under_their_format_names(registry):
    assert registry.get("reporters", "md") is MarkdownReporter
    assert registry.get("reporters", "csv") is CsvReporter
    assert registry.get("reporters", "json") is JsonReporter
    assert registry.get("reporters", "html") is HtmlReporter


def test_helpers_tolerate_missing_keys():
    assert _table.lookup({"a": {"b": 1}}, "a.c") is None and _table.lookup({}, "x.y") is None
    assert _table.error_line("Traceback\n  File x\nValueError: boom\n\n") == "ValueError: boom"
    assert _table.error_line(None) == ""
    assert [_table.human_bytes(n) for n in (812, 45_200, 1_234_567, None)] == ["812 B", "45.2 kB", "1.23 MB", "-"]
    assert _table.flatten({"a": {"b": 1, "c": {}}, "d": [1, 2]}) == {"a.b": 1, "d": [1, 2]}


def test_regenerate_command_names_the_store_relative_to_the_working_directory(results, tmp_path, monkeypatch):
    """A published report must not carry the publishing machine's absolute paths."""
    monkeypatch.chdir(results.store_path.parent)
    command = _table.regenerate_command(results, "md", Path("reports/quick"))
    assert command.endswith(f"--out reports/quick --db {results.store_path.name}")


def test_regenerate_command_repeats_the_reporters_settings(results):
    from ecgbench.cli.main import _reporter_settings

    settings = _table.TableSettings(f1_budget_points=1.0, devices=["nrf52840"])
    command = _table.regenerate_command(results, "md", Path("out"), settings)
    assert "--set 'md.devices=[\"nrf52840\"]' --set md.f1_budget_points=1.0" in command
    words = shlex.split(command)
    assignments = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    assert _table.TableSettings(**_reporter_settings(assignments)["md"]) == settings
    assert "--set" not in _table.regenerate_command(results, "md", Path("out"), _table.TableSettings())


def test_trajectories_come_from_the_step_compressor(registry):
    from ecgbench.kinds.compressor import Compressor, Trajectory, TrajectoryPoint

    class Search(Compressor):
        name = "search"

        @classmethod
        def trajectory(cls, record):
            return Trajectory((TrajectoryPoint(1, record["s"], 0.7, False),), 0.65)

    registry.tables["compressors"]["search"] = Search
    steps = [
        {"name": "search", "record": {"s": 0.5}},
        {"name": "dense", "record": {"rounds": [{"sparsity": 0.1, "val_challenge_f1": 0.8}]}},  # no trajectory: base class
        {"name": "uninstalled", "record": {"rounds": [{"sparsity": 0.1, "val_challenge_f1": 0.8}]}},
    ]
    cell = type("Cell", (), {"metrics": {"compression": {"steps": steps}}, "pipeline": "p", "seed": 1, "dataset": "d", "model": "m"})()
    [trajectory] = _table.lottery_trajectories(type("R", (), {"cells": [cell]})(), registry)
    assert trajectory["label"] == "p seed1 step 1 search" and trajectory["min_val_challenge_f1"] == 0.65
    assert trajectory["rounds"] == [{"round": 1, "sparsity": 0.5, "val_challenge_f1": 0.7, "accepted": False}]
