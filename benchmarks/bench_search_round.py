"""Cost of one ticket-search round: retraining a pruned width-8 hannun34, before and after the speed settings.

    python benchmarks/bench_search_round.py [--data FOLDER] [--batches 24] [--repeats 3] [--full]

One round of ``lth_ecg`` in suites/cinc2017-cpu-v2.yaml is ``Trainer.fit`` of a
50 %-pruned hannun34 {width: 8} for ``train_epochs`` (10) epochs at 100 Hz,
15-s crops, batch 32, one thread; every epoch trains on the whole training
split and scores the whole validation split. On real CinC 2017 records (FOLDER,
else $ECGBENCH_CINC2017_DIR, else ../shared/data/cinc2017; the synthetic
stand-in when absent) this script times, for each variant, ``--batches``
training steps and one validation pass, alternating the variants ``--repeats``
times in one process (a shared machine drifts; the best of the repeats
counts), and extrapolates a round as ``epochs x (batches per epoch x step +
validation pass)``. ``--full`` also times one complete round of each variant.

It prints seconds per round, training samples/s, achieved training GMAC/s
(forward + backward taken as 3x the forward multiply-accumulates) and that
rate's fraction of the machine's fp32 convolution rate (what ``ecgbench devices
calibrate`` fits, measured here with the same micro-kernels), plus the load
average before and after. It prints figures and never fails on timing.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = REPO.parent / "shared" / "data" / "cinc2017"
ROUND_EPOCHS = 10  # lth_ecg train_epochs in suites/cinc2017-cpu-v2.yaml
PRUNE_RATE = 0.5  # lth_ecg initial_rate


@dataclass(frozen=True)
class Variant:
    """One way of running the same round."""

    label: str
    recipe: dict  # TrainRecipe settings on top of the suite's


VARIANTS = (
    Variant("baseline (suite v2 as it was)", {}),
    Variant("conv_backward: convolution", {"conv_backward": "convolution"}),
)
SUITE_TRAINING = {"epochs": 20, "batch_size": 32, "lr": 1e-3, "patience": 5, "num_threads": 1, "device": "cpu"}


def load_data(folder: Path):
    """The suite's CinC 2017 splits (100 Hz, 15-s crops), else a synthetic stand-in of the same shape."""
    from ecgbench.data.config import DataConfig
    from ecgbench.data.loader import load_splits

    if (folder / "REFERENCE.csv").is_file():
        from ecgbench_plugins.datasets.cinc2017 import CinC2017

        cache = Path(os.environ.get("ECGBENCH_HOME", tempfile.gettempdir())) / "bench-cache"
        config = DataConfig(fs_hz=100, window_s=15, split={"val": 0.15, "test": 0.15, "seed": 0})
        return load_splits(CinC2017.from_params({"path": str(folder)}), config, cache), f"CinC 2017 at {folder}"
    from ecgbench.testing import make_random_splits

    splits = make_random_splits(n_train=1024, n_eval=256, samples=3000)
    splits.window_s = 15.0
    return splits, "synthetic stand-in (no CinC 2017 folder): 1024 train / 256 val records of 30 s"


def pruned_model(n_classes: int, window: int):
    """A width-8 hannun34 with half of its prunable weights pruned by magnitude, its masks and forward MACs per crop."""
    from ecgbench_plugins.compressors import _masks
    from ecgbench_plugins.models.hannun34 import Hannun34

    torch.manual_seed(0)
    model = Hannun34.from_params({"width": 8}).build(n_classes)
    masks = _masks.prune_remaining(model, {}, PRUNE_RATE)
    _masks.apply_masks(model, masks)
    return model, masks, conv_macs(model, window)


def conv_macs(model: torch.nn.Module, window: int) -> int:
    """Dense multiply-accumulates of one ``[1, 1, window]`` crop, as the simulator counts them (its ONNX graph analysis)."""
    from ecgbench.measure.onnx_graph import analyze_onnx
    from ecgbench.train.export import to_onnx

    return analyze_onnx(to_onnx(model, samples=window), (1, 1, window)).macs


def conv_rate(threads: int) -> tuple[float, str]:
    """fp32 convolution MACs/s: the calibrated host profile's when there is one, else measured now the same way."""
    from ecgbench.kinds.device import calibrated_host_profile_path, load_profile
    from ecgbench.measure import latency

    path = calibrated_host_profile_path()
    if path is not None:
        profile = load_profile(path)
        if profile.calibration:
            return profile.macs_per_cycle.fp32.conv * profile.clock_hz, f"calibrated profile {path}"
    rng = np.random.default_rng(0)
    kernels = [latency._conv_kernel(c, c, latency.CONV_KERNEL, 1, False, rng) for c in latency.CONV_WIDTHS]
    rate, _im2col = latency.fit_conv_rates(kernels, [latency._seconds(k, threads, 15) for k in kernels])
    return rate, f"measured now with `ecgbench devices calibrate`'s fp32 conv kernels ({threads} thread)"


