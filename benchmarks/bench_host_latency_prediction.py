"""Does the device simulator predict real latency? Predicted vs measured onnxruntime latency on this machine.

    python benchmarks/bench_host_latency_prediction.py [--out reports/host-latency-validation.md] [--repeats 30]

One run, one process, one thread:

1. calibrate the ``host`` profile on single-operator micro-kernels
   (``ecgbench.measure.latency.calibrate_host_profile``: convolutions, depthwise
   convolutions, matrix-vector products, Relu/Add, a chain of tiny operators),
   never on the models below;
2. build model variants inline: a residual 1-D CNN (1 input channel, kernel 16,
   3000 samples = 10 s at 300 Hz) at several widths and depths, pruned to 50 %
   and 90 % unstructured sparsity, quantized to int8 with onnxruntime's
   quantize_static (QDQ) and quantize_dynamic, and the ``dscnn``
   depthwise-separable family; the list was fixed before the first run, and
   two held-out variants (``HELD_OUT``) were added after the model changed;
3. for each: predict with ``analyze_onnx`` + ``simulate`` on the calibrated host
   profile, and measure with ``measure_onnx_latency``: ``--rounds`` rounds over
   all variants in turn, each the median of ``--repeats`` runs, keeping each
   variant's fastest round (other jobs on a shared machine only slow a round down).

Prints (and writes as Markdown) variant, MACs, predicted ms, measured ms and
error, then the median absolute percentage error and Spearman's rank
correlation. Targets: median error <= 25 %, Spearman >= 0.9. It never fails
on timing: the machine may be shared and noisy.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "reports" / "host-latency-validation.md"
SAMPLES = 3000
KERNEL = 16
TARGET_MDAPE = 25.0
TARGET_SPEARMAN = 0.9


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus identity, ReLU; the exporter folds both BNs into their convs."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, KERNEL, padding="same")
        self.bn1 = nn.BatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, width, KERNEL, padding="same")
        self.bn2 = nn.BatchNorm1d(width)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ResCNN(nn.Module):
    """Stem conv(1 -> width, k16), ``blocks`` residual blocks with a max-pool halving time after every second, mean, Linear."""

    def __init__(self, width: int, blocks: int) -> None:
        super().__init__()
        self.stem = nn.Conv1d(1, width, KERNEL, padding="same")
        layers = []
        for i in range(blocks):
            layers.append(ResidualBlock(width))
            if i % 2 == 1:
                layers.append(nn.MaxPool1d(2))
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, 4)

    def forward(self, x):
        return self.fc(self.body(torch.relu(self.stem(x))).mean(dim=2))


@dataclass
class Variant:
    name: str
    onnx: bytes
    held_out: bool = False  # added after the model was last changed, to test it on variants it never saw


# Variants added after the int8_dynamic and strided-depthwise rates came in (never used to choose them).
HELD_OUT = ("rescnn w16 b4, int8 dynamic", "dscnn w48 (depthwise-separable)")


def _prune(model: nn.Module, sparsity: float) -> nn.Module:
    """Zero the smallest-magnitude ``sparsity`` of each conv's weights (unstructured, layer-wise)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv1d) and module.in_channels > 1:
                w = module.weight
                k = int(w.numel() * sparsity)
                threshold = w.abs().flatten().kthvalue(k).values
                w[w.abs() <= threshold] = 0.0
    return model


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Trained-looking BatchNorm statistics, so folded weights are not trivially scaled copies."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.1, generator=gen)
            module.running_var.uniform_(0.5, 1.5, generator=gen)
    return model


def _quantize(fp32: bytes, mode: str, workdir: Path) -> bytes:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, pre, dst = workdir / "fp32.onnx", workdir / "pre.onnx", workdir / f"{mode}.onnx"
    src.write_bytes(fp32)
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    if mode == "dynamic":
        quantize_dynamic(str(pre), str(dst), per_channel=True, weight_type=QuantType.QInt8)
    else:
        rng = np.random.default_rng(0)
        feeds = iter([{"ecg": rng.standard_normal((1, 1, SAMPLES)).astype(np.float32)} for _ in range(8)])

        class Reader:
            def get_next(self):
                return next(feeds, None)

        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QInt8)
    return dst.read_bytes()


