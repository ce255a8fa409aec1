"""``lth`` and ``lth_ecg``: rewinding, masks through retraining, and the goal-driven search's accept/reject rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecgbench.kinds.compressor import CompressionContext, ModelArtifact
from ecgbench.errors import CompressionError, ConfigError
from ecgbench.testing import fast_recipe, make_context, make_random_splits
from ecgbench.train.trainer import Trainer
from ecgbench_plugins.compressors import lottery
from ecgbench.measure.scores import challenge_f1
from ecgbench_plugins.compressors.lottery import (
    GoalDrivenTicketSearch,
    LotteryTicket,
    LthEcg,
    PairedBootstrapRule,
    PointRule,
    Ticket,
    ValScore,
    late_rewind_state,
    paper_rates,
)

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


def test_lr_rewinding_retrains_the_trained_survivors_with_the_schedule_restarted(tmp_path):
    torch.set_num_threads(1)
    model, ctx = make_context(tmp_path, recipe=fast_recipe(epochs=3, lr_schedule="cosine"))
    trained_state = {k: v.clone() for k, v in model.state_dict().items()}
    entering, leaving, histories = [], [], []
    real_fit = ctx.trainer.fit

    def watched_fit(net, **kwargs):
        entering.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        result = real_fit(net, **kwargs)
        leaving.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        histories.append(result.history)
        return result

    ctx.trainer.fit = watched_fit
    out = LotteryTicket.from_params({"rounds": 2, "rate": 0.3, "rewind": "lr", "train_epochs": 3}).run(ModelArtifact(model), ctx)
    assert len(entering) == 2  # one retraining per round and no rewinding fit
    first_masks = {n: (entering[0][n] != 0).float() for n in PRUNABLE}
    for name in PRUNABLE:
        keep = first_masks[name] == 1
        # round 1 starts from the trained weights, pruned: not the initial ones
        assert torch.equal(entering[0][name][keep], trained_state[name][keep])
        assert not torch.equal(entering[0][name][keep], ctx.initial_state[name][keep])
        assert int((~keep).sum()) > 0
    assert torch.equal(entering[0]["conv1.bias"], trained_state["conv1.bias"])
    for name in PRUNABLE:  # round 2 starts from round 1's retrained weights, pruned further
        keep = entering[1][name] != 0
        assert torch.equal(entering[1][name][keep], leaving[0][name][keep])
    assert sum(int((entering[1][n] != 0).sum()) for n in PRUNABLE) < sum(int((leaving[0][n] != 0).sum()) for n in PRUNABLE)
    # the recipe's cosine schedule over the round's 3 epochs, restarted in each round: lr, lr (1 + cos(pi/3)) / 2, lr / 4
    expected = [3e-2, 3e-2 * 0.75, 3e-2 * 0.25]
    for history in histories:
        assert [row["lr"] for row in history] == pytest.approx(expected)
    assert out.record["rewind"] == "lr" and out.record["rewind_epochs"] == 0
    _assert_masked_weights_zero(out.artifact)


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


# --- accept rules, scripted -------------------------------------------------------------------------


def _val_set(n, seed=0):
    """Labels of ``n`` records over the four classes and a dense model right on about 80 % of them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    dense = np.where(rng.random(n) < 0.8, labels, (labels + 1) % 4)
    return labels, dense


def _worse_by(labels, dense, points, seed=1):
    """The dense predictions with records made wrong, one by one, until F1 is ``points`` below dense, and the ΔF1."""
    target = challenge_f1(labels, dense) - points / 100
    candidate = dense.copy()
    for i in np.random.default_rng(seed).permutation(np.flatnonzero(dense == labels)):
        if challenge_f1(labels, candidate) <= target:
            break
        candidate[i] = (labels[i] + 1) % 4
    return candidate, challenge_f1(labels, candidate) - challenge_f1(labels, dense)


def _rules(labels, dense, budget_points=1.0, seed=0):
    point = PointRule(challenge_f1(labels, dense) - budget_points / 100)
    paired = PairedBootstrapRule(labels, dense, budget_points / 100, alpha=0.1, resamples=1000, seed=seed)
    return point, paired


