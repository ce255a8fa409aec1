"""``lth`` and ``lth_ecg``: rewinding, masks through retraining, and the goal-driven search's accept/reject rules."""

from __future__ import annotations

import json

import pytest
import torch

from ecgbench.kinds.compressor import CompressionContext, ModelArtifact
from ecgbench.errors import CompressionError, ConfigError
from ecgbench.testing import fast_recipe, make_context, make_random_splits
from ecgbench.train.trainer import Trainer
from ecgbench_plugins.compressors import lottery
from ecgbench_plugins.compressors.lottery import GoalDrivenTicketSearch, LotteryTicket, LthEcg, Ticket, late_rewind_state

PRUNABLE = ("conv1.weight", "conv2.weight", "fc.weight")  # 72 + 576 + 32 = 680 weights in TinyNet(8)


def _context(tmp_path):
    torch.set_num_threads(1)
    return make_context(tmp_path, recipe=fast_recipe(epochs=3))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _context(tmp_path_factory.mktemp("lottery"))


def _pruned(masks):
    return sum(int((masks[n] == 0).sum()) for n in PRUNABLE)


def _assert_masked_weights_zero(artifact):
    params = dict(artifact.model.named_parameters())
    for name, mask in artifact.masks.items():
        assert torch.all(params[name][mask == 0] == 0), name


# --- lth ---------------------------------------------------------------------------------------


def test_lth_prunes_the_rate_of_the_remaining_weights_each_round_and_keeps_masks_through_retraining(trained):
    model, ctx = trained
    out = LotteryTicket.from_params({"rounds": 2, "rate": 0.2, "train_epochs": 2}).run(ModelArtifact(model), ctx)
    # round 1: round(0.2 * 680) = 136; round 2: 136 + round(0.2 * 544) = 136 + 109 = 245
    assert _pruned(out.artifact.masks) == 245
    assert [r["round"] for r in out.record["rounds"]] == [1, 2]
    json.dumps(out.record, allow_nan=False)
    assert out.record["rounds"][0]["sparsity"] == pytest.approx(136 / 680, abs=1e-6)
    _assert_masked_weights_zero(out.artifact)


def test_lth_rewinds_survivors_exactly_to_their_initial_values(trained):
    model, ctx = trained
    out = LotteryTicket.from_params({"rounds": 1, "train_epochs": 0}).run(ModelArtifact(model), ctx)
    state = out.artifact.model.state_dict()
    for name in PRUNABLE:
        keep = out.artifact.masks[name] == 1
        assert torch.equal(state[name][keep], ctx.initial_state[name][keep])
        assert torch.all(state[name][~keep] == 0)
    assert torch.equal(state["conv1.bias"], ctx.initial_state["conv1.bias"])
    assert not torch.equal(state["conv2.weight"], model.state_dict()["conv2.weight"])  # not the trained weights


def test_late_rewinding_restores_the_weights_after_k_epochs(tmp_path):
    # Two identical contexts: the plugin's first fit on one is the test's first fit on the other.
    model, ctx = _context(tmp_path / "a")
    _, twin = _context(tmp_path / "b")
    expected = late_rewind_state(twin, epochs=1)
    settings = {"rounds": 1, "train_epochs": 0, "rewind": "iteration", "rewind_epochs": 1}
    out = LotteryTicket.from_params(settings).run(ModelArtifact(model), ctx)
    state = out.artifact.model.state_dict()
    for name in PRUNABLE:
        keep = out.artifact.masks[name] == 1
        assert torch.equal(state[name][keep], expected[name][keep])
        assert not torch.equal(expected[name], ctx.initial_state[name])  # one epoch moved them
    assert out.record["rewind"] == "iteration" and out.record["rewind_epochs"] == 1


def test_lth_stops_at_the_target_sparsity(trained):
    model, ctx = trained
    settings = {"rounds": 10, "rate": 0.5, "target_sparsity": 0.8, "train_epochs": 0}
    out = LotteryTicket.from_params(settings).run(ModelArtifact(model), ctx)
    # 0.5, 0.75, then the last round is cut to 1 - 0.2 / 0.25 = 0.2 of the remaining: 0.8 exactly
    assert [r["rate"] for r in out.record["rounds"]] == pytest.approx([0.5, 0.5, 0.2])
    assert _pruned(out.artifact.masks) == 544  # 0.8 * 680


