"""``ecgbench devices``: list device profiles, calibrate the host, simulate an ONNX model on devices.

    ecgbench devices                                    # name, core, clock, runtime, flash, RAM, source
    ecgbench devices calibrate [--out PATH]             # measure this machine -> host profile YAML
    ecgbench devices simulate MODEL.onnx --device nrf52840 --device host --input-shape 1,1,9000 [--layers] [--json]
    ecgbench devices simulate MODEL.onnx --device path/to/my_board.yaml      # a profile file, no plugin needed
    ecgbench devices simulate MODEL.onnx --device nrf52840 --input-s 10   # one 10-s window at the model's rate

``simulate`` prints a summary: the model's MACs and parameters, any operator
whose shape or cost is guessed, one row per device (latency, energy, peak RAM,
flash, fit) and each device's five slowest layers; ``--layers`` prints every layer.

``--device`` takes a registered profile name, or a path to a profile YAML
(anything ending in ``.yaml``/``.yml`` or containing a path separator), e.g. the
measured boards in ``plugins/devices/profiles/mlperf_tiny/``.

``simulate --json`` prints ``{"schema": "ecgbench.simulation/1", "model": path,
"unshaped_ops": [...], "graph": <ecgbench.graph/1>, "devices": {name: <ecgbench.device-prediction/1>}}``
(the schemas are documented in ``ecgbench.measure.onnx_graph`` and ``ecgbench.measure.simulator``);
``unshaped_ops`` lists, at the top, every operator whose output shape could not be inferred
(its MACs may be wrong), ``[]`` when none.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ecgbench.errors import ConfigError
from ecgbench.text import KB_NOTE, WIDTH, ellipsize, human_bytes, kb, render_table, shorten_unique, wrap, wrap_items

SIMULATION_SCHEMA = "ecgbench.simulation/1"


def register(subparsers) -> None:
    """Add the ``devices`` command and its ``calibrate`` and ``simulate`` actions."""
    p = subparsers.add_parser("devices", help="list device profiles, calibrate the host, simulate a model on devices")
    p.set_defaults(func=cmd_list)
    sub = p.add_subparsers(metavar="ACTION")

    c = sub.add_parser("calibrate", help="measure this machine's onnxruntime throughput and write the host profile")
    c.add_argument("--out", type=Path, help="profile file to write (default $ECGBENCH_HOME/devices/host.yaml, i.e. .ecgbench/devices/host.yaml)")
    c.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1, as cells are timed)")
    c.add_argument("--repeats", type=int, default=15, help="timed runs per micro-kernel (default 15)")
    c.set_defaults(func=cmd_calibrate)

    s = sub.add_parser("simulate", help="predict latency, energy, RAM and flash fit of an ONNX model on device profiles")
    s.add_argument("model", type=Path, help="ONNX model file")
    s.add_argument("--device", action="append", default=[], metavar="NAME|FILE.yaml",
                   help="device profile name or profile YAML file (repeatable; default: every registered profile)")
    s.add_argument("--input-shape", metavar="N,C,...", help="shape of one inference for a model with dynamic axes, one size per input dimension, e.g. 1,1,3000")
    s.add_argument("--input-s", type=float, metavar="S", help="seconds of ECG per inference at the model's sampling rate (default: its deploy window, else 30)")
    s.add_argument(
        "--flash-bytes", type=int,
        help="flash need in bytes instead of the model's executable form on each device's runtime (dense fp32, int8, or a sparse layout the profile runs)",
    )
    s.add_argument("--interval-min", type=float, default=5.0, help="minutes between screened recordings for energy per day (default 5)")
    s.add_argument("--layers", action="store_true", help="print every layer of every device, not only the five slowest")
    s.add_argument("--json", action="store_true", help="print JSON (schema ecgbench.simulation/1) instead of tables")
    s.set_defaults(func=cmd_simulate)


def _profiles():
    """(registry, {name: DeviceProfile}) from every installed plugin."""
    from ecgbench.plugin_manager import make_plugin_manager
    from ecgbench.registry import build_registry

    registry = build_registry(make_plugin_manager())
    return registry, registry.tables.get("devices", {})


def _table(headers: list[str], rows: list[list[str]], right=()) -> str:
    return render_table(headers, rows, right=right)


def cmd_list(args: argparse.Namespace) -> int:
    """Print one line per registered device profile."""
    _registry, profiles = _profiles()
    rows = []
    for name in sorted(profiles, key=lambda n: (n == "host", n)):
        p = profiles[name]
        source = "calibrated: " + p.calibration if p.calibration else p.sources[0]
        rows.append([name, f"{p.core.split(' (')[0]} @ {p.clock_hz / 1e6:g} MHz", p.runtime, human_bytes(p.flash_bytes), human_bytes(p.ram_bytes), source])
    headers = ["name", "core / clock", "runtime", "flash", "RAM", "source"]
    used = sum(max(len(str(x)) for x in column) + 2 for column in zip(headers[:-1], *(row[:-1] for row in rows)))
    for row in rows:  # the source gets what is left of the width
        row[-1] = ellipsize(row[-1], max(WIDTH - used, 12))
    print(_table(headers, rows))
    print(KB_NOTE)
    host = profiles.get("host")
    if host is not None and not host.calibration:
        print("\nhost: uncalibrated defaults; run `ecgbench devices calibrate` to measure this machine")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Measure the host and write its profile."""
    from ecgbench.kinds.device import default_host_profile_path, load_profile, save_profile
    from ecgbench.measure.latency import calibrate_host_profile
    from ecgbench_plugins.devices.builtin_profiles import PROFILE_DIR

    if args.threads < 1 or args.repeats < 1:
        raise ConfigError("--threads and --repeats must be at least 1")
    defaults = load_profile(PROFILE_DIR / "host.yaml")
    profile, records = calibrate_host_profile(threads=args.threads, repeats=args.repeats, base=defaults)
    rows = [[r["kernel"], f"{r['median_ms']:.4f}", f"{r['net_ms']:.4f}"] for r in records]
    print(_table(["micro-kernel", "median ms", "net ms (QDQ subtracted)"], rows))
    print()
    rates = [[precision] + [f"{getattr(getattr(profile.macs_per_cycle, precision), op) * profile.clock_hz / 1e9:.3g}"
                            for op in ("conv", "im2col", "depthwise_conv", "fc", "elementwise")] for precision in ("fp32", "int8")]
    print(_table(["G per second", "conv MACs", "im2col values", "depthwise MACs", "fc MACs", "element ops"], rates))
    print(f"bandwidth {profile.bandwidth_bytes_per_s / 1e9:.3g} GB/s, per-operator cost {profile.layer_overhead_cycles / profile.clock_hz * 1e6:.3g} us")
    out = save_profile(profile, args.out or default_host_profile_path())
    print(f"\nwrote {out}" + ("" if args.out is None else f"; use it with ECGBENCH_HOST_PROFILE={out}"))
    return 0