def test_a_small_drop_on_a_small_noisy_val_set_is_accepted_by_the_paired_bootstrap_but_not_by_the_point_rule():
    labels, dense = _val_set(300)
    candidate, delta = _worse_by(labels, dense, 1.5)
    assert -0.02 < delta < -0.01  # 1.5 points, give or take a record: over the 1-point budget
    point, paired = _rules(labels, dense)
    score = ValScore(challenge_f1(labels, candidate), candidate)
    assert not point(score).accepted
    verdict = paired(score)
    assert verdict.accepted and -0.01 <= verdict.delta_f1_upper < 0  # a drop, but not one beyond the budget and the noise


def test_a_clearly_worse_candidate_on_a_large_val_set_is_rejected_by_both_rules():
    labels, dense = _val_set(3000)
    candidate, delta = _worse_by(labels, dense, 10.0)
    assert delta == pytest.approx(-0.10, abs=0.002)
    point, paired = _rules(labels, dense)
    score = ValScore(challenge_f1(labels, candidate), candidate)
    verdict = paired(score)
    assert not point(score).accepted and not verdict.accepted
    assert verdict.delta_f1_upper < -0.08


def test_the_paired_bootstrap_rule_is_deterministic_and_accepts_the_dense_model_itself():
    labels, dense = _val_set(300)
    candidate, _ = _worse_by(labels, dense, 1.5)
    score = ValScore(challenge_f1(labels, candidate), candidate)
    bounds = [_rules(labels, dense)[1](score).delta_f1_upper for _ in range(2)]
    assert bounds[0] == bounds[1]
    assert _rules(labels, dense, seed=7)[1](score).delta_f1_upper != bounds[0]  # the seed draws the resamples
    same = _rules(labels, dense, budget_points=0.0)[1](ValScore(challenge_f1(labels, dense), dense))
    assert same.accepted and same.delta_f1_upper == 0.0


def test_the_paired_bootstrap_rule_needs_per_record_predictions():
    labels, dense = _val_set(50)
    with pytest.raises(CompressionError, match="each validation record"):
        _rules(labels, dense)[1](ValScore(0.8))
    with pytest.raises(ValueError, match="min_val_f1"):
        GoalDrivenTicketSearch(lambda c, r: c, lambda c: 0.0, lambda c: c, initial_rate=0.2, alpha=2.0, min_rate=0.1, max_rounds=1)


def test_search_with_scripted_predictions_goes_on_where_the_point_rule_stops():
    labels, dense = _val_set(300)
    slightly, _ = _worse_by(labels, dense, 1.5)
    clearly, _ = _worse_by(labels, dense, 10.0)
    script = [dense, slightly, clearly, clearly, clearly]  # rates 0.5, 0.5, then halved to the 0.1 floor

    def search(rule):
        scores = iter(ValScore(challenge_f1(labels, p), p) for p in script)
        return GoalDrivenTicketSearch(
            lambda sparsity, rate: 1 - (1 - sparsity) * (1 - rate),
            lambda _candidate: next(scores),
            lambda sparsity: sparsity,
            accept=rule,
            initial_rate=0.5,
            alpha=2.0,
            min_rate=0.1,
            max_rounds=10,
        ).run(0.0)

    point, paired = _rules(labels, dense)
    by_point, by_paired = search(point), search(paired)
    assert [r.accepted for r in by_point.rounds] == [True, False, False, False]
    assert [r.accepted for r in by_paired.rounds] == [True, True, False, False, False]
    assert by_point.best == pytest.approx(0.5) and by_paired.best == pytest.approx(0.75)
    assert all(r.delta_f1_upper is None for r in by_point.rounds)
    assert all(isinstance(r.delta_f1_upper, float) for r in by_paired.rounds)


# --- schedule: paper, scripted ---------------------------------------------------------------------


