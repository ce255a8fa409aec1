"""No strategy may look at the test split: decisions (selection, early stopping, acceptance) use validation only."""

from __future__ import annotations

import pytest

from ecgbench.kinds.compressor import ModelArtifact
from ecgbench.testing import make_context

STRATEGIES = [
    ("magnitude", {"sparsity": 0.5, "finetune_epochs": 1}),
    ("structured", {"ratio": 0.3, "finetune_epochs": 1}),
    ("int8_static", {"calibration_records": 8}),
    ("lth", {"rounds": 1, "train_epochs": 1}),
    ("lth_ecg", {"max_rounds": 2, "train_epochs": 1}),
]


@pytest.mark.parametrize("name, params", STRATEGIES)
def test_strategy_never_reads_the_test_split(name, params, registry, tmp_path, monkeypatch):
    model, ctx = make_context(tmp_path)
    trainer = ctx.trainer
    real_split = trainer.split

    def guarded(split):
        if split == "test":
            raise AssertionError(f"{name} read the test split")
        return real_split(split)

    monkeypatch.setattr(trainer, "split", guarded)
    monkeypatch.setattr(trainer.splits, "test", None)  # any direct access fails too
    compressor = registry.get("compressors", name).from_params(params)
    outcome = compressor.compress(ModelArtifact(model=model), ctx)
    assert outcome.artifact.model is not None or outcome.artifact.onnx is not None