def _shape_from_metadata(model, input_s: float | None = None) -> tuple[int, ...] | None:
    """One inference at the sampling rate an ecgbench export records in its metadata (for a [N, C, L] input only):
    ``input_s`` seconds, else the model's deploy window (``ecgbench.deploy``), else a 30-s record."""
    from ecgbench.measure.windowing import Windowing
    from ecgbench.train.export import read_metadata

    try:
        metadata = read_metadata(model)
        fs_hz = metadata.get("preprocessing", {}).get("fs_hz")
        rank = _input_rank(model)
    except Exception:  # not an ecgbench export: analyze_onnx asks for --input-shape
        metadata, fs_hz, rank = {}, None, None
    if not fs_hz or rank != 3:
        if input_s is not None:
            raise ConfigError(f"--input-s needs a [N, C, L] input and the sampling rate in the model's ecgbench metadata, and {model} lacks them; give --input-shape")
        return None
    windowing = Windowing.from_metadata(metadata)
    seconds = input_s if input_s is not None else (windowing.window_s if windowing else 30.0)
    return (1, 1, max(1, int(round(seconds * fs_hz))))


def _input_rank(model) -> int | None:
    """Number of dimensions of the model's first non-initializer input."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    return len(inputs[0].type.tensor_type.shape.dim) if inputs else None


def is_profile_path(value: str) -> bool:
    """Whether a --device value names a profile file rather than a registered profile."""
    return value.endswith((".yaml", ".yml")) or "/" in value or "\\" in value


def resolve_devices(values: list[str], registry, profiles: dict) -> list:
    """DeviceProfiles for --device values: registered names, or profile YAML files loaded by path."""
    from ecgbench.kinds.device import load_profile

    if not values:
        return [profiles[name] for name in sorted(profiles, key=lambda n: (n == "host", n))]
    return [load_profile(v) if is_profile_path(v) else registry.get("devices", v, "--device") for v in values]


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """'1,1,3000' -> (1, 1, 3000); ConfigError on anything else."""
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(f"--input-shape expects positive comma-separated sizes such as 1,1,3000, got '{text}'")
    return shape


def cmd_simulate(args: argparse.Namespace) -> int:
    """Analyse the model once, simulate it on each requested device, print tables or JSON."""
    from ecgbench.measure.flash import flash_figure
    from ecgbench.measure.onnx_graph import analyze_onnx
    from ecgbench.measure.onnx_model import OnnxModel
    from ecgbench.measure.simulator import simulate

    registry, profiles = _profiles()
    chosen = resolve_devices(args.device, registry, profiles)
    if args.input_s is not None and (args.input_shape is not None or not args.input_s > 0):
        raise ConfigError("--input-s takes positive seconds and excludes --input-shape; give one of them")
    graph = analyze_onnx(args.model, input_shape=parse_input_shape(args.input_shape) or _shape_from_metadata(args.model, args.input_s))
    model = OnnxModel(args.model) if args.flash_bytes is None else None
    predictions = [
        simulate(
            graph, p, flash_bytes=args.flash_bytes, screening_interval_min=args.interval_min,
            flash=flash_figure(model, p.sparse_layouts, p.runtime) if model is not None else None,
        )
        for p in chosen
    ]
    if args.json:
        doc = {
            "schema": SIMULATION_SCHEMA,
            "model": str(args.model),
            "unshaped_ops": list(graph.unshaped),
            "graph": graph.to_dict(),
            "devices": {p.device: p.to_dict() for p in predictions},
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(_graph_summary(args.model, graph))
    print()
    print(_devices_table(predictions))
    for prediction in predictions:
        print()
        print(_prediction_text(graph, prediction, all_layers=args.layers))
    print(f"\n{KB_NOTE}" + ("" if args.layers else "; --layers prints every layer, --json everything"))
    return 0


TOP_LAYERS = 5


def _graph_summary(model: Path, graph) -> str:
    """The model's size and work, led by the operators whose figures are guesses."""
    text = f"{model}\n  input {list(graph.input_shape)}, {len(graph.layers)} layers"
    if graph.unshaped:
        text += "\n  WARNING operators whose output shape is unknown (assumed equal to the input's; MACs may be wrong):"
        text += "\n" + wrap_items(graph.unshaped, indent="    ")
    if graph.unsupported:
        text += "\n  unsupported operators, costed as 1 op per output element:\n" + wrap_items(graph.unsupported, indent="    ")
    text += (
        f"\n  {graph.macs:,} MACs ({graph.effective_macs:,} on non-zero weights)"
        f"\n  {graph.params:,} parameters ({graph.nonzero_params:,} non-zero, {human_bytes(graph.param_bytes)} stored)"
    )
    return text


