"""``lth`` and ``lth_ecg``: lottery-ticket pruning with weight rewinding, and its goal-driven search.

``lth`` is iterative magnitude pruning with rewinding (Frankle & Carbin 2019,
"The Lottery Ticket Hypothesis"): each round globally prunes ``rate`` of the
remaining weights of the trained network, rewinds the survivors and retrains
them with the pruned weights held at zero. ``rewind`` says to what:

- ``init``: the survivors' values at initialisation (Frankle & Carbin 2019);
- ``iteration``: their values after ``rewind_epochs`` epochs of training
  ("late rewinding", Frankle et al. 2020, "Linear Mode Connectivity and the
  Lottery Ticket Hypothesis");
- ``lr``: nothing -- the trained survivors are kept and fine-tuned with the
  recipe's learning-rate schedule restarted from its first epoch
  ("learning-rate rewinding", Renda, Frankle and Carbin, ICLR 2020, "Comparing
  Rewinding and Fine-tuning in Neural Network Pruning").

``lth_ecg`` follows LTH-ECG (Sahu, Ukil, Khandelwal and Pal, EMBC 2022): the
same rounds, but a round whose validation challenge F1 falls more than
``max_f1_drop_points`` under the dense model is rejected and the search goes on
from the last accepted ticket. It returns the sparsest ticket that met the
budget. ``schedule`` sets the pruning rates (:class:`LthEcgConfig`), ``accept``
how a round is judged against the budget (:class:`PointRule`,
:class:`PairedBootstrapRule`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Generic, Literal, TypeVar

import numpy as np
import torch
from pydantic import Field, model_validator

from ecgbench import hookimpl
from ecgbench.kinds.compressor import CompressionContext, Compressor, Masks, ModelArtifact, StepOutcome
from ecgbench.errors import CompressionError
from ecgbench.kinds.base import PluginConfig
from ecgbench.measure.scores import bootstrap_scores
from ecgbench_plugins.compressors import _masks

# --- shared by both strategies ---------------------------------------------------------


@dataclass
class Ticket:
    """A pruned, trained network and its validation challenge F1."""

    model: torch.nn.Module
    masks: Masks
    val_challenge_f1: float


def late_rewind_state(ctx: CompressionContext, epochs: int) -> dict[str, torch.Tensor]:
    """Weights after exactly ``epochs`` epochs of training from ``ctx.initial_state`` (not the best epoch).

    A short run of its own from the dense model's initial weights: the dense
    run's own epoch-k weights are not kept, so the data order differs from it.
    """
    model = ctx.build_model()
    model.load_state_dict(ctx.initial_state)
    snapshot: dict[str, dict[str, torch.Tensor]] = {}

    def keep_latest(row: dict) -> None:  # Trainer.fit restores the best epoch afterwards; we want epoch k
        snapshot["state"] = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}

    ctx.trainer.fit(model, epochs=epochs, on_epoch=keep_latest)
    return snapshot["state"]


def rewind(model: torch.nn.Module, state: dict[str, torch.Tensor], masks: Masks) -> None:
    """Load ``state`` into ``model`` (weights, biases, BatchNorm) and zero the masked weights, in place."""
    own = model.state_dict()
    wrong = sorted(k for k in own if k not in state or state[k].shape != own[k].shape)
    if wrong:
        raise CompressionError(
            f"cannot rewind: the model's {wrong[:3]} do not match the initial weights (the model changed shape, "
            "e.g. after structured pruning); run lottery-ticket pruning before structured pruning"
        )
    model.load_state_dict(state)
    _masks.apply_masks(model, masks)


def prune_rewind_retrain(
    ticket: Ticket,
    rate: float,
    rewind_to: dict[str, torch.Tensor] | None,
    ctx: CompressionContext,
    epochs: int | None,
    lr: float | None,
    patience: int | None = None,
) -> Ticket:
    """One lottery round: prune ``rate`` of the remaining weights, rewind the survivors, retrain with the mask.

    ``rewind_to`` None (``rewind: lr``) keeps the trained survivors: the retraining alone starts the
    learning-rate schedule again (every ``Trainer.fit`` begins at the recipe's first epoch).
    ``patience`` (None: the recipe's) stops the retraining after that many epochs without validation gain.
    """
    model = copy.deepcopy(ticket.model).to("cpu")
    masks = _masks.prune_remaining(model, ticket.masks, rate)
    if rewind_to is None:
        _masks.apply_masks(model, masks)
    else:
        rewind(model, rewind_to, masks)
    fit = ctx.trainer.fit(model, epochs=epochs, masks=masks, lr=lr, patience=patience)
    return Ticket(model, masks, fit.best_val_challenge_f1)


def _start_ticket(artifact: ModelArtifact, ctx: CompressionContext) -> Ticket:
    model = artifact.model
    masks = _masks.full_masks(model, artifact.masks)
    _masks.apply_masks(model, masks)
    return Ticket(model, masks, ctx.trainer.evaluate(model, "val")["challenge_f1"])


def _ticket_state(ticket: Ticket) -> dict:
    """A ticket as checkpoint data (weights, masks, score)."""
    return {
        "model": {k: v.detach().to("cpu").clone() for k, v in ticket.model.state_dict().items()},
        "masks": {k: v.detach().to("cpu").clone() for k, v in ticket.masks.items()},
        "val_challenge_f1": ticket.val_challenge_f1,
    }


def _ticket_from(state: dict, like: Ticket) -> Ticket:
    """The ticket :func:`_ticket_state` saved, in a copy of ``like``'s architecture."""
    model = copy.deepcopy(like.model).to("cpu")
    model.load_state_dict(state["model"])
    _order_like(model, list(state["model"]))
    return Ticket(model, dict(state["masks"]), float(state["val_challenge_f1"]))


def _order_like(model: torch.nn.Module, keys: list[str]) -> None:
    """Register each module's parameters in the order of ``keys`` (a saved state_dict's): pruning re-registers
    a pruned weight after its bias, and the order shows in the state_dict and the exported ONNX."""
    rank = {key: i for i, key in enumerate(keys)}
    for prefix, module in model.named_modules():
        params = module._parameters
        ordered = sorted(params.items(), key=lambda kv: rank.get(f"{prefix}.{kv[0]}" if prefix else kv[0], len(rank)))
        params.clear()
        params.update(ordered)


def _rewind_target(rewind_mode: str, rewind_epochs: int, ctx: CompressionContext) -> dict[str, torch.Tensor] | None:
    """The weights each round rewinds the survivors to; None for learning-rate rewinding (weights kept)."""
    if rewind_mode == "lr":
        return None
    if rewind_mode == "iteration":
        return late_rewind_state(ctx, rewind_epochs)
    return {k: v.detach().to("cpu").clone() for k, v in ctx.initial_state.items()}


def _sparsity(ticket: Ticket) -> float:
    return _masks.sparsity(ticket.masks, list(_masks.prunable_weights(ticket.model)))


def _reduction_text(ticket: Ticket) -> str:
    reduction = _reduction(ticket)
    return f"{reduction:.1f}x" if reduction is not None else "all pruned"


def _reduction(ticket: Ticket) -> float | None:
    """Prunable weights of the dense model per remaining non-zero one (``dense / nonzero``); None when none remain."""
    names = list(_masks.prunable_weights(ticket.model))
    total = _masks.count_weights(ticket.masks, names)
    remaining = total - _masks.count_zeros(ticket.masks, names)
    return total / remaining if remaining else None


class _RewindSettings(PluginConfig):
    """Rewinding and retraining settings shared by ``lth`` and ``lth_ecg``."""

    rewind: Literal["init", "iteration", "lr"] = Field(
        "init",
        description="init: rewind survivors to their initial values (Frankle & Carbin 2019); iteration: to their values "
        "after rewind_epochs epochs of training from init (late rewinding, Frankle et al. 2020); lr: keep the trained "
        "survivors and retrain them with the learning-rate schedule restarted (Renda, Frankle & Carbin 2020)",
    )
    rewind_epochs: int = Field(1, ge=1, description="epochs of training from init that give the late-rewinding weights (rewind: iteration)")
    train_epochs: int | None = Field(None, ge=0, description="retraining epochs per round; null = the recipe's epochs")
    lr: float | None = Field(None, gt=0, description="retraining learning rate; null = the recipe's lr")
    train_patience: int | None = Field(
        None,
        ge=0,
        description="a round's retraining stops after this many epochs without validation gain (the best epoch is kept); "
        "null = the recipe's patience, 0 = never early",
    )


# --- lth -------------------------------------------------------------------------------


class LotteryTicketConfig(_RewindSettings):
    """Settings of ``lth``."""

    # Frankle & Carbin 2019 prune 10-20 % of the remaining weights per round; 20 % reaches 67 % sparsity in 5 rounds.
    rate: float = Field(0.2, gt=0.0, lt=1.0, description="fraction of the remaining weights pruned per round (global magnitude)")
    rounds: int = Field(5, ge=1, description="pruning rounds (the most, when target_sparsity is set)")
    target_sparsity: float | None = Field(
        None, gt=0.0, lt=1.0, description="stop once this fraction of prunable weights is pruned (the last round is shortened to hit it)"
    )


class LotteryTicket(Compressor):
    """Lottery-ticket iterative magnitude pruning with weight rewinding to init or an early iteration (Frankle & Carbin 2019)."""

    name = "lth"
    Config = LotteryTicketConfig

    def compress(self, artifact: ModelArtifact, ctx: CompressionContext) -> StepOutcome:
        cfg: LotteryTicketConfig = self.config
        ticket = _start_ticket(artifact, ctx)
        input_sparsity = _sparsity(ticket)
        saved = ctx.checkpoints.load()
        if saved is None:
            rewind_to, rounds, first = _rewind_target(cfg.rewind, cfg.rewind_epochs, ctx), [], 1
        else:  # resume after the last saved round
            rewind_to, rounds, first = saved["rewind_to"], list(saved["rounds"]), int(saved["round"]) + 1
            ticket = _ticket_from(saved["ticket"], ticket)
            ctx.trainer.set_rng_state(saved["rng"])
        names = list(_masks.prunable_weights(ticket.model))
        total = _masks.count_weights(ticket.masks, names)
        for round_no in range(first, cfg.rounds + 1):
            rate = cfg.rate
            if cfg.target_sparsity is not None:
                if _masks.count_zeros(ticket.masks, names) >= round(cfg.target_sparsity * total):
                    break  # target reached to the weight
                rate = min(rate, 1 - (1 - cfg.target_sparsity) / (1 - _sparsity(ticket)))
            round_start = time.perf_counter()
            ticket = prune_rewind_retrain(ticket, rate, rewind_to, ctx, cfg.train_epochs, cfg.lr, patience=cfg.train_patience)
            rounds.append(
                {
                    "round": round_no,
                    "rate": round(rate, 6),
                    "sparsity": round(_sparsity(ticket), 6),
                    "val_challenge_f1": ticket.val_challenge_f1,
                    "seconds": round(time.perf_counter() - round_start, 3),
                }
            )
            ctx.checkpoints.save(
                {"round": round_no, "ticket": _ticket_state(ticket), "rounds": rounds, "rewind_to": rewind_to, "rng": ctx.trainer.rng_state()}
            )
            ctx.progress(f"lth round {round_no}: {_reduction_text(ticket)}, sparsity {rounds[-1]['sparsity']:.4f}, val F1 {ticket.val_challenge_f1:.4f}")
        record = {
            "requested_sparsity": cfg.target_sparsity,
            "achieved_sparsity": _sparsity(ticket),
            "input_sparsity": input_sparsity,
            "reduction": _reduction(ticket),
            "rewind": cfg.rewind,
            "rewind_epochs": cfg.rewind_epochs if cfg.rewind == "iteration" else 0,
            "val_challenge_f1": ticket.val_challenge_f1,
            "rounds": rounds,
        }
        return StepOutcome(ModelArtifact(model=ticket.model, masks=ticket.masks), record)

    @classmethod
    def trajectory(cls, record: dict) -> Trajectory | None:
        """The record's ``rounds`` as points (see :func:`rounds_trajectory`)."""
        return rounds_trajectory(record)


# --- lth_ecg -----------------------------------------------------------------------------

Candidate = TypeVar("Candidate")


@dataclass(frozen=True)
class ValScore:
    """A candidate's validation result: its challenge F1 and, for rules that resample records, the class it
    predicts for each validation record (in the split's order)."""

    f1: float
    predictions: np.ndarray | None = None


@dataclass(frozen=True)
class Verdict:
    """An accept rule's decision, and the upper bound of ΔF1 (candidate - dense) it judged (None: the point rule)."""

    accepted: bool
    delta_f1_upper: float | None = None


class PointRule:
    """Accept when the candidate's validation F1 is at least ``min_val_f1`` (the dense model's minus the budget).

    LTH-ECG's rule, and the default. It takes one F1 on the validation split as
    exact, although its sampling noise (a standard error of about a point on
    1,000 records) is as large as a 1-point budget: a round can be rejected by
    the luck of the split.
    """

    def __init__(self, min_val_f1: float) -> None:
        self.min_val_f1 = min_val_f1

    def __call__(self, score: ValScore) -> Verdict:
        return Verdict(score.f1 >= self.min_val_f1)


class PairedBootstrapRule:
    """Reject a round only when the validation records show, beyond their own noise, a drop larger than the budget.

    ΔF1 is the candidate's challenge F1 minus the dense model's, both scored on
    each of ``resamples`` bootstrap resamples of the validation records (paired:
    the same records for both, :func:`~ecgbench.measure.scores.bootstrap_scores`).
    The round is accepted when the one-sided ``1 - alpha`` upper confidence
    bound of ΔF1 (its ``1 - alpha`` quantile over the resamples) is at least
    ``-max_drop``: it is rejected only when more than ``1 - alpha`` of the
    resamples lose more than the budget. The resamples come from ``seed`` and
    are the same for every round, so decisions are deterministic and a resumed
    search repeats them.

    Why one-sided at 90 % (``accept_alpha`` 0.1): the point rule is in effect
    the 50 % bound, and turns rounds down on one draw of the split. A laxer
    bound (the 97.5 % end of a two-sided 95 % interval) would pass drops of
    two standard errors beyond the budget, and the search keeps the sparsest
    ticket it accepted, so it would keep the luckiest one. At 90 % a round is
    rejected once 9 resamples in 10 lose more than the budget: a drop larger
    than the budget plus about 1.3 standard errors of ΔF1 is rejected.
    Pairing makes those errors small: only the records on which the two
    models disagree move ΔF1.
    """

    def __init__(
        self, labels: np.ndarray, dense_predictions: np.ndarray, max_drop: float, alpha: float, resamples: int, seed: int
    ) -> None:
        self.labels = np.asarray(labels)
        self.dense_predictions = np.asarray(dense_predictions)
        if self.labels.shape != self.dense_predictions.shape:
            raise CompressionError(
                f"paired bootstrap: {len(self.dense_predictions)} dense predictions for {len(self.labels)} validation records"
            )
        self.max_drop, self.alpha, self.resamples, self.seed = max_drop, alpha, resamples, seed

    def __call__(self, score: ValScore) -> Verdict:
        if score.predictions is None:
            raise CompressionError("accept: paired_bootstrap needs each validation record's prediction, but got one F1 only")
        if len(score.predictions) != len(self.labels):
            raise CompressionError(f"paired bootstrap: {len(score.predictions)} predictions for {len(self.labels)} validation records")
        candidate, dense = bootstrap_scores(self.labels, [score.predictions, self.dense_predictions], self.resamples, self.seed)
        deltas = candidate - dense
        upper = float(np.quantile(deltas, 1 - self.alpha))
        return Verdict(upper >= -self.max_drop, upper)


@dataclass
class SearchRound:
    """One tried pruning round of the goal-driven search."""

    round: int
    rate: float
    sparsity: float
    val_challenge_f1: float
    accepted: bool
    seconds: float
    delta_f1_upper: float | None = None  # the paired bootstrap's upper bound of ΔF1 (accept: paired_bootstrap)


@dataclass
class SearchResult(Generic[Candidate]):
    """The sparsest candidate that met the budget, and every round tried."""

    best: Candidate
    best_sparsity: float
    rounds: list[SearchRound] = field(default_factory=list)
    goal_met: bool = False
    stop_reason: str = ""


class GoalDrivenTicketSearch(Generic[Candidate]):
    """LTH-ECG's search loop, independent of models so tests can script the scores.

    From the last accepted candidate, ``prune_and_retrain(candidate, rate)``
    makes a sparser one; ``evaluate(candidate)`` scores it on validation (a
    float F1, or a :class:`ValScore` carrying per-record predictions for rules
    that resample records) and ``accept(score)`` judges it (default:
    :class:`PointRule` with ``min_val_f1``). An accepted round moves the search
    to its candidate and divides the rate by ``rate_decay`` (1: kept); a
    rejected round leaves the accepted candidate in place and divides the rate
    by ``alpha``. The search stops when the rate falls under ``min_rate``, when
    an accepted candidate reaches ``target_sparsity`` (within
    ``goal_tolerance``) or after ``max_rounds`` tried rounds. With a target,
    the rate of a round is capped so it lands on the target.
    """

    def __init__(
        self,
        prune_and_retrain: Callable[[Candidate, float], Candidate],
        evaluate: Callable[[Candidate], float | ValScore],
        sparsity_of: Callable[[Candidate], float],
        *,
        initial_rate: float,
        alpha: float,
        min_rate: float,
        max_rounds: int,
        min_val_f1: float | None = None,
        accept: Callable[[ValScore], Verdict] | None = None,
        rate_decay: float = 1.0,
        target_sparsity: float | None = None,
        goal_tolerance: float = 0.0,
        on_round: Callable[[SearchRound], None] | None = None,
        after_round: Callable[[SearchResult[Candidate], float], None] | None = None,
    ) -> None:
        if (accept is None) == (min_val_f1 is None):
            raise ValueError("give the search either min_val_f1 (the point rule) or an accept rule")
        self.prune_and_retrain = prune_and_retrain
        self.evaluate = evaluate
        self.sparsity_of = sparsity_of
        self.accept = accept if accept is not None else PointRule(float(min_val_f1))  # type: ignore[arg-type]
        self.initial_rate = initial_rate
        self.alpha = alpha
        self.rate_decay = rate_decay
        self.min_rate = min_rate
        self.max_rounds = max_rounds
        self.target_sparsity = target_sparsity
        self.goal_tolerance = goal_tolerance
        self.on_round = on_round
        self.after_round = after_round  # called with the result so far and the next rate (to checkpoint them)

    def goal_met(self, sparsity: float) -> bool:
        return self.target_sparsity is not None and sparsity >= self.target_sparsity - self.goal_tolerance

    def run(self, start: Candidate, resume: tuple[SearchResult[Candidate], float] | None = None) -> SearchResult[Candidate]:
        """Search from ``start`` (accepted as it is) and return the sparsest accepted candidate.

        ``resume``: the result so far and the next rate, as ``after_round`` got them, to continue a search.
        """
        if resume is None:
            result, rate = SearchResult(best=start, best_sparsity=self.sparsity_of(start)), self.initial_rate
        else:
            result, rate = resume
        while True:
            if self.goal_met(result.best_sparsity):
                result.goal_met, result.stop_reason = True, "target reached"
                break
            if len(result.rounds) >= self.max_rounds:
                result.stop_reason = f"max_rounds ({self.max_rounds}) reached"
                break
            if rate < self.min_rate:
                result.stop_reason = f"rate {rate:.4g} fell under min_rate {self.min_rate}"
                break
            applied = rate
            if self.target_sparsity is not None:
                applied = min(rate, 1 - (1 - self.target_sparsity) / (1 - result.best_sparsity))
            round_start = time.perf_counter()
            candidate = self.prune_and_retrain(result.best, applied)
            score = self.evaluate(candidate)
            score = score if isinstance(score, ValScore) else ValScore(float(score))
            verdict = self.accept(score)
            sparsity = self.sparsity_of(candidate)
            tried = SearchRound(
                len(result.rounds) + 1,
                applied,
                sparsity,
                score.f1,
                verdict.accepted,
                time.perf_counter() - round_start,
                verdict.delta_f1_upper,
            )
            result.rounds.append(tried)
            if self.on_round:
                self.on_round(tried)
            if verdict.accepted:
                result.best, result.best_sparsity = candidate, sparsity
                rate = rate / self.rate_decay
            else:
                rate = applied / self.alpha
            if self.after_round:
                self.after_round(result, rate)
        return result


def paper_rates(initial_rate: float, rate_decay: float, min_rate: float, max_rounds: int) -> list[float]:
    """The rates of ``schedule: paper`` with no target to cap one: ``initial_rate / rate_decay**k`` while at least
    ``min_rate``, for at most ``max_rounds`` rounds."""
    rates: list[float] = []
    rate = initial_rate
    while rate >= min_rate and len(rates) < max_rounds:
        rates.append(rate)
        rate = rate / rate_decay
    return rates


# LTH-ECG as published (Sahu et al. 2022): 30 % per round, the rate divided by 1.1 every round, 142x aimed at.
PAPER_DEFAULTS = {"initial_rate": 0.3, "target_reduction": 142.0}


class LthEcgConfig(_RewindSettings):
    """Settings of ``lth_ecg``.

    ``schedule`` sets the pruning rates:

    - ``adaptive`` (default): the rate stays at ``initial_rate`` while rounds are
      accepted; a rejected round divides it by ``alpha`` (2: halving, as NNCF's
      adaptive compression level refines its step) and the search retries from
      the last accepted ticket. The rate shrinks only where the budget demands it.
    - ``paper``: LTH-ECG as published: ``initial_rate`` 0.3, the rate divided by
      ``rate_decay`` (the paper's alpha, 1.1) after every round, accepted or not
      (a rejected round still keeps the last accepted ticket), towards
      ``target_reduction`` 142x. The rates shrink whatever the scores, so the
      schedule cannot go beyond prod 1 / (1 - 0.3 / 1.1**k): 28.5x at the default
      ``min_rate`` 0.025 (27 rounds), 36.7x with no floor; the record's
      ``schedule_max_reduction`` says how far the settings can go.

    Both rewind as ``rewind`` says (``init`` is the paper's reset to the initial
    weights). ``accept`` says how a round is judged against the budget:
    ``point`` (default, the paper's) compares one validation F1 with the dense
    model's; ``paired_bootstrap`` (:class:`PairedBootstrapRule`) rejects a round
    only when the paired one-sided ``1 - accept_alpha`` upper bound of ΔF1 lies
    under ``-max_f1_drop_points``.
    """

    # LTH-ECG's budget: the pruned model may lose at most this much validation F1 (1 point = 0.01).
    max_f1_drop_points: float = Field(
        1.0, ge=0.0, description="largest allowed drop of validation challenge F1 vs the dense model, in points (0.01)"
    )
    schedule: Literal["adaptive", "paper"] = Field(
        "adaptive",
        description="adaptive: keep the rate while rounds are accepted, divide it by alpha after a rejection; paper: "
        "LTH-ECG as published, 30% at first, divided by rate_decay after every round, towards 142x",
    )
    target_reduction: float | None = Field(
        None,
        gt=1.0,
        description="stop once dense/nonzero prunable weights reaches this (LTH-ECG reports 142x; the default with "
        "schedule: paper); null = prune until the rate floor",
    )
    # Frankle & Carbin 2019 prune 20 % of the remaining weights per round; LTH-ECG starts at 30 %.
    initial_rate: float = Field(
        0.2, gt=0.0, lt=1.0, description="fraction of the remaining weights pruned per round at the start (0.3 with schedule: paper)"
    )
    # Halving the step after a failure, as NNCF's adaptive compression level does.
    alpha: float = Field(2.0, gt=1.0, description="schedule: adaptive: after a rejected round the rate is divided by alpha")
    rate_decay: float = Field(1.1, gt=1.0, description="schedule: paper: the rate is divided by this after every round (LTH-ECG's alpha)")
    # NNCF's adaptive compression stops refining the step at 0.025; finer steps cost a full retraining each for little gain.
    min_rate: float = Field(0.025, gt=0.0, lt=1.0, description="stop when the rate falls under this floor")
    # 0.8**23 < 1/142: 23 accepted rounds at the initial rate reach LTH-ECG's 142x, plus room for rejected rounds.
    max_rounds: int = Field(30, ge=1, description="the most rounds tried, accepted and rejected together")
    accept: Literal["point", "paired_bootstrap"] = Field(
        "point",
        description="point: accept a round when its validation F1 is within the budget of the dense model's; "
        "paired_bootstrap: reject it only when the paired bootstrap upper bound of its F1 drop exceeds the budget",
    )
    # A one-sided 90 % bound: a round is rejected when 9 in 10 resamples lose more than the budget.
    accept_alpha: float = Field(
        0.1, gt=0.0, lt=0.5, description="accept: paired_bootstrap: the upper bound of delta F1 is one-sided at level 1 - accept_alpha"
    )
    accept_resamples: int = Field(1000, ge=100, description="accept: paired_bootstrap: bootstrap resamples of the validation records")

    @model_validator(mode="before")
    @classmethod
    def _paper_defaults(cls, data):
        if isinstance(data, dict) and data.get("schedule") == "paper":
            return {**PAPER_DEFAULTS, **data}
        return data

    @model_validator(mode="after")
    def _settings_match_the_options(self):
        given = self.model_fields_set
        if self.schedule == "adaptive" and "rate_decay" in given:
            raise ValueError("rate_decay applies to schedule: paper; schedule: adaptive divides the rate by alpha after a rejected round")
        if self.schedule == "paper" and "alpha" in given:
            raise ValueError("alpha applies to schedule: adaptive; schedule: paper divides the rate by rate_decay after every round")
        if self.accept == "point" and given & {"accept_alpha", "accept_resamples"}:
            raise ValueError("accept_alpha and accept_resamples apply to accept: paired_bootstrap; set accept: paired_bootstrap or remove them")
        return self


def _accept_rule(cfg: LthEcgConfig, ctx: CompressionContext, min_val_f1: float) -> tuple[Callable, Callable[[Ticket], float | ValScore]]:
    """The accept rule ``cfg.accept`` names, and how a ticket is scored for it."""
    if cfg.accept == "point":
        return PointRule(min_val_f1), lambda ticket: ticket.val_challenge_f1
    if ctx.dense_model is None:
        raise CompressionError(
            "lth_ecg accept: paired_bootstrap compares each validation record with the dense model, but the context has "
            "no dense_model; pass CompressionContext(dense_model=...) or use accept: point"
        )
    labels = ctx.trainer.split("val").labels
    dense = ctx.trainer.predict(ctx.dense_model, "val").argmax(axis=1)
    rule = PairedBootstrapRule(labels, dense, cfg.max_f1_drop_points / 100.0, cfg.accept_alpha, cfg.accept_resamples, seed=ctx.seed)
    return rule, lambda ticket: ValScore(ticket.val_challenge_f1, ctx.trainer.predict(ticket.model, "val").argmax(axis=1))


class LthEcg(Compressor):
    """LTH-ECG goal-driven winning-ticket search: prune while validation F1 stays within a budget (Sahu, Ukil, Khandelwal and Pal, EMBC 2022)."""

    name = "lth_ecg"
    Config = LthEcgConfig

    def compress(self, artifact: ModelArtifact, ctx: CompressionContext) -> StepOutcome:
        cfg: LthEcgConfig = self.config
        start = _start_ticket(artifact, ctx)
        saved = ctx.checkpoints.load()
        resume = None
        if saved is None:
            rewind_to = _rewind_target(cfg.rewind, cfg.rewind_epochs, ctx)
        else:  # resume after the last saved round
            rewind_to = saved["rewind_to"]
            best = _ticket_from(saved["best"], start)
            tried = [SearchRound(**r) for r in saved["rounds"]]
            resume = (SearchResult(best=best, best_sparsity=float(saved["best_sparsity"]), rounds=tried), float(saved["rate"]))
            ctx.trainer.set_rng_state(saved["rng"])
        min_val_f1 = ctx.dense_val_challenge_f1 - cfg.max_f1_drop_points / 100.0
        accept, evaluate = _accept_rule(cfg, ctx, min_val_f1)
        n_weights = _masks.count_weights(start.masks, list(_masks.prunable_weights(start.model)))
        target_sparsity = 1 - 1 / cfg.target_reduction if cfg.target_reduction else None
        paper = cfg.schedule == "paper"

        def log_round(tried: SearchRound) -> None:
            verdict = "accepted" if tried.accepted else "rejected"
            reduction = f"{1 / (1 - tried.sparsity):.1f}x" if tried.sparsity < 1 else "all pruned"
            bound = f", delta F1 upper bound {tried.delta_f1_upper:+.4f}" if tried.delta_f1_upper is not None else ""
            ctx.progress(
                f"lth_ecg round {tried.round}: {reduction}, rate {tried.rate:.4f}, sparsity {tried.sparsity:.4f}, "
                f"val F1 {tried.val_challenge_f1:.4f}{bound} {verdict}"
            )

        def save_round(result: SearchResult, rate: float) -> None:
            ctx.checkpoints.save(
                {
                    "round": len(result.rounds),
                    "best": _ticket_state(result.best),
                    "best_sparsity": result.best_sparsity,
                    "rounds": [asdict(r) for r in result.rounds],
                    "rate": rate,
                    "rewind_to": rewind_to,
                    "rng": ctx.trainer.rng_state(),
                }
            )

        search = GoalDrivenTicketSearch(
            lambda ticket, rate: prune_rewind_retrain(ticket, rate, rewind_to, ctx, cfg.train_epochs, cfg.lr, patience=cfg.train_patience),
            evaluate,
            _sparsity,
            accept=accept,
            initial_rate=cfg.initial_rate,
            alpha=cfg.rate_decay if paper else cfg.alpha,
            rate_decay=cfg.rate_decay if paper else 1.0,
            min_rate=cfg.min_rate,
            max_rounds=cfg.max_rounds,
            target_sparsity=target_sparsity,
            goal_tolerance=1.0 / n_weights,  # counts are whole weights: within one weight of the target
            on_round=log_round,
            after_round=save_round,
        )
        result = search.run(start, resume)
        best: Ticket = result.best
        record = {
            "dense_val_challenge_f1": ctx.dense_val_challenge_f1,
            "min_val_challenge_f1": min_val_f1,
            "max_f1_drop_points": cfg.max_f1_drop_points,
            "target_reduction": cfg.target_reduction,
            "achieved_reduction": _reduction(best),
            "achieved_sparsity": result.best_sparsity,
            "input_sparsity": _sparsity(start),
            "val_challenge_f1": best.val_challenge_f1,
            "goal_met": result.goal_met,
            "stop_reason": result.stop_reason,
            "accepted_rounds": sum(r.accepted for r in result.rounds),
            "rejected_rounds": sum(not r.accepted for r in result.rounds),
            "schedule": cfg.schedule,
            "accept": cfg.accept,
            "rewind": cfg.rewind,
            "rewind_epochs": cfg.rewind_epochs if cfg.rewind == "iteration" else 0,
            "rounds": [_round_record(r) for r in result.rounds],
        }
        if cfg.accept == "paired_bootstrap":
            record.update(accept_alpha=cfg.accept_alpha, accept_resamples=cfg.accept_resamples)
        if paper:
            rates = paper_rates(cfg.initial_rate, cfg.rate_decay, cfg.min_rate, cfg.max_rounds)
            record.update(rate_decay=cfg.rate_decay, schedule_max_reduction=round(1 / float(np.prod([1 - r for r in rates])), 3))
        if not any(r.accepted for r in result.rounds):  # best is the start ticket
            record["note"] = "no pruning round met the budget: the input model is returned unchanged"
        elif cfg.target_reduction and not result.goal_met:
            record["note"] = (
                f"target {cfg.target_reduction}x not reached ({result.stop_reason}); "
                f"returning the sparsest ticket within budget ({record['achieved_reduction']}x)"
            )
        return StepOutcome(ModelArtifact(model=best.model, masks=best.masks), record)

    @classmethod
    def trajectory(cls, record: dict) -> Trajectory | None:
        """The record's ``rounds`` as points (see :func:`rounds_trajectory`)."""
        return rounds_trajectory(record)


def _round_record(tried: SearchRound) -> dict:
    """A round as the step's record keeps it (seconds rounded; no bound under the point rule)."""
    row = {**asdict(tried), "seconds": round(tried.seconds, 3)}
    if row["delta_f1_upper"] is None:
        del row["delta_f1_upper"]
    return row



@hookimpl
def ecgbench_register_compressors(register):
    register(LotteryTicket)
    register(LthEcg)


# --- trajectory (read by the reports) ------------------------------------------------------
import math  # noqa: E402  (kept with the section that uses it)

from ecgbench.kinds.compressor import Trajectory, TrajectoryPoint  # noqa: E402


def rounds_trajectory(record: dict) -> Trajectory | None:
    """The rounds of an ``lth`` or ``lth_ecg`` record, or None when it has none.

    ``lth`` keeps every round (its rounds have no ``accepted`` field); ``lth_ecg``
    marks the rounds it rejected and records its floor ``min_val_challenge_f1``.
    Rounds lacking a numeric sparsity or F1 (a hand-edited or older record) are left out.
    """
    rounds = record.get("rounds") if isinstance(record, dict) else None
    if not isinstance(rounds, list) or not rounds:
        return None
    points = []
    for r in rounds:
        sparsity, f1 = (r.get(k) if isinstance(r, dict) else None for k in ("sparsity", "val_challenge_f1"))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (sparsity, f1)):
            continue
        points.append(TrajectoryPoint(r.get("round"), float(sparsity), float(f1), r.get("accepted", True) is not False))
    floor = record.get("min_val_challenge_f1")
    floor_ok = isinstance(floor, (int, float)) and not isinstance(floor, bool) and math.isfinite(floor)
    return Trajectory(tuple(points), float(floor) if floor_ok else None)
