"""Calibrate the simulator's int8 rates and power on published board measurements, and validate them board by board.

The data are MLPerf Tiny results (``benchmarks/data/mlperf_tiny_measurements.csv``:
board, engine, model, median latency, median energy where measured). Each
(board, engine) pair is a *system*, described by a device profile whose
``runtime`` names the engine and whose ``core`` names the Arm core.

The latency model is the simulator's own (:func:`ecgbench.measure.simulator.simulate`)
with int8 rates factored as::

    rate[class] on a system = base_rate[class] x core_speed[core] x engine_speed[engine]
    layer_overhead_cycles   = overhead[engine]

``class`` is conv, depthwise_conv, fc, elementwise and im2col. The Cortex-M4 and
the geometric mean of the engines set the scale; the other factors are fitted
by least squares on log(predicted / measured), with a weak pull of every core
and engine factor towards 1, of every overhead towards ``PRIOR_OVERHEAD_CYCLES``
and of every base rate towards ``PRIOR_RATES`` (a maximum a posteriori fit): a
factor no training board constrains (an engine seen only on the held-out board)
stays at its prior, and rates the four reference models cannot tell apart
(conv against im2col) stay physical instead of trading off.

Leave-one-board-out: every system on one board (all its engines) is held out,
the factors are fitted on the other boards, and the held-out board is
predicted. The MACs-only baseline predicts ``MACs / (rate[core] x clock)`` with
one MAC rate per core fitted on the other boards (the geometric mean).

Power: each profile's ``active_power_mw`` is its datasheet run-mode current at
its clock times the supply voltage. ``power_factor`` (measured power / datasheet
power, geometric mean over the other boards' energy runs) carries what the
datasheet's CoreMark figure leaves out (SRAM and flash traffic of inference,
regulator); energy is predicted both without it (pure datasheet) and with it.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgbench.errors import ConfigError
from ecgbench.kinds.device import DeviceProfile
from ecgbench.measure.onnx_graph import GraphStats
from ecgbench.measure.simulator import MAC_CLASSES, precision_of, rate_class_of, simulate

RATE_CLASSES = ("conv", "depthwise_conv", "fc", "elementwise", "im2col")
REFERENCE_CORE = "cortex_m4"
PRIOR_OVERHEAD_CYCLES = 2000.0
# The int8 rates the Cortex-M4 profile (nrf52840) gave before calibration, from the CMSIS-NN literature (Lai et al. 2018):
# the fit starts there and is pulled towards them, so that a rate the four reference models cannot separate stays physical.
PRIOR_RATES = {"conv": 0.5, "depthwise_conv": 0.35, "fc": 0.55, "elementwise": 0.4, "im2col": 1.0}
PRIOR_WEIGHT = 0.3  # strength of the pull of core/engine factors towards 1 (in log units, against unit-weight residuals)
FLOAT_ELEMENTWISE = len(RATE_CLASSES)  # index of the (not fitted) fp32 element rate in a rates vector
CSV_COLUMNS = ("board", "engine", "model", "latency_ms", "energy_uJ", "source")


@dataclass(frozen=True)
class Measurement:
    """One published result: median latency (and energy) of a reference model on a board under an engine."""

    board: str
    engine: str
    model: str
    latency_ms: float
    energy_uj: float | None
    source: str

    @property
    def system(self) -> str:
        return f"{self.board}_{self.engine}"


def load_measurements(path: str | Path) -> list[Measurement]:
    """Read the measurements CSV ('#' lines are comments); ConfigError naming the file, line and column at fault."""
    path = Path(path)
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        raise ConfigError(f"measurements file {path} does not exist") from None
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise ConfigError(f"{path}: the header must be {','.join(CSV_COLUMNS)}, got {','.join(reader.fieldnames or [])}")
    out = []
    for number, row in enumerate(reader, start=2):
        try:
            latency = float(row["latency_ms"])
            energy = float(row["energy_uJ"]) if row["energy_uJ"] else None
        except ValueError as exc:
            raise ConfigError(f"{path}, data row {number - 1}: {exc}; latency_ms and energy_uJ must be numbers") from None
        if latency <= 0 or (energy is not None and energy <= 0):
            raise ConfigError(f"{path}, data row {number - 1}: latency_ms and energy_uJ must be positive")
        if not row["source"]:
            raise ConfigError(f"{path}, data row {number - 1}: source is empty; every figure names where it was published")
        out.append(Measurement(row["board"], row["engine"], row["model"], latency, energy, row["source"]))
    return out


def core_family(profile: DeviceProfile) -> str:
    """'cortex_m4', 'cortex_m33', 'cortex_m7', ... from the profile's ``core`` text ('' when no Cortex-M is named)."""
    match = re.search(r"Cortex-M(\d+)(\+?)", profile.core)
    if not match:
        return ""
    return f"cortex_m{match.group(1)}{'plus' if match.group(2) else ''}"