def test_lottery_strategies_reject_onnx_input(trained):
    _, ctx = trained
    for strategy in (LotteryTicket(), LthEcg()):
        with pytest.raises(CompressionError, match="before quantization"):
            strategy.run(ModelArtifact(None, onnx=b"x", precision="int8"), ctx)


# --- the goal-driven search, scripted ----------------------------------------------------------


def _scripted_search(scores, **settings):
    """Candidates are sparsities; ``scores`` are the validation F1 of successive candidates."""
    rates = []
    scripted = iter(scores)

    def prune_and_retrain(sparsity, rate):
        rates.append(rate)
        return 1 - (1 - sparsity) * (1 - rate)

    options = dict(min_val_f1=0.89, initial_rate=0.2, alpha=2.0, min_rate=0.025, max_rounds=30)
    options.update(settings)
    search = GoalDrivenTicketSearch(prune_and_retrain, lambda candidate: next(scripted), lambda s: s, **options)
    return search.run(0.0), rates


def test_search_rejects_a_budget_breaking_round_and_returns_the_last_accepted_ticket():
    result, rates = _scripted_search([0.95, 0.80, 0.895, 0.50, 0.88, 0.70])
    assert [r.accepted for r in result.rounds] == [True, False, True, False, False, False]
    # rejected rounds divide the rate by alpha = 2: 0.2, 0.2 (rejected), 0.1, 0.1 (rejected), 0.05, 0.025, then 0.0125 < 0.025
    assert rates == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05, 0.025])
    assert result.best == pytest.approx(1 - 0.8 * 0.9)  # the round-3 ticket
    assert result.best_sparsity == pytest.approx(0.28)
    assert not result.goal_met and "min_rate" in result.stop_reason


def test_search_retries_from_the_last_accepted_ticket_not_the_rejected_one():
    result, _ = _scripted_search([0.95, 0.10, 0.95, 0.10, 0.10, 0.10])
    assert result.rounds[1].sparsity == pytest.approx(0.36)  # 0.2 then 0.2 more: rejected
    assert result.rounds[2].sparsity == pytest.approx(1 - 0.8 * 0.9)  # back from 0.2, at rate 0.1


def test_search_caps_the_last_rate_to_land_on_the_target():
    result, rates = _scripted_search([0.95] * 5, target_sparsity=0.3)
    assert rates == pytest.approx([0.2, 0.125])  # 1 - 0.7 / 0.8
    assert result.goal_met and result.best == pytest.approx(0.3)


def test_search_stops_after_max_rounds():
    result, rates = _scripted_search([0.95] * 10, max_rounds=3)
    assert len(rates) == 3 and result.stop_reason.startswith("max_rounds")
    assert result.best == pytest.approx(1 - 0.8**3)


# --- lth_ecg plugin ------------------------------------------------------------------------------


def test_lth_ecg_returns_the_last_accepted_ticket_with_scripted_scores(trained, monkeypatch):
    model, ctx = trained
    real_round = lottery.prune_rewind_retrain
    budget_floor = ctx.dense_val_challenge_f1 - 0.01  # max_f1_drop_points = 1
    scores = iter([budget_floor + 0.005, budget_floor - 0.05, budget_floor, budget_floor - 0.2])
    tickets = []

    def scripted_round(ticket, rate, rewind_to, ctx_, epochs, lr):
        tried = real_round(ticket, rate, rewind_to, ctx_, epochs, lr)
        tickets.append(Ticket(tried.model, tried.masks, next(scores)))
        return tickets[-1]

    monkeypatch.setattr(lottery, "prune_rewind_retrain", scripted_round)
    settings = {"train_epochs": 1, "initial_rate": 0.2, "min_rate": 0.08, "max_f1_drop_points": 1.0}
    out = LthEcg.from_params(settings).run(ModelArtifact(model), ctx)
    record = out.record
    assert [r["accepted"] for r in record["rounds"]] == [True, False, True, False]
    assert [r["rate"] for r in record["rounds"]] == pytest.approx([0.2, 0.2, 0.1, 0.1])
    assert out.artifact.model is tickets[2].model and out.artifact.masks is tickets[2].masks
    assert _pruned(out.artifact.masks) == 136 + 54  # round(0.2 * 680), then round(0.1 * 544)
    assert record["accepted_rounds"] == 2 and record["rejected_rounds"] == 2
    json.dumps(record, allow_nan=False)  # the record is stored as JSON
    assert record["val_challenge_f1"] == pytest.approx(budget_floor)
    assert "min_rate" in record["stop_reason"]
    _assert_masked_weights_zero(out.artifact)


