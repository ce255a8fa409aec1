"""The training API: learning, determinism, masks, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgbench.errors import EcgbenchError
from ecgbench.testing import TinyNet, fast_recipe, make_random_splits
from ecgbench.train.trainer import Trainer, length_buckets, load_checkpoint, random_crops, save_checkpoint


def _train(seed=0, epochs=5):
    splits = make_random_splits(seed=0)
    trainer = Trainer(splits, fast_recipe(epochs=epochs), seed=seed)
    torch.manual_seed(seed)
    model = TinyNet()
    result = trainer.fit(model)
    return trainer, model, result


def test_training_beats_chance_and_is_deterministic():
    trainer, model, result = _train()
    scores = trainer.evaluate(model, "val")
    assert scores["challenge_f1"] == pytest.approx(result.best_val_challenge_f1)
    assert result.best_val_challenge_f1 > 0.6  # chance for 4 balanced classes is ~0.25
    _, model2, result2 = _train()
    assert result2.history == result.history
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)


def test_masked_weights_stay_exactly_zero():
    splits = make_random_splits()
    trainer = Trainer(splits, fast_recipe(epochs=2), seed=0)
    model = TinyNet()
    masks = {"conv2.weight": (torch.rand_like(model.conv2.weight) > 0.5).float()}
    trainer.fit(model, masks=masks)
    assert torch.all(model.conv2.weight[masks["conv2.weight"] == 0] == 0)
    assert torch.count_nonzero(model.conv2.weight) == int(masks["conv2.weight"].sum())


def test_masks_for_unknown_parameters_are_rejected():
    trainer = Trainer(make_random_splits(), fast_recipe(epochs=1), seed=0)
    with pytest.raises(EcgbenchError, match="nope.weight"):
        trainer.fit(TinyNet(), masks={"nope.weight": torch.ones(1)})


def test_early_stopping_restores_best_epoch():
    splits = make_random_splits()
    trainer = Trainer(splits, fast_recipe(epochs=30, patience=2, lr=3e-2), seed=1)
    model = TinyNet()
    result = trainer.fit(model)
    best = max(row["val_challenge_f1"] for row in result.history)
    assert result.epochs_run < 30 or result.best_epoch == 30
    assert result.best_val_challenge_f1 == best
    assert trainer.evaluate(model, "val")["challenge_f1"] == pytest.approx(best)


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = TinyNet()
    path = tmp_path / "m.pt"
    save_checkpoint(model, path)
    other = load_checkpoint(TinyNet(), path)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(EcgbenchError, match="does not match the model.*shape mismatch"):
        load_checkpoint(TinyNet(width=4), path)
    path.write_bytes(b"garbage")
    with pytest.raises(EcgbenchError, match="corrupt.*delete it to retrain"):
        load_checkpoint(TinyNet(), path)


def test_crops_pad_short_records_and_buckets_keep_whole_records():
    from ecgbench.data.arrays import SignalSet

    data = SignalSet(np.arange(10, dtype=np.float32) + 1, np.array([0, 3, 10]), np.array([0, 1]), ["a", "b"])
    crops = random_crops(data, np.array([0, 1]), 5, np.random.default_rng(0))
    assert crops.shape == (2, 1, 5)
    assert crops[0, 0].tolist() == [1, 2, 3, 0, 0]  # short record padded with zeros
    assert set(crops[1, 0].tolist()) <= set(range(4, 11))
    batches = list(length_buckets(data, 8))
    assert sorted(len(x[0, 0]) for _, x in batches) == [3, 7]


def test_onnx_evaluation_matches_torch():
    from ecgbench.train.export import to_onnx

    trainer, model, _ = _train(epochs=2)
    assert trainer.evaluate_onnx(to_onnx(model, 400), "val") == trainer.evaluate(model, "val")


@pytest.mark.slow
def test_hannun34_learns_the_synthetic_ecg_classes(registry, tmp_path):
    """A tiny training run on the synthetic ECG generator clearly beats chance (about 0.25-0.3)."""
    from ecgbench.data.config import DataConfig
    from ecgbench.data.loader import load_splits
    from ecgbench.train.trainer import TrainRecipe

    dataset = registry.get("datasets", "synthetic").from_params({"n_records": 400, "max_duration_s": 30})
    splits = load_splits(dataset, DataConfig(fs_hz=100, window_s=10, split={"val": 0.2, "test": 0.2}), tmp_path)
    trainer = Trainer(splits, TrainRecipe(epochs=6, batch_size=32, lr=1e-3, patience=0, num_threads=2, device="cpu"), seed=0)
    torch.manual_seed(0)
    model = registry.get("models", "hannun34").from_params({"width": 8, "blocks": 8}).build(4)
    result = trainer.fit(model)
    assert result.best_val_challenge_f1 > 0.6


def test_max_eval_records_scores_a_prefix_of_val_and_test_only():
    splits = make_random_splits()
    trainer = Trainer(splits, fast_recipe(epochs=1, max_eval_records=5), seed=0)
    model = TinyNet()
    assert trainer.evaluate(model, "val")["n_records"] == 5
    assert trainer.evaluate(model, "test")["n_records"] == 5
    assert len(trainer.split("train")) == len(splits.train)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_with_mixed_precision_runs_every_epoch():
    # Evaluating after each epoch once moved the model back to the CPU, so CUDA training failed
    # in epoch 2 ("Input type (c10::Half) and bias type (float)"); found on an H200.
    splits = make_random_splits()
    trainer = Trainer(splits, fast_recipe(epochs=3, patience=0, device="cuda", amp=True), seed=0)
    model = TinyNet()
    result = trainer.fit(model)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert next(model.parameters()).device.type == "cpu"  # fit hands the model back on the CPU