def time_variant(variant: Variant, splits, model, masks, batches: int) -> tuple[float, float]:
    """(seconds per training step, seconds per validation pass) of ``variant``."""
    from ecgbench.train.trainer import Trainer, TrainRecipe

    recipe = TrainRecipe(**{**SUITE_TRAINING, **variant.recipe, "max_batches_per_epoch": batches, "max_eval_records": 1})
    trainer = Trainer(splits, recipe, seed=0)
    candidate = copy.deepcopy(model)
    start = time.perf_counter()
    trainer.fit(candidate, epochs=1, masks=masks)  # the one-record validation pass is negligible
    step_s = (time.perf_counter() - start) / batches
    full_eval = Trainer(splits, TrainRecipe(**{**SUITE_TRAINING, **variant.recipe}), seed=0)
    start = time.perf_counter()
    full_eval.evaluate(candidate, "val")
    return step_s, time.perf_counter() - start


def full_round(variant: Variant, splits, model, masks) -> tuple[float, float, int]:
    """(seconds, best validation challenge F1, epochs run) of one complete round."""
    from ecgbench.train.trainer import Trainer, TrainRecipe

    trainer = Trainer(splits, TrainRecipe(**{**SUITE_TRAINING, **variant.recipe}), seed=0)
    fit = trainer.fit(copy.deepcopy(model), epochs=ROUND_EPOCHS, masks=masks)
    return fit.seconds, fit.best_val_challenge_f1, fit.epochs_run


def trajectories(splits, n_classes: int, window: int, seeds: list[int], epochs: int) -> None:
    """Validation challenge F1 per epoch of a round retrained by each variant, for each seed (model init and data order).

    The variants differ by float rounding only, so their gap should look like the gap between seeds, not larger.
    """
    from ecgbench.train.trainer import Trainer, TrainRecipe

    print(f"\nvalidation challenge F1 per epoch of a round ({epochs} epochs from the pruned initial weights; recipe patience off)")
    for seed in seeds:
        torch.manual_seed(seed)
        from ecgbench_plugins.compressors import _masks
        from ecgbench_plugins.models.hannun34 import Hannun34

        model = Hannun34.from_params({"width": 8}).build(n_classes)
        masks = _masks.prune_remaining(model, {}, PRUNE_RATE)
        _masks.apply_masks(model, masks)
        for variant in VARIANTS:
            trainer = Trainer(splits, TrainRecipe(**{**SUITE_TRAINING, **variant.recipe, "patience": 0}), seed=seed)
            fit = trainer.fit(copy.deepcopy(model), epochs=epochs, masks=masks)
            f1s = " ".join(f"{row['val_challenge_f1']:.3f}" for row in fit.history)
            print(f"seed {seed} {variant.label:34} {fit.seconds:6.0f} s  F1 by epoch: {f1s}  best {fit.best_val_challenge_f1:.3f}", flush=True)


def stopped_early(history: list[dict], patience: int) -> tuple[int, float]:
    """(epochs run, best validation F1) had ``train_patience: patience`` stopped this run: the same trajectory, cut short."""
    best, stale = -1.0, 0
    for row in history:
        if row["val_challenge_f1"] > best:
            best, stale = row["val_challenge_f1"], 0
        else:
            stale += 1
        if patience and stale >= patience:
            return row["epoch"], best
    return len(history), best