def test_lth_ecg_keeps_the_input_when_no_round_meets_the_budget(trained, monkeypatch):
    model, ctx = trained
    real_round = lottery.prune_rewind_retrain

    def failing_round(*args):
        tried = real_round(*args)
        return Ticket(tried.model, tried.masks, -1.0)

    monkeypatch.setattr(lottery, "prune_rewind_retrain", failing_round)
    out = LthEcg.from_params({"train_epochs": 0, "min_rate": 0.1, "target_reduction": 142.0}).run(ModelArtifact(model), ctx)
    assert _pruned(out.artifact.masks) == 0
    assert torch.equal(out.artifact.model.conv2.weight, model.conv2.weight)
    assert out.record["goal_met"] is False and "unchanged" in out.record["note"]


def test_lth_ecg_reaches_a_target_reduction_with_a_generous_budget(trained):
    model, ctx = trained
    settings = {"train_epochs": 1, "initial_rate": 0.5, "target_reduction": 4.0, "max_f1_drop_points": 100.0}
    out = LthEcg.from_params(settings).run(ModelArtifact(model), ctx)
    assert out.record["goal_met"] is True
    assert _pruned(out.artifact.masks) == 510  # dense / nonzero = 680 / 170 = 4
    assert out.record["achieved_reduction"] == pytest.approx(4.0)
    _assert_masked_weights_zero(out.artifact)


def _family_context(tmp_path, registry, family, settings):
    """A trained model of a built-in family and its CompressionContext (make_context builds TinyNet only)."""
    try:
        model_family = registry.get("models", family)
    except ConfigError:
        pytest.skip(f"model family {family} is not available in this build")
    splits = make_random_splits()
    trainer = Trainer(splits, fast_recipe(epochs=1), seed=0)

    def build():
        torch.manual_seed(0)
        return model_family.from_params(settings).build(4)

    model = build()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    dense_f1 = trainer.fit(model).best_val_challenge_f1
    ctx = CompressionContext(trainer, build, initial, dense_f1, seed=0, workdir=tmp_path, fs_hz=splits.fs_hz, log=lambda msg: None)
    return model, ctx


@pytest.mark.parametrize(("family", "settings"), [("hannun34", {"width": 4, "blocks": 4}), ("dscnn", {"width": 8})])
def test_builtin_model_families_rewind_and_keep_masks(tmp_path, registry, family, settings):
    model, ctx = _family_context(tmp_path, registry, family, settings)
    rewound = LotteryTicket.from_params({"rounds": 1, "rate": 0.5, "train_epochs": 0}).run(ModelArtifact(model), ctx).artifact
    state = rewound.model.state_dict()
    for name, mask in rewound.masks.items():
        assert torch.equal(state[name][mask == 1], ctx.initial_state[name][mask == 1])
    retrained = LotteryTicket.from_params({"rounds": 2, "rate": 0.5, "train_epochs": 1}).run(ModelArtifact(model), ctx)
    assert retrained.record["achieved_sparsity"] == pytest.approx(0.75, abs=1e-3)
    _assert_masked_weights_zero(retrained.artifact)


def test_registered(registry):
    assert registry.get("compressors", "lth") is LotteryTicket
    assert registry.get("compressors", "lth_ecg") is LthEcg