@dataclass
class GraphArrays:
    """The per-layer numbers of one analysed model that the latency formula needs, as arrays."""

    classes: np.ndarray  # index into RATE_CLASSES of each costed layer (int8 rates); FLOAT_ELEMENTWISE for float ones
    work: np.ndarray
    im2col: np.ndarray
    moved_bytes: np.ndarray
    macs: int

    @classmethod
    def of(cls, graph: GraphStats) -> "GraphArrays":
        rows = []
        for layer in graph.layers:
            if layer.op_class == "free":
                continue
            if precision_of(layer) != "int8":
                if layer.op_class in MAC_CLASSES:
                    raise ConfigError(f"layer {layer.name} ({layer.op_type}) is float: calibration needs fully int8 models")
                index = FLOAT_ELEMENTWISE  # the float input's QuantizeLinear: the profile's fp32 element rate
            else:
                klass = rate_class_of(layer)
                index = RATE_CLASSES.index("depthwise_conv" if klass == "depthwise_conv_strided" else klass)
            work = layer.macs if layer.op_class in MAC_CLASSES else layer.ops
            moved = layer.activation_bytes_in + layer.activation_bytes_out + layer.param_bytes
            rows.append((index, work, layer.im2col_elements, moved))
        array = np.array(rows, dtype=float).reshape(-1, 4)
        return cls(array[:, 0].astype(int), array[:, 1], array[:, 2], array[:, 3], graph.macs)


@dataclass
class Fit:
    """Fitted int8 rates (MACs per cycle on a Cortex-M4 under the mean engine) and the core / engine factors."""

    base_rates: dict[str, float]
    core_speed: dict[str, float]
    engine_speed: dict[str, float]
    overhead_cycles: dict[str, float]
    power_factor: float = 1.0
    trained_on: list[str] = field(default_factory=list)

    def rates_for(self, core: str, engine: str) -> dict[str, float]:
        """int8 rates of a system: base x core x engine (an unknown core or engine counts as 1)."""
        scale = self.core_speed.get(core, 1.0) * self.engine_speed.get(engine, 1.0)
        return {k: v * scale for k, v in self.base_rates.items()}

    def profile_for(self, profile: DeviceProfile, engine: str) -> DeviceProfile:
        """``profile`` with its int8 rates and per-layer overhead replaced by this fit's."""
        rates = self.rates_for(core_family(profile), engine)
        int8 = profile.macs_per_cycle.int8.model_copy(update=rates)
        macs = profile.macs_per_cycle.model_copy(update={"int8": int8})
        overhead = self.overhead_cycles.get(engine, PRIOR_OVERHEAD_CYCLES)
        return profile.model_copy(update={"macs_per_cycle": macs, "layer_overhead_cycles": overhead})