def patience_study(splits, n_classes: int, seeds: list[int], conv_backward: str, warmup_epochs: int = 2) -> None:
    """A realistic round per seed (train ``warmup_epochs``, prune half by magnitude, retrain ROUND_EPOCHS with
    ``conv_backward`` and no early stop), and what ``train_patience`` would have cut from it."""
    from ecgbench.train.trainer import Trainer, TrainRecipe
    from ecgbench_plugins.compressors import _masks
    from ecgbench_plugins.models.hannun34 import Hannun34

    print(f"\nround retraining per seed: {warmup_epochs} epochs of training, {PRUNE_RATE:.0%} pruned, {ROUND_EPOCHS} epochs retrained; conv_backward: {conv_backward}")
    for seed in seeds:
        recipe = TrainRecipe(**{**SUITE_TRAINING, "conv_backward": conv_backward, "patience": 0})
        trainer = Trainer(splits, recipe, seed=seed)
        torch.manual_seed(seed)
        model = Hannun34.from_params({"width": 8}).build(n_classes)
        trainer.fit(model, epochs=warmup_epochs)
        masks = _masks.prune_remaining(model, {}, PRUNE_RATE)
        _masks.apply_masks(model, masks)
        fit = trainer.fit(model, epochs=ROUND_EPOCHS, masks=masks)
        f1s = " ".join(f"{row['val_challenge_f1']:.3f}" for row in fit.history)
        print(f"seed {seed}: {fit.seconds:.0f} s, val F1 by epoch: {f1s}", flush=True)
        for patience in (1, 2, 3, 5):
            epochs, best = stopped_early(fit.history, patience)
            print(f"  train_patience {patience}: {epochs:2d} epochs, best val F1 {best:.3f} (full round {fit.best_val_challenge_f1:.3f})", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("ECGBENCH_CINC2017_DIR", DEFAULT_FOLDER)))
    parser.add_argument("--batches", type=int, default=24, help="training steps timed per variant and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also time one complete round per variant")
    parser.add_argument("--trajectories", type=int, nargs="*", metavar="SEED", help="also compare the variants' validation F1 per epoch for these seeds")
    parser.add_argument("--trajectory-epochs", type=int, default=3)
    parser.add_argument("--patience-study", type=int, nargs="*", metavar="SEED", help="also show what train_patience would cut from a round")
    parser.add_argument("--study-backward", choices=["torch", "convolution"], default="convolution", help="conv_backward of the patience study")
    parser.add_argument("--skip-timing", action="store_true", help="only the trajectories and the patience study")
    args = parser.parse_args(argv)
    torch.set_num_threads(SUITE_TRAINING["num_threads"])
    load_before = os.getloadavg()
    splits, source = load_data(args.data)
    window = int(round(splits.window_s * splits.fs_hz))
    model, masks, macs = pruned_model(len(splits.classes), window)
    batch = SUITE_TRAINING["batch_size"]
    n_batches = len(splits.train) // batch
    rate, rate_source = conv_rate(SUITE_TRAINING["num_threads"])
    print(f"data: {source}; {len(splits.train)} train records ({n_batches} batches of {batch}), {len(splits.val)} val records")
    print(f"model: hannun34 width 8, {PRUNE_RATE:.0%} pruned (dense kernels still run), {macs / 1e6:.1f} M forward MACs per {window}-sample crop")
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} thread; conv rate {rate / 1e9:.1f} GMAC/s ({rate_source})")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}")
    steps: dict[str, list[float]] = {v.label: [] for v in VARIANTS}
    evals: dict[str, list[float]] = {v.label: [] for v in VARIANTS}
    if args.trajectories:
        trajectories(splits, len(splits.classes), window, args.trajectories, args.trajectory_epochs)
    if args.patience_study:
        patience_study(splits, len(splits.classes), args.patience_study, args.study_backward)
    if args.skip_timing:
        return 0
    for _ in range(args.repeats):
        for variant in VARIANTS:
            step_s, eval_s = time_variant(variant, splits, model, masks, args.batches)
            steps[variant.label].append(step_s)
            evals[variant.label].append(eval_s)
    print(f"\nbest of {args.repeats} alternating repeats, {args.batches} steps each; a round = {ROUND_EPOCHS} x (steps + validation pass)")
    print(f"{'variant':34} {'step s':>7} {'val pass s':>10} {'round s':>8} {'samples/s':>9} {'GMAC/s':>7} {'of conv rate':>12} {'speed-up':>8}")
    base_round = None
    for variant in VARIANTS:
        step_s, eval_s = min(steps[variant.label]), min(evals[variant.label])
        round_s = ROUND_EPOCHS * (n_batches * step_s + eval_s)
        base_round = base_round or round_s
        gmacs = 3 * macs * batch / step_s / 1e9
        print(
            f"{variant.label:34} {step_s:7.3f} {eval_s:10.2f} {round_s:8.0f} {batch / step_s:9.0f} {gmacs:7.2f} "
            f"{gmacs * 1e9 / rate:12.1%} {base_round / round_s:7.2f}x"
        )
    if args.full:
        print(f"\ncomplete rounds ({ROUND_EPOCHS} epochs, recipe patience {SUITE_TRAINING['patience']}):")
        for variant in VARIANTS:
            seconds, f1, epochs = full_round(variant, splits, model, masks)
            print(f"{variant.label:34} {seconds:8.0f} s  {epochs} epochs  best val challenge F1 {f1:.3f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