def test_paper_schedule_divides_the_rate_by_1_1_every_round_accepted_or_not_until_the_floor():
    scores = [0.95, 0.95, 0.50, 0.95, 0.95, 0.95]
    result, rates = _scripted_search(scores, initial_rate=0.3, alpha=1.1, rate_decay=1.1, min_rate=0.2)
    assert rates == pytest.approx([0.3, 0.3 / 1.1, 0.3 / 1.1**2, 0.3 / 1.1**3, 0.3 / 1.1**4])
    assert rates == pytest.approx(paper_rates(0.3, 1.1, 0.2, 30))
    assert [r.accepted for r in result.rounds] == [True, True, False, True, True]
    assert result.rounds[3].sparsity == pytest.approx(1 - 0.7 * (1 - 0.3 / 1.1) * (1 - 0.3 / 1.1**3))  # from round 2's ticket
    assert not result.goal_met and result.stop_reason == f"rate {0.3 / 1.1**5:.4g} fell under min_rate 0.2"


def test_paper_schedule_stops_at_the_target_reduction():
    result, rates = _scripted_search([0.95] * 10, initial_rate=0.3, alpha=1.1, rate_decay=1.1, target_sparsity=0.6)
    # 0.3, then 0.3 / 1.1 (0.49 sparse), then capped to land on 0.6 instead of 0.3 / 1.21
    assert rates == pytest.approx([0.3, 0.3 / 1.1, 1 - 0.4 / (0.7 * (1 - 0.3 / 1.1))])
    assert result.goal_met and result.stop_reason == "target reached" and result.best == pytest.approx(0.6)


def test_paper_rates_cannot_reach_142x_at_the_default_floor():
    rates = paper_rates(0.3, 1.1, 0.025, 30)
    assert len(rates) == 27 and rates[-1] >= 0.025 > rates[-1] / 1.1
    assert 1 / np.prod([1 - r for r in rates]) == pytest.approx(28.5, abs=0.05)


def test_lth_ecg_options_check_that_their_settings_apply():
    paper = LthEcg.Config(schedule="paper")
    assert (paper.initial_rate, paper.target_reduction, paper.rate_decay, paper.rewind) == (0.3, 142.0, 1.1, "init")
    assert LthEcg.Config(schedule="paper", initial_rate=0.5, target_reduction=20.0).initial_rate == 0.5
    for bad, hint in [
        ({"schedule": "paper", "alpha": 1.5}, "alpha applies to schedule: adaptive"),
        ({"rate_decay": 1.2}, "rate_decay applies to schedule: paper"),
        ({"accept_alpha": 0.05}, "apply to accept: paired_bootstrap"),
    ]:
        with pytest.raises(ConfigError, match=hint):
            LthEcg.from_params(bad)
    # the defaults (today's rules) leave the settings, hence the cell ids, as they were
    explicit = LthEcg.Config(schedule="adaptive", accept="point", rewind="init", initial_rate=0.2)
    assert explicit.model_dump(mode="json", exclude_defaults=True) == {}


# --- lth_ecg plugin ------------------------------------------------------------------------------


def test_lth_ecg_returns_the_last_accepted_ticket_with_scripted_scores(trained, monkeypatch):
    model, ctx = trained
    real_round = lottery.prune_rewind_retrain
    budget_floor = ctx.dense_val_challenge_f1 - 0.01  # max_f1_drop_points = 1
    scores = iter([budget_floor + 0.005, budget_floor - 0.05, budget_floor, budget_floor - 0.2])
    tickets = []

    def scripted_round(ticket, rate, rewind_to, ctx_, epochs, lr, patience=None):
        tried = real_round(ticket, rate, rewind_to, ctx_, epochs, lr, patience=patience)
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

    def failing_round(*args, **kwargs):
        tried = real_round(*args, **kwargs)
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