def predict_cycles(arrays: GraphArrays, rates: np.ndarray, overhead: float, memory_cycles_per_byte: float) -> float:
    """The simulator's latency formula in cycles: sum of max(compute, memory) + overhead per costed layer.

    ``rates`` holds the int8 RATE_CLASSES rates, then the fp32 element rate.
    """
    compute = arrays.work / rates[arrays.classes] + arrays.im2col / rates[RATE_CLASSES.index("im2col")]
    memory = arrays.moved_bytes * memory_cycles_per_byte
    return float(np.maximum(compute, memory).sum() + overhead * len(arrays.work))


def fit_rates(
    measurements: list[Measurement], graphs: dict[str, GraphArrays], profiles: dict[str, DeviceProfile]
) -> Fit:
    """Least-squares fit of base rates, core and engine speeds and engine overheads on log latency."""
    from scipy.optimize import least_squares

    cores = sorted({core_family(profiles[m.system]) for m in measurements} - {REFERENCE_CORE})
    engines = sorted({m.engine for m in measurements})
    n_rates, n_cores, n_engines = len(RATE_CLASSES), len(cores), len(engines)
    prior_rates = np.log([PRIOR_RATES[k] for k in RATE_CLASSES])

    def unpack(theta):
        rates = np.exp(theta[:n_rates])
        core = dict(zip(cores, np.exp(theta[n_rates:n_rates + n_cores])))
        engine = dict(zip(engines, np.exp(theta[n_rates + n_cores:n_rates + n_cores + n_engines])))
        overhead = dict(zip(engines, np.exp(theta[n_rates + n_cores + n_engines:])))
        return rates, core, engine, overhead

    rows = []
    for m in measurements:
        profile = profiles[m.system]
        rows.append((graphs[m.model], core_family(profile), m.engine, profile.clock_hz,
                     profile.clock_hz / profile.bandwidth_bytes_per_s, m.latency_ms, profile.macs_per_cycle.fp32.elementwise))

    def residuals(theta):
        rates, core, engine, overhead = unpack(theta)
        out = []
        for arrays, c, e, clock, cycles_per_byte, measured, fp32_elementwise in rows:
            scale = core.get(c, 1.0) * engine[e]
            cycles = predict_cycles(arrays, np.append(rates * scale, fp32_elementwise), overhead[e], cycles_per_byte)
            out.append(math.log(cycles / clock * 1e3 / measured))
        log_engines = theta[n_rates + n_cores:n_rates + n_cores + n_engines]
        prior = list(PRIOR_WEIGHT * theta[n_rates:n_rates + n_cores])
        prior += list(PRIOR_WEIGHT * (log_engines - log_engines.mean()))  # engines relative to their mean
        prior += [PRIOR_WEIGHT * log_engines.mean() * 10]  # the mean engine defines the scale
        prior += list(PRIOR_WEIGHT * (theta[n_rates + n_cores + n_engines:] - math.log(PRIOR_OVERHEAD_CYCLES)))
        prior += list(PRIOR_WEIGHT * (theta[:n_rates] - prior_rates))
        return np.array(out + prior)

    start = np.concatenate([prior_rates, np.zeros(n_cores + n_engines),
                            np.full(n_engines, math.log(PRIOR_OVERHEAD_CYCLES))])
    result = least_squares(residuals, start, method="trf", x_scale=1.0)
    rates, core, engine, overhead = unpack(result.x)
    core[REFERENCE_CORE] = 1.0
    return Fit(
        base_rates={k: float(v) for k, v in zip(RATE_CLASSES, rates)},
        core_speed={k: float(v) for k, v in core.items()},
        engine_speed={k: float(v) for k, v in engine.items()},
        overhead_cycles={k: float(v) for k, v in overhead.items()},
        trained_on=sorted({m.board for m in measurements}),
    )


def fit_power_factor(measurements: list[Measurement], datasheet_mw: dict[str, float]) -> float:
    """Measured power (energy / latency) over a system's datasheet power: geometric mean per board, then over boards.

    Each board counts once, however many engines and runs it has: boards are
    what a prediction generalises to. 1.0 when no measurement has energy.
    """
    by_board: dict[str, list[float]] = {}
    for m in measurements:
        if m.energy_uj:
            by_board.setdefault(m.board, []).append(math.log(m.energy_uj / m.latency_ms / datasheet_mw[m.system]))
    return float(math.exp(np.mean([np.mean(v) for v in by_board.values()]))) if by_board else 1.0