def _devices_table(predictions) -> str:
    """One row per device: latency, energy, peak RAM and flash against capacity, fit."""
    rows = [
        [
            p.device, f"{p.latency_ms:.3f}", f"{p.energy_mj:.4g}", f"{p.energy_per_day_j:.4g}",
            f"{human_bytes(p.peak_ram_bytes)} of {human_bytes(p.ram_capacity_bytes)}",
            f"{human_bytes(p.flash_bytes)} of {human_bytes(p.flash_capacity_bytes)}",
            "yes" if p.fits else "NO",
        ]
        for p in predictions
    ]
    return _table(["device", "latency ms", "mJ", "J/day", "peak RAM", "flash", "fits"], rows, right=range(1, 6))


def _flash_form(prediction) -> str:
    """Where the flash figure came from: the form and runtime, or the caller's number, or stored parameter bytes."""
    if prediction.flash_source == "runtime":
        return f"{prediction.flash_format} on {prediction.flash_runtime}"
    return "given by --flash-bytes" if prediction.flash_source == "given" else "stored parameter bytes"


def _prediction_text(graph, prediction, all_layers: bool = False) -> str:
    """A device's verdict, notes and its layers: the five slowest, or every one with ``all_layers``."""
    layers = [p for p in prediction.per_layer if p.bound != "free"]
    if not all_layers:
        layers = sorted(layers, key=lambda p: -p.latency_ms)[:TOP_LAYERS]
    total = prediction.latency_ms or 1.0
    names = shorten_unique((p.name for p in layers), 28)
    rows = [
        [names[p.name], p.op_type, p.precision, f"{p.work:,}", f"{p.latency_ms:.3f}", f"{p.latency_ms / total:.0%}", p.bound, kb(p.live_bytes)]
        for p in layers
    ]
    verdict = "fits" if prediction.fits else f"DOES NOT FIT: {prediction.why}"
    what = "every layer" if all_layers else f"{len(layers)} slowest layers"
    header = wrap(
        f"== {prediction.device}: {verdict}; {prediction.inferences_per_day:g} inferences a day, flash: {_flash_form(prediction)}; {what}",
        indent="   ",
    )
    notes = "".join("\n" + wrap(f"note: {note}", indent="  ") for note in getattr(prediction, "notes", []))
    return header + notes + "\n" + _table(["layer", "op", "precision", "work", "ms", "share", "bound", "live kB"], rows, right=(3, 4, 5, 7))