def build_variants(workdir: Path) -> list[Variant]:
    from ecgbench.train.export import to_onnx
    from ecgbench_plugins.models.dscnn import DSCNN

    def export(model: nn.Module) -> bytes:
        return to_onnx(_randomize_bn(model).eval(), SAMPLES)

    variants = []
    for width, blocks in ((8, 2), (16, 2), (16, 4), (24, 4), (32, 2), (32, 4), (48, 4), (64, 4), (32, 8)):
        torch.manual_seed(0)
        variants.append(Variant(f"rescnn w{width} b{blocks}", export(ResCNN(width, blocks))))
    for sparsity in (0.5, 0.9):
        torch.manual_seed(0)
        variants.append(Variant(f"rescnn w32 b4, {sparsity:.0%} sparse", export(_prune(ResCNN(32, 4), sparsity))))
    torch.manual_seed(0)
    fp32_w32 = export(ResCNN(32, 4))
    variants.append(Variant("rescnn w32 b4, int8 static (QDQ)", _quantize(fp32_w32, "static", workdir)))
    variants.append(Variant("rescnn w32 b4, int8 dynamic", _quantize(fp32_w32, "dynamic", workdir)))
    torch.manual_seed(0)
    variants.append(Variant("rescnn w16 b4, int8 static (QDQ)", _quantize(export(ResCNN(16, 4)), "static", workdir)))
    for width in (32, 64):
        torch.manual_seed(0)
        variants.append(Variant(f"dscnn w{width} (depthwise-separable)", export(DSCNN.from_params({"width": width}).build(4))))
    torch.manual_seed(0)
    variants.append(Variant(HELD_OUT[0], _quantize(export(ResCNN(16, 4)), "dynamic", workdir), held_out=True))
    torch.manual_seed(0)
    variants.append(Variant(HELD_OUT[1], export(DSCNN.from_params({"width": 48}).build(4)), held_out=True))
    return variants


def run(repeats: int, rounds: int) -> dict:
    from ecgbench.measure.latency import calibrate_host_profile, measure_onnx_latency
    from ecgbench.measure.onnx_graph import analyze_onnx
    from ecgbench.measure.simulator import simulate

    torch.set_num_threads(1)
    started = time.perf_counter()
    host, _records = calibrate_host_profile(threads=1, repeats=repeats)
    calibration_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        variants = build_variants(Path(tmp))
    measured_rounds: list[list[float]] = [[] for _ in variants]
    for round_index in range(rounds):
        for i, variant in enumerate(variants):
            stats = measure_onnx_latency(variant.onnx, (1, 1, SAMPLES), threads=1, warmup=5 if round_index == 0 else 2, repeats=repeats)
            measured_rounds[i].append(stats.median_ms)
    rows = []
    for variant, medians in zip(variants, measured_rounds):
        graph = analyze_onnx(variant.onnx, (1, 1, SAMPLES))
        predicted = simulate(graph, host).latency_ms
        measured = min(medians)
        rows.append({
            "variant": variant.name, "held_out": variant.held_out, "macs": graph.macs, "effective_macs": graph.effective_macs,
            "predicted_ms": predicted, "measured_ms": measured, "error_pct": 100 * (predicted - measured) / measured,
            "round_spread_pct": 100 * (max(medians) - measured) / measured,
        })
        print(f"{variant.name:38s} {graph.macs / 1e6:9.1f} M  predicted {predicted:8.3f} ms  measured {measured:8.3f} ms  "
              f"{rows[-1]['error_pct']:+6.1f} %", flush=True)
    mdape, rho = summary([r for r in rows if not r["held_out"]])
    return {"host": host, "rows": rows, "mdape": mdape, "spearman": rho, "calibration_s": calibration_s, "repeats": repeats, "rounds": rounds}


def _family(name: str) -> str:
    if "int8 dynamic" in name:
        return "int8 dynamic"
    if "int8" in name:
        return "int8 static (QDQ)"
    if name.startswith("dscnn"):
        return "depthwise-separable fp32"
    return "residual CNN fp32 (incl. sparse)"


def summary(rows: list[dict]) -> tuple[float, float | None]:
    """(median absolute % error, Spearman rho or None for fewer than 3 rows)."""
    from scipy.stats import spearmanr

    mdape = statistics.median(abs(r["error_pct"]) for r in rows)
    if len(rows) < 3:
        return mdape, None
    return mdape, float(spearmanr([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]).statistic)