def test_lth_ecg_paper_schedule_runs_the_paper_rates_and_says_why_it_stopped(trained):
    model, ctx = trained
    settings = {"schedule": "paper", "train_epochs": 0, "min_rate": 0.2, "max_f1_drop_points": 100.0}
    out = LthEcg.from_params(settings).run(ModelArtifact(model), ctx)
    record = out.record
    assert [r["rate"] for r in record["rounds"]] == pytest.approx(paper_rates(0.3, 1.1, 0.2, 30))
    assert record["schedule"] == "paper" and record["rate_decay"] == 1.1 and record["target_reduction"] == 142.0
    assert record["goal_met"] is False and "min_rate 0.2" in record["stop_reason"] and "142.0x not reached" in record["note"]
    ceiling = 1 / np.prod([1 - r for r in paper_rates(0.3, 1.1, 0.2, 30)])
    assert record["schedule_max_reduction"] == pytest.approx(ceiling, abs=1e-3)
    assert record["achieved_reduction"] == pytest.approx(ceiling, rel=0.02)  # whole weights
    state = out.artifact.model.state_dict()  # rewound to init, as published (train_epochs 0: no retraining)
    keep = out.artifact.masks["conv2.weight"] == 1
    assert torch.equal(state["conv2.weight"][keep], ctx.initial_state["conv2.weight"][keep])


def test_lth_ecg_paired_bootstrap_judges_each_round_on_the_validation_records(trained, monkeypatch):
    model, ctx = trained
    labels = ctx.trainer.split("val").labels
    dense = ctx.trainer.predict(ctx.dense_model, "val").argmax(axis=1)
    judged = []
    real_call = PairedBootstrapRule.__call__

    def watched(rule, score):
        verdict = real_call(rule, score)
        judged.append((score.predictions, verdict))
        return verdict

    monkeypatch.setattr(PairedBootstrapRule, "__call__", watched)
    settings = {"accept": "paired_bootstrap", "accept_resamples": 200, "train_epochs": 1, "initial_rate": 0.5, "max_rounds": 2}
    record = LthEcg.from_params(settings).run(ModelArtifact(model), ctx).record
    assert len(judged) == len(record["rounds"]) == 2
    twin = PairedBootstrapRule(labels, dense, 0.01, alpha=0.1, resamples=200, seed=ctx.seed)
    for (predictions, verdict), row in zip(judged, record["rounds"]):
        assert predictions.shape == labels.shape
        assert row["delta_f1_upper"] == verdict.delta_f1_upper == twin(ValScore(0.0, predictions)).delta_f1_upper
        assert row["accepted"] is verdict.accepted
    assert (record["accept"], record["accept_alpha"], record["accept_resamples"]) == ("paired_bootstrap", 0.1, 200)
    json.dumps(record, allow_nan=False)


def test_lth_ecg_paired_bootstrap_needs_the_dense_model(trained):
    import dataclasses

    model, ctx = trained
    with pytest.raises(CompressionError, match="no dense_model"):
        LthEcg.from_params({"accept": "paired_bootstrap"}).run(ModelArtifact(model), dataclasses.replace(ctx, dense_model=None))


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


@pytest.mark.parametrize("strategy, settings", [(LotteryTicket, {"rounds": 1}), (LthEcg, {"target_reduction": 1.2, "max_f1_drop_points": 100.0})])
def test_train_patience_reaches_every_rounds_retraining_and_defaults_to_the_recipes(trained, monkeypatch, strategy, settings):
    model, ctx = trained
    real_fit = ctx.trainer.fit
    seen = []

    def recording_fit(model_, **kwargs):
        if kwargs.get("masks") is not None:  # a round's retraining (not the late-rewinding run)
            seen.append(kwargs.get("patience"))
        return real_fit(model_, **kwargs)

    monkeypatch.setattr(ctx.trainer, "fit", recording_fit)
    strategy.from_params({**settings, "train_epochs": 1, "train_patience": 2}).run(ModelArtifact(model), ctx)
    assert seen and set(seen) == {2}
    seen.clear()
    strategy.from_params({**settings, "train_epochs": 1}).run(ModelArtifact(model), ctx)
    assert seen and set(seen) == {None}  # None: Trainer.fit uses the recipe's patience