def fit_macs_rates(measurements: list[Measurement], graphs: dict[str, GraphArrays], profiles: dict[str, DeviceProfile]) -> dict[str, float]:
    """MACs-only baseline: one MACs-per-cycle per core (geometric mean), engine and operator mix ignored."""
    by_core: dict[str, list[float]] = {}
    for m in measurements:
        profile = profiles[m.system]
        by_core.setdefault(core_family(profile), []).append(graphs[m.model].macs / (m.latency_ms / 1e3 * profile.clock_hz))
    return {core: float(math.exp(np.mean(np.log(v)))) for core, v in by_core.items()}


@dataclass
class Prediction:
    """Held-out prediction of one measurement."""

    measurement: Measurement
    latency_ms: float
    macs_only_ms: float
    energy_uj_datasheet: float
    energy_uj: float

    @staticmethod
    def error(predicted: float, measured: float) -> float:
        """Relative error, predicted / measured - 1."""
        return predicted / measured - 1.0


def leave_one_out(
    measurements: list[Measurement],
    graph_stats: dict[str, GraphStats],
    profiles: dict[str, DeviceProfile],
    datasheet_mw: dict[str, float] | None = None,
    by: str = "board",
) -> list[Prediction]:
    """Hold out each value of ``by`` ('board' or 'model') in turn: fit on the rest, predict the held-out measurements.

    Latency comes from ``simulate`` on the system's profile with the fitted
    rates. Energy is that latency times ``datasheet_mw[system]`` (default: the
    profile's ``active_power_mw``), alone and times the power factor fitted
    on the training boards.
    """
    if by not in ("board", "model"):
        raise ValueError("by must be 'board' or 'model'")
    arrays = {name: GraphArrays.of(graph) for name, graph in graph_stats.items()}
    datasheet_mw = datasheet_mw or {m.system: profiles[m.system].active_power_mw for m in measurements}
    out = []
    for held in sorted({getattr(m, by) for m in measurements}):
        train = [m for m in measurements if getattr(m, by) != held]
        test = [m for m in measurements if getattr(m, by) == held]
        fit = fit_rates(train, arrays, profiles)
        factor = fit_power_factor(train, datasheet_mw)
        macs_rates = fit_macs_rates(train, arrays, profiles)
        pooled = float(math.exp(np.mean(np.log(list(macs_rates.values())))))
        for m in test:
            profile = profiles[m.system]
            calibrated = fit.profile_for(profile, m.engine)
            latency_ms = simulate(graph_stats[m.model], calibrated).latency_ms
            macs_rate = macs_rates.get(core_family(profile), pooled)
            macs_only_ms = arrays[m.model].macs / macs_rate / profile.clock_hz * 1e3
            energy = latency_ms * datasheet_mw[m.system]  # mW x ms = uJ
            out.append(Prediction(m, latency_ms, macs_only_ms, energy, energy * factor))
    return out


def summary(errors: list[float]) -> dict[str, float]:
    """Median absolute error and the shares within 10 % and 25 % (relative errors as fractions)."""
    absolute = np.abs(np.asarray(errors, dtype=float))
    if not absolute.size:
        return {"n": 0, "median_abs": float("nan"), "within_10": float("nan"), "within_25": float("nan")}
    return {"n": int(absolute.size), "median_abs": float(np.median(absolute)),
            "within_10": float(np.mean(absolute <= 0.10)), "within_25": float(np.mean(absolute <= 0.25))}


def spearman(predicted: list[float], measured: list[float]) -> float:
    """Spearman rank correlation (nan for fewer than 3 points)."""
    if len(predicted) < 3:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(predicted, measured).statistic)