def markdown(result: dict) -> str:
    import onnxruntime as ort

    host = result["host"]
    rates = host.macs_per_cycle
    per_s = lambda r: f"{r * host.clock_hz / 1e9:.3g}"  # noqa: E731
    lines = [
        "# Host latency: simulator prediction vs onnxruntime measurement",
        "",
        "Regenerate with:",
        "",
        "    python benchmarks/bench_host_latency_prediction.py --out reports/host-latency-validation.md",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {platform.system()} {platform.release()}, "
        f"onnxruntime {ort.__version__}, torch {torch.__version__}, 1 intra-op thread, input 1 x 1 x {SAMPLES} "
        f"(10 s at 300 Hz). Measured {time.strftime('%Y-%m-%d %H:%M')}. Each variant: {result['rounds']} rounds over all "
        f"variants, each the median of {result['repeats']} runs; the fastest round is kept ('spread' is the slowest round's excess).",
        "",
        f"The host profile was calibrated in the same run ({result['calibration_s']:.1f} s) on single-operator "
        "micro-kernels (`ecgbench.measure.latency.calibrate_host_profile`), never on these models. Calibrated rates, G per second:",
        "",
        "| kernel kind | conv MACs | im2col values | depthwise MACs, stride 1 | depthwise MACs, stride 2 | fc MACs | element ops |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for precision in ("fp32", "int8", "int8_dynamic"):
        r = getattr(rates, precision)
        elementwise = per_s(r.elementwise) if hasattr(r, "elementwise") else "(float)"
        lines.append(
            f"| {precision} | {per_s(r.conv)} | {per_s(r.im2col)} | {per_s(r.depthwise_conv)} | "
            f"{per_s(host.rate(precision, 'depthwise_conv_strided'))} | {per_s(r.fc)} | {elementwise} |"
        )
    lines += [
        "",
        f"Bandwidth {host.bandwidth_bytes_per_s / 1e9:.3g} GB/s; per-operator cost {host.layer_overhead_cycles / host.clock_hz * 1e6:.2f} us.",
        "",
        "| variant | MACs | predicted ms | measured ms | error % | spread % |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        name = f"{r['variant']} (held out)" if r["held_out"] else r["variant"]
        lines.append(
            f"| {name} | {r['macs'] / 1e6:.1f} M | {r['predicted_ms']:.3f} | {r['measured_ms']:.3f} | "
            f"{r['error_pct']:+.1f} | {r['round_spread_pct']:.1f} |"
        )
    ok = lambda good: "meets" if good else "MISSES"  # noqa: E731
    fixed = [r for r in result["rows"] if not r["held_out"]]
    lines += [
        "",
        "## Summary",
        "",
        f"- The {len(fixed)} variants fixed before the first run: median absolute error **{result['mdape']:.1f} %** "
        f"(target <= {TARGET_MDAPE:.0f} %: {ok(result['mdape'] <= TARGET_MDAPE)}); Spearman **{result['spearman']:.3f}** "
        f"(target >= {TARGET_SPEARMAN}: {ok(result['spearman'] >= TARGET_SPEARMAN)}).",
    ]
    if len(fixed) < len(result["rows"]):
        mdape_all, rho_all = summary(result["rows"])
        lines.append(f"- With the {len(result['rows']) - len(fixed)} held-out variants, all {len(result['rows'])}: "
                     f"median absolute error {mdape_all:.1f} %, Spearman {rho_all:.3f}.")
    families: dict[str, list[dict]] = {}
    for r in result["rows"]:
        families.setdefault(_family(r["variant"]), []).append(r)
    for family, rows in families.items():
        mdape, rho = summary(rows)
        rho_text = f", Spearman {rho:.3f}" if rho is not None else ""
        lines.append(f"- {family} ({len(rows)} variants): median absolute error {mdape:.1f} %{rho_text}.")
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


NOTES = """## What changed in the model (this revision)

The 16 variants above were fixed before the first run and have not changed;
the two marked "held out" were added after this revision's model changes and
never used to choose them. Every new rate is calibrated on micro-kernels in
`ecgbench.measure.latency`, never on the variants.

1. **Dynamic int8 is its own kernel kind.** The analyzer marks ConvInteger and
   MatMulInteger (what `quantize_dynamic` emits after DynamicQuantizeLinear) as
   `quantization: "dynamic"`; a profile may give an `int8_dynamic` rate table,
   calibrated here on the bare ConvInteger / MatMulInteger kernels
   `quantize_dynamic` emits (uint8 activations, int8 weights; the float
   quantize / scale operators around them are costed as their own layers and
   took about 3 % of a quantize_dynamic'd conv). A profile without the table
   (every microcontroller profile: TFLite Micro and CMSIS-NN run only static
   int8) costs such layers at its int8 rates and the prediction's `notes` say so.
2. **Strided depthwise convolutions have their own rate.** Depthwise micro-kernels
   at stride 1 and stride 2 (k9 and k16, 16 and 64 channels) gave, per MAC,
   about 5.2 and 2.1 G MACs/s in fp32 (2.5x apart at every shape tried, 16-128
   channels) and 0.8 vs 0.6 G/s in ConvInteger, but no gap in the fused QDQ
   int8 path; so `depthwise_conv_strided` is an optional rate per precision
   (microcontroller profiles omit it: CMSIS-NN computes only the strided
   outputs). The previous revision used one depthwise rate, a mean over both strides.

## Where the prediction still misses, and why

- **int8 static (QDQ)**: predicted about 2.5x too fast. Checked in
  onnxruntime's optimized graph (`SessionOptions.optimized_model_filepath`):
  it fuses only the second convolution of each residual block (4 QLinearConv)
  and runs the stem and every first convolution as float Conv between
  DequantizeLinear/QuantizeLinear (5 Conv). The cause is in onnxruntime's x86
  graph rewrites, not in the QDQ graph: EnsureUniqueDQForNodeUnit gives each
  reader of a shared DequantizeLinear its own copy, QDQS8ToU8Transformer then
  rewrites an int8 Q->DQ pair to uint8 only where the QuantizeLinear has a single
  reader, and the QDQ Conv selector requires input and output of the same type.
  A convolution whose input also feeds the residual Add (each block's first) or
  whose output does (the stem) ends up int8 on one side and uint8 on the other
  and is not fused. Extracted alone, with the same weights and scales, every one
  of these convolutions is fused. The rule "input and weight through
  DequantizeLinear, output into QuantizeLinear" (what the analyzer uses)
  picks all 9; onnxruntime's rule depends on activation fan-out and on the
  platform (no uint8 rewrite on Arm64), so the analyzer stays device-independent
  and follows QDQ semantics, as a TFLite Micro deployment of the same model would run it.
- **depthwise-separable**: still predicted about 25-30 % too fast. onnxruntime's
  per-node profile of dscnn w32 shows its depthwise layers, at 750-1500
  positions, run about 25 % below the stride-2 rate measured at 3000 positions,
  and its 1x1 pointwise convolutions (plain GEMMs over few positions) below the
  dense k16 rate. Neither is modelled.
- Sparse variants are predicted at their dense cost because onnxruntime's CPU kernels
  are dense (the host profile declares no sparse kernels), and measure the same.

## How the model got here (disclosed: decided while looking at earlier runs)

1. First run: one MAC rate per operator class, int8 calibrated on hand-built
   QLinearConv (S8S8, QOperator) kernels, depthwise on stride-1 kernels only. All 16
   variants: median error 22.6 %, Spearman 0.93; the fp32 residual CNNs ranged from
   -50 % (width 8) to +40 % (width 64), and int8 static was predicted 4x too slow.
2. A single conv rate could not explain the calibration micro-kernels themselves:
   `t = MACs / R + im2col values / E`, fitted on the conv micro-kernels alone, explains
   the four fp32 ones within 4 %, so the im2col copy is now a term of the model
   (`im2col` rate per precision; CMSIS-NN's arm_convolve_s8 builds the same columns).
   It fits the int8 micro-kernels only within about 28 %: onnxruntime's int8 GEMM is so
   fast here that layout work (NCHW/NHWC transposes, requantization) dominates, and the
   fit leaves the per-MAC term nearly free (hence the very large int8 "conv MACs" rate). int8 is now
   calibrated on QDQ micro-kernels, the form `int8_static` emits, which onnxruntime
   runs about 20x faster than the hand-built QLinearConv. Depthwise micro-kernels
   mixed k9/stride 2 and k16/stride 1. A Relu/Clip that is the only reader of a
   conv/fc output is fused (free), as TFLite and onnxruntime do.
3. Calibration and measurement keep the fastest of several rounds' medians: the
   2-core machine is shared, and in one run three variants measured 1.6-1.9x slower
   than in the runs before and after.
4. Previous revision's result: median error 2.6 %, Spearman 0.832 (int8 dynamic
   -92 %, int8 static -53 to -61 %, dscnn -47 to -50 %). This revision added the
   `int8_dynamic` rates and the strided depthwise rate (see above).
"""



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help=f"write the Markdown report here (e.g. {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per round, per model and micro-kernel (median kept)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds over all models; each model's fastest round median is kept")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's advice
    result = run(args.repeats, args.rounds)
    print(f"\nfixed variants: median |error| {result['mdape']:.1f} % (target <= {TARGET_MDAPE:.0f} %), "
          f"Spearman {result['spearman']:.3f} (target >= {TARGET_SPEARMAN})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(result), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
