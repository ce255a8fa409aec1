"""``lth`` and ``lth_ecg``: lottery-ticket pruning with weight rewinding, and its goal-driven search.

``lth`` is iterative magnitude pruning with rewinding (Frankle & Carbin 2019,
"The Lottery Ticket Hypothesis"): each round globally prunes ``rate`` of the
remaining weights of the trained network, rewinds the survivors to their
values at initialisation (or, with ``rewind: iteration``, after a few epochs
of training -- "late rewinding", Frankle et al. 2020, "Linear Mode
Connectivity and the Lottery Ticket Hypothesis") and retrains them with the
pruned weights held at zero.

``lth_ecg`` follows LTH-ECG (Sahu, Ukil, Khandelwal and Pal, EMBC 2022): the same rounds, but a
round whose validation challenge F1 falls more than ``max_f1_drop_points``
under the dense model is rejected; the search returns to the last accepted
ticket and retries with the rate divided by ``alpha``, until the rate falls
under ``min_rate``, the target reduction is reached or ``max_rounds`` have
run. It returns the sparsest ticket that met the budget.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Generic, Literal, TypeVar

import torch
from pydantic import Field

from ecgbench import hookimpl
from ecgbench.kinds.compressor import CompressionContext, Compressor, Masks, ModelArtifact, StepOutcome
from ecgbench.errors import CompressionError
from ecgbench.kinds.base import PluginConfig
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
    ticket: Ticket, rate: float, rewind_to: dict[str, torch.Tensor], ctx: CompressionContext, epochs: int | None, lr: float | None
) -> Ticket:
    """One lottery round: prune ``rate`` of the remaining weights, rewind the survivors, retrain with the mask."""
    model = copy.deepcopy(ticket.model).to("cpu")
    masks = _masks.prune_remaining(model, ticket.masks, rate)
    rewind(model, rewind_to, masks)
    fit = ctx.trainer.fit(model, epochs=epochs, masks=masks, lr=lr)
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


def _rewind_target(rewind_mode: str, rewind_epochs: int, ctx: CompressionContext) -> dict[str, torch.Tensor]:
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

    rewind: Literal["init", "iteration"] = Field(
        "init",
        description="init: rewind survivors to their initial values (Frankle & Carbin 2019); iteration: to their values "
        "after rewind_epochs epochs of training from init (late rewinding, Frankle et al. 2020)",
    )
    rewind_epochs: int = Field(1, ge=1, description="epochs of training from init that give the late-rewinding weights (rewind: iteration)")
    train_epochs: int | None = Field(None, ge=0, description="retraining epochs per round; null = the recipe's epochs")
    lr: float | None = Field(None, gt=0, description="retraining learning rate; null = the recipe's lr")


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
            ticket = prune_rewind_retrain(ticket, rate, rewind_to, ctx, cfg.train_epochs, cfg.lr)
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


@dataclass
class SearchRound:
    """One tried pruning round of the goal-driven search."""

    round: int
    rate: float
    sparsity: float
    val_challenge_f1: float
    accepted: bool
    seconds: float


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
    makes a sparser one; it is accepted when ``evaluate(candidate) >=
    min_val_f1``. A rejected round leaves the accepted candidate in place and
    divides the rate by ``alpha``. The search stops when the rate falls under
    ``min_rate``, when an accepted candidate reaches ``target_sparsity``
    (within ``goal_tolerance``) or after ``max_rounds`` tried rounds. With a
    target, the rate of a round is capped so it lands on the target.
    """

    def __init__(
        self,
        prune_and_retrain: Callable[[Candidate, float], Candidate],
        evaluate: Callable[[Candidate], float],
        sparsity_of: Callable[[Candidate], float],
        *,
        min_val_f1: float,
        initial_rate: float,
        alpha: float,
        min_rate: float,
        max_rounds: int,
        target_sparsity: float | None = None,
        goal_tolerance: float = 0.0,
        on_round: Callable[[SearchRound], None] | None = None,
        after_round: Callable[[SearchResult[Candidate], float], None] | None = None,
    ) -> None:
        self.prune_and_retrain = prune_and_retrain
        self.evaluate = evaluate
        self.sparsity_of = sparsity_of
        self.min_val_f1 = min_val_f1
        self.initial_rate = initial_rate
        self.alpha = alpha
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
            sparsity = self.sparsity_of(candidate)
            accepted = score >= self.min_val_f1
            tried = SearchRound(len(result.rounds) + 1, applied, sparsity, score, accepted, time.perf_counter() - round_start)
            result.rounds.append(tried)
            if self.on_round:
                self.on_round(tried)
            if accepted:
                result.best, result.best_sparsity = candidate, sparsity
            else:
                rate = applied / self.alpha
            if self.after_round:
                self.after_round(result, rate)
        return result


class LthEcgConfig(_RewindSettings):
    """Settings of ``lth_ecg``."""

    # LTH-ECG's budget: the pruned model may lose at most this much validation F1 (1 point = 0.01).
    max_f1_drop_points: float = Field(
        1.0, ge=0.0, description="largest allowed drop of validation challenge F1 vs the dense model, in points (0.01)"
    )
    target_reduction: float | None = Field(
        None,
        gt=1.0,
        description="stop once dense/nonzero prunable weights reaches this (LTH-ECG reports 142x); null = prune until the rate floor",
    )
    # Frankle & Carbin 2019 prune 20 % of the remaining weights per round.
    initial_rate: float = Field(0.2, gt=0.0, lt=1.0, description="fraction of the remaining weights pruned per round at the start")
    # Halving the step after a failure, as NNCF's adaptive compression level does.
    alpha: float = Field(2.0, gt=1.0, description="after a rejected round the rate is divided by alpha")
    # NNCF's adaptive compression stops refining the step at 0.025; finer steps cost a full retraining each for little gain.
    min_rate: float = Field(0.025, gt=0.0, lt=1.0, description="stop when the rate falls under this floor")
    # 0.8**23 < 1/142: 23 accepted rounds at the initial rate reach LTH-ECG's 142x, plus room for rejected rounds.
    max_rounds: int = Field(30, ge=1, description="the most rounds tried, accepted and rejected together")


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
        n_weights = _masks.count_weights(start.masks, list(_masks.prunable_weights(start.model)))
        target_sparsity = 1 - 1 / cfg.target_reduction if cfg.target_reduction else None

        def log_round(tried: SearchRound) -> None:
            verdict = "accepted" if tried.accepted else "rejected"
            reduction = f"{1 / (1 - tried.sparsity):.1f}x" if tried.sparsity < 1 else "all pruned"
            ctx.progress(
                f"lth_ecg round {tried.round}: {reduction}, rate {tried.rate:.4f}, sparsity {tried.sparsity:.4f}, "
                f"val F1 {tried.val_challenge_f1:.4f} {verdict}"
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
            lambda ticket, rate: prune_rewind_retrain(ticket, rate, rewind_to, ctx, cfg.train_epochs, cfg.lr),
            lambda ticket: ticket.val_challenge_f1,
            _sparsity,
            min_val_f1=min_val_f1,
            initial_rate=cfg.initial_rate,
            alpha=cfg.alpha,
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
            "rewind": cfg.rewind,
            "rewind_epochs": cfg.rewind_epochs if cfg.rewind == "iteration" else 0,
            "rounds": [{**asdict(r), "seconds": round(r.seconds, 3)} for r in result.rounds],
        }
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
