"""The metrics every cell reports, declared once (registered by ``ecgbench_plugins.metrics.builtin``).

:func:`ecgbench.measure.artifact.measure_artifact` fills these paths; their
order is the order of the summary table's columns and of its definitions.
"""

from __future__ import annotations

from ecgbench.measure.schema import Compared, Gate, Metric, lookup, number, stat


def challenge_f1_text(metrics: list[dict], n_cells: int) -> str:
    """Test challenge F1 with its interval (one seed) or mean ± std (several), noting failed seeds."""
    f1 = stat(lookup(m, "test.challenge_f1") for m in metrics)
    if f1 is None:
        return "failed" if n_cells and not metrics else "-"
    if f1.n == 1:
        ci = lookup(metrics[0], "test.challenge_f1_ci")
        lo, hi = (number(ci[0]), number(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
        text = f"{f1.mean:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")
    else:
        text = f"{f1.mean:.3f} ± {f1.std:.3f} ({f1.n} seeds)"
    if len(metrics) < n_cells:
        text += f" ({len(metrics)} of {n_cells} seeds done)"
    return text


def delta_f1_text(metrics: list[dict], n_cells: int) -> str:
    """Test ΔF1 in points with its paired interval (one seed) or mean ± std (several)."""
    delta = stat(lookup(m, "delta_f1_points") for m in metrics)
    if delta is None:
        return "-"
    if delta.n > 1:
        return f"{delta.mean:+.2f} ± {delta.std:.2f} ({delta.n} seeds)"
    ci = lookup(metrics[0], "delta_f1_ci_points")
    lo, hi = (number(ci[0]), number(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
    return f"{delta.mean:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None and hi is not None else "")


DEVICE_DEFINITION = (
    "simulated latency and energy of one inference on the device profile, and whether the model's flash bytes "
    "(below) and peak RAM fit the device (simulated figures, not measurements on a board). With windowed deployment "
    "(measure.deploy_window_s) one inference is one window."
)
FLASH_DEFINITION = (
    "bytes of the model's weights in the form the device's runtime executes in place from flash, with that form "
    "and the runtime in brackets: dense fp32 for a float model; int8 for an int8 model (per-channel fp32 scales and "
    "int64 zero points, int32 biases, as TFLite Micro with CMSIS-NN stores them); a sparse int8 layout (CSR or "
    "block-sparse, indices counted) only where the profile declares kernels for it (none of the built-in ones does). "
    "Never a compressed file: that is the storage figure. The graph description and the runtime's code are not counted."
)
PER_RECORD_DEFINITION = (
    "with windowed deployment (measure.deploy_window_s): simulated latency and energy of classifying one record of "
    "measure.input_s seconds, i.e. per window x windows in that record (devices.<device>.windows_per_record); "
    "peak RAM and fit stay per window, as the device runs one window at a time; energy per day counts every window of "
    "each screened recording."
)
PER_RECORD_TERM = "device ms/record / mJ/record"
DEVICE_TERM = "device sim ms / mJ / fits"

F1_COMPARED = Compared("test F1", ".3f", Gate(0.5, "points", 100.0, "F1"))
"""``compare`` gates test F1 on a drop of more than 0.5 points (``--max-f1-drop``)."""

SIZE_COMPARED = Compared("storage kB", "kb", Gate(0.05, "relative", 1.0, "size"))
"""``compare`` gates storage bytes on a growth of more than 5% (``--max-size-growth``)."""

BUILTIN_METRICS: tuple[Metric, ...] = (
    Metric(
        "test.challenge_f1",
        "test challenge F1 [{ci_level} CI]",
        "mean F1 of the classes N (normal), A (atrial fibrillation) and O (other rhythm) on the test split, "
        "the PhysioNet/CinC 2017 score; the noise class ~ is not averaged in. Brackets: percentile bootstrap "
        "interval over test records (one seed). With several seeds: mean ± sample standard deviation across "
        "seeds, and their number (every seed's value is in the Seeds section; per-seed intervals in the CSV/JSON reports).",
        term="test challenge F1",
        text=challenge_f1_text,
        compare=F1_COMPARED,
    ),
    Metric(
        "delta_f1_points",
        "ΔF1 pts [{ci_level} CI]",
        "test challenge F1 of the cell minus that of its own dense baseline (same data, model and seed), in points (x100). "
        "Brackets: paired percentile bootstrap interval (both models scored on the same resampled test records, one seed). "
        "With several seeds: mean ± sample standard deviation across seeds, and their number (every seed's value and "
        "interval is in the Seeds section).",
        term="ΔF1 (pts)",
        unit="pts",
        format="signed_points",
        std_format="points",
        text=delta_f1_text,
    ),
    Metric(
        "size.compression_ratio",
        "compression ratio",
        "non-zero parameters of the dense baseline / non-zero parameters of the compressed model.",
        format="ratio",
    ),
    Metric(
        "size.storage_bytes",
        "storage",
        "bytes of the smallest lossless file of the model, one that loads back to the same ONNX graph (plain ONNX, "
        "sparse, zlib or zstd of either), with that format in brackets: what an over-the-air update sends. A device "
        "decodes it before running it, so it is not a flash figure. kB = 1000 bytes, MB = 10^6 bytes.",
        unit="bytes",
        format="bytes",
        higher_is_better=False,
        detail=("size.storage_format",),
        compare=SIZE_COMPARED,
    ),
    Metric(
        "size.size_reduction",
        "size reduction",
        "bytes of the dense baseline's ONNX file / storage bytes of the compressed model.",
        format="ratio",
    ),
    Metric(
        "latency.host_median_ms",
        "measured host ms",
        "median wall-clock latency of one inference in onnxruntime on the machine that ran the suite.",
        unit="ms",
        format="number",
        higher_is_better=False,
        # Shown, never gated: host latency depends on the machine and its load.
        compare=Compared("host ms", ".2f"),
    ),
    Metric(
        "latency.host_vs_dense",
        "host vs dense",
        "that median over the dense baseline's, both timed in alternation in one session: robust to the machine's "
        "drift, which moves absolute milliseconds of cells timed minutes apart by tens of percent.",
        format="times",
        higher_is_better=False,
    ),
    Metric("devices.{device}.latency_ms", "{device} sim ms", DEVICE_DEFINITION, unit="ms", term=DEVICE_TERM, format="number", higher_is_better=False),
    Metric("devices.{device}.energy_mj", "{device} mJ", DEVICE_DEFINITION, unit="mJ", term=DEVICE_TERM, format="number", higher_is_better=False),
    Metric(
        "devices.{device}.flash_bytes",
        "flash on {device}",
        FLASH_DEFINITION,
        unit="bytes",
        term="flash on <device>",
        format="bytes",
        higher_is_better=False,
        detail=("devices.{device}.flash_format", "devices.{device}.flash_runtime"),
    ),
    Metric("devices.{device}.fits", "{device} fits", DEVICE_DEFINITION, term=DEVICE_TERM, aggregate="all_true"),
    Metric(
        "devices.{device}.latency_ms_per_record", "{device} ms/record", PER_RECORD_DEFINITION,
        unit="ms", term=PER_RECORD_TERM, format="number", higher_is_better=False, optional=True,
    ),
    Metric(
        "devices.{device}.energy_mj_per_record", "{device} mJ/record", PER_RECORD_DEFINITION,
        unit="mJ", term=PER_RECORD_TERM, format="number", higher_is_better=False, optional=True,
    ),
    # Measured and stored, not in the summary table (CSV/JSON carry them).
    Metric(
        "data.dropped_total",
        "dropped windows",
        "windows (or records) the dataset left out by design, e.g. before a record's first rhythm annotation or across a "
        "change of rhythm; the count per reason is at data.dropped.<reason> and in the report's \"Dropped windows\" section.",
        format=",.0f",
        higher_is_better=False,
        summary=False,
    ),
    Metric("val.challenge_f1", "validation challenge F1", summary=False),
    Metric("test.af_f1", "test AF F1", summary=False),
    Metric("size.nonzero_params", "non-zero parameters", format="number", higher_is_better=False, summary=False),
    Metric("compute.effective_macs", "effective MACs", format="number", higher_is_better=False, summary=False),
    Metric("devices.{device}.energy_per_day_j", "{device} J/day", unit="J", format="number", higher_is_better=False, summary=False),
    Metric("devices.{device}.peak_ram_bytes", "{device} peak RAM", unit="bytes", format="bytes", higher_is_better=False, summary=False),
    Metric("devices.{device}.latency_ms_per_window", "{device} ms/window", unit="ms", format="number", higher_is_better=False, summary=False, optional=True),
    Metric("devices.{device}.energy_mj_per_window", "{device} mJ/window", unit="mJ", format="number", higher_is_better=False, summary=False, optional=True),
    Metric("windowing.windows_per_record", "windows per record", format=",.0f", summary=False, optional=True),
    Metric("latency.host_median_ms_per_record", "measured host ms/record", unit="ms", format="number", higher_is_better=False, summary=False, optional=True),
)
"""Every built-in metric, in summary-table order; per-device ones carry ``{device}``."""

KEY_COLUMNS: tuple[str, ...] = (
    "delta_f1_points",
    "size.compression_ratio",
    "devices.{device}.flash_bytes",
    "devices.{device}.latency_ms",
    "devices.{device}.latency_ms_per_record",  # windowed deployment only (optional: shown when a cell has it)
    "devices.{device}.fits",
)
"""Paths of the metrics that decide, in order: the default columns of ``report.md`` (``md.columns: key``).

The per-device ones are shown for one device (the reporter's ``devices``, default the run's first).
"""
