"""Helpers for ecgbench's tests and for plugin authors' tests: tiny data, tiny models, contexts.

Everything here builds in milliseconds so plugin tests stay fast::

    from ecgbench.testing import make_random_splits, TinyNet, make_context

Plain functions, importable without pytest; the same things as pytest fixtures
(``plugin_manager``, ``registry``, ``tiny_splits``, ``tiny_model``,
``compression_context``) come from :mod:`ecgbench.pytest_plugin`, which pytest
loads by itself once ecgbench is installed (``pytest11`` entry point ``ecgbench``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from ecgbench import CLASSES, hookimpl
from ecgbench.data.arrays import DataSplits, SignalSet
from ecgbench.kinds.base import PluginConfig
from ecgbench.kinds.compressor import CompressionContext, Compressor, ModelBuilder
from ecgbench.kinds.dataset import Dataset, Record
from ecgbench.kinds.model import ModelFamily, ModelSpec
from ecgbench.train.trainer import Trainer, TrainRecipe


def make_signalset(n_records: int, samples: int, seed: int, separable: bool = True) -> SignalSet:
    """Random records whose class is encoded in a per-class sine frequency (learnable when ``separable``)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_records) % len(CLASSES)
    rng.shuffle(labels)
    t = np.arange(samples) / 100.0
    sig = rng.normal(0, 1, size=(n_records, samples)).astype(np.float32)
    if separable:
        freqs = np.array([1.0, 3.0, 6.0, 10.0])[labels]
        sig += 2.0 * np.sin(2 * np.pi * freqs[:, None] * t[None, :]).astype(np.float32)
    offsets = np.arange(n_records + 1, dtype=np.int64) * samples
    return SignalSet(sig.ravel(), offsets, labels.astype(np.int64), [f"r{seed}_{i:04d}" for i in range(n_records)])


def make_random_splits(n_train: int = 64, n_eval: int = 32, samples: int = 400, seed: int = 0) -> DataSplits:
    """Tiny separable train/val/test splits at 100 Hz (4 s records, 4 s training window)."""
    return DataSplits(
        train=make_signalset(n_train, samples, seed),
        val=make_signalset(n_eval, samples, seed + 1),
        test=make_signalset(n_eval, samples, seed + 2),
        fs_hz=100.0,
        window_s=samples / 100.0,
        info={"dataset": "random", "synthetic": True},
    )


class TinyNet(torch.nn.Module):
    """Two conv layers and a classifier: enough structure for pruning and quantization tests."""

    def __init__(self, width: int = 8, n_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv1d(1, width, 9, padding=4)
        self.bn1 = torch.nn.BatchNorm1d(width)
        self.conv2 = torch.nn.Conv1d(width, width, 9, padding=4, stride=2)
        self.bn2 = torch.nn.BatchNorm1d(width)
        self.fc = torch.nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=2))


class TinyDataset(Dataset):
    """A dataset plugin for tests: ``n_records`` separable 4-s records at 100 Hz (:func:`make_signalset`).

    Subclass it to change ``name`` or the ``Config`` defaults when a test needs its own.
    """

    name = "tiny"
    synthetic = True

    class Config(PluginConfig):
        n_records: int = 48
        seed: int = 3

    def records(self, log=None):
        data = make_signalset(self.config.n_records, 400, seed=self.config.seed)
        for i in range(len(data)):
            yield Record(data.record_ids[i], data.signal(i).copy(), 100.0, CLASSES[data.labels[i]])

    def fingerprint(self) -> str:
        return f"{self.name}-{self.config.n_records}-{self.config.seed}"


class TinyNetFamily(ModelFamily):
    """A model family plugin for tests: :class:`TinyNet`, width 4 unless its ``width`` setting says otherwise."""

    name = "tinynet"
    min_samples = 16

    class Config(PluginConfig):
        width: int = 4

    def build(self, n_classes):
        return TinyNet(self.config.width, n_classes)


class FailingCompressor(Compressor):
    """A compressor plugin (``boom``) that always raises: a failed cell, for tests of failure handling."""

    name = "boom"

    def compress(self, artifact, ctx):
        raise ValueError("boom: deliberately failing strategy")


class InterruptingCompressor(Compressor):
    """A compressor plugin (``interrupt``) that raises KeyboardInterrupt: a run stopped by Ctrl-C, for tests."""

    name = "interrupt"

    def compress(self, artifact, ctx):
        raise KeyboardInterrupt


class TinyPlugins:
    """A plugin registering :class:`TinyDataset` (``tiny``) and :class:`TinyNetFamily` (``tinynet``) for a
    tiny suite run; subclass it to add the hooks a test needs."""

    @hookimpl
    def ecgbench_register_datasets(self, register):
        register(TinyDataset)

    @hookimpl
    def ecgbench_register_models(self, register):
        register(TinyNetFamily)


def model_families(name: str) -> type[ModelFamily]:
    """``tinynet`` (:class:`TinyNetFamily`), else the installed model family of that name (for ``ctx.build_model``)."""
    if name == TinyNetFamily.name:
        return TinyNetFamily
    from ecgbench.registry import process_registry

    return process_registry().get("models", name)


def fast_recipe(**overrides) -> TrainRecipe:
    """A recipe for tests: few epochs, one thread, no early stopping surprises."""
    settings = dict(epochs=5, batch_size=16, lr=3e-2, num_threads=1, patience=0, device="cpu")
    settings.update(overrides)
    return TrainRecipe(**settings)


def make_context(
    tmp_path: Path,
    splits: DataSplits | None = None,
    recipe: TrainRecipe | None = None,
    seed: int = 0,
    width: int = 8,
) -> tuple[torch.nn.Module, CompressionContext]:
    """A trained TinyNet and the CompressionContext a compressor receives for it.

    ``ctx.model_spec`` is ``tinynet`` at ``width``; ``ctx.build_model(name, settings)`` builds
    ``tinynet`` or any installed model family (:func:`model_families`).
    """
    splits = splits or make_random_splits(seed=seed)
    trainer = Trainer(splits, recipe or fast_recipe(), seed=seed)

    def build() -> torch.nn.Module:
        torch.manual_seed(seed)
        return TinyNet(width)

    model = build()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    result = trainer.fit(model)
    ctx = CompressionContext(
        trainer=trainer,
        build_model=ModelBuilder(build, families=model_families, n_classes=len(splits.classes), seed=seed),
        model_spec=ModelSpec.of(TinyNetFamily(TinyNetFamily.Config(width=width))),
        initial_state=initial,
        dense_val_challenge_f1=result.best_val_challenge_f1,
        seed=seed,
        workdir=Path(tmp_path),
        fs_hz=splits.fs_hz,
        log=lambda msg: None,
        dense_model=copy.deepcopy(model),
    )
    return model, ctx
