"""Harness overhead: ecgbench's Trainer vs a bare PyTorch loop on the same batches, in one process.

    python benchmarks/bench_trainer_overhead.py

Both train hannun34 (width 8) with Adam on the same random 30-s crops at
100 Hz; the Trainer additionally scores a tiny validation split each epoch
(8 records), as it always does. Runs alternate (bare, trainer, bare, trainer)
so drift of a noisy machine hits both. Target: ratio <= 1.05.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ecgbench.testing import make_random_splits
from ecgbench.train.trainer import Trainer, TrainRecipe, random_crops
from ecgbench_plugins.models.hannun34 import Hannun34

EPOCHS, BATCH, SAMPLES, N_TRAIN = 2, 32, 3000, 256


def build():
    torch.manual_seed(0)
    return Hannun34.from_params({"width": 8}).build(4)


def bare_loop(splits) -> float:
    model, rng = build(), np.random.default_rng(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        model.train()
        order = rng.permutation(len(splits.train))
        for b in range(len(order) // BATCH):
            idx = order[b * BATCH : (b + 1) * BATCH]
            x = torch.from_numpy(random_crops(splits.train, idx, SAMPLES, rng))
            y = torch.from_numpy(splits.train.labels[idx])
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return time.perf_counter() - start


def ecgbench_trainer(splits) -> float:
    recipe = TrainRecipe(epochs=EPOCHS, batch_size=BATCH, patience=0, grad_clip=None, class_weighting=False, lr_schedule="constant", num_threads=torch.get_num_threads(), device="cpu")
    trainer = Trainer(splits, recipe, seed=0)
    model = build()
    start = time.perf_counter()
    trainer.fit(model)
    return time.perf_counter() - start


def main() -> None:
    splits = make_random_splits(n_train=N_TRAIN, n_eval=8, samples=SAMPLES)
    splits.window_s = SAMPLES / splits.fs_hz
    bare, ours = [], []
    for _ in range(2):
        bare.append(bare_loop(splits))
        ours.append(ecgbench_trainer(splits))
    ratio = min(ours) / min(bare)
    print(f"bare loop: {min(bare):.2f} s   ecgbench Trainer: {min(ours):.2f} s   (best of 2, {EPOCHS} epochs x {N_TRAIN // BATCH} batches)")
    print(f"overhead ratio: {ratio:.3f}   (target <= 1.05)")


if __name__ == "__main__":
    main()
