"""The shared machinery of iterative value discovery: rounds, stopping rules, faulty channels.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §1.4 and §2.2: parties never reveal their cost functions; they send power, a
coordinator answers with a price, and they iterate until supply and demand balance. Every
algorithm of :mod:`transactive.market.iterative` is built from the same parts:

- :class:`StoppingRule`: the tolerance on the residuals and the round limit, both explicit. A run
  that reaches the limit is returned with ``converged=False`` and ``stop_reason="max_rounds"``,
  never passed off as converged.
- :class:`CommsFaults` and :class:`Channel`: message loss and delay between the agents and the
  coordinator (paper §3.5 and its reference [38]). A schedule lost on the way up leaves the
  coordinator with the last schedule it received from that agent; a price is delivered after a
  random delay of whole rounds, and an agent always uses the newest price that has reached it (a
  lost price is one that never arrives). Registration (round 0: the agents' first schedules, the
  coordinator's first prices) is delivered reliably, so every party always holds something.
  The channel counts messages and numbers each way (the informational cost, paper §3.1.3).
- :class:`Recorder` and :class:`IterativeResult`: every round's primal residual, dual residual
  (or price change) and objective, so convergence can be plotted, and the final prices and
  schedules.
- :class:`CentralizedOptimum` and :func:`relative_gap`: the same problem solved in one piece (by
  cvxpy in each algorithm's module), against which every algorithm reports its gap.
- :func:`checked_step_size`: a step size outside an algorithm's proven range is refused with the
  bound (or, where the bound is sufficient but not necessary, warned about).

Pure computation: arrays in, arrays and frozen dataclasses out; randomness only through the
faults' seed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from transactive.errors import Problems, is_count, is_real

__all__ = [
    "CentralizedOptimum",
    "Channel",
    "CommsFaults",
    "IterativeResult",
    "Recorder",
    "StepSizeWarning",
    "StoppingRule",
    "checked_step_size",
    "relative_gap",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]


#: What a forgotten round's prices are replaced with in ``Channel.price_history``.
_FORGOTTEN: FloatArray = np.empty(0)


class StepSizeWarning(UserWarning):
    """A step size lies outside the range an algorithm's convergence proof covers."""


@dataclass(frozen=True)
class StoppingRule:
    """When an iteration stops.

    Attributes
    ----------
    tolerance:
        The run has converged when both residuals of a round (each algorithm says which, and how
        it scales them, in its docstring) are at most this.
    max_rounds:
        The most rounds run; reaching it without meeting ``tolerance`` ends the run with
        ``converged=False``.
    min_rounds:
        Rounds run before the tolerance is tested (an algorithm whose first residual can be zero
        by accident, e.g. from an all-zero start, needs at least 2).

    """

    tolerance: float = 1e-4
    max_rounds: int = 1000
    min_rounds: int = 1

    def __post_init__(self) -> None:
        problems = Problems(subject="stopping rule")
        if not is_real(self.tolerance) or float(self.tolerance) <= 0:
            problems.add("tolerance", f"must be a finite number > 0, got {self.tolerance!r}")
        for name in ("max_rounds", "min_rounds"):
            value = getattr(self, name)
            if not is_count(value) or int(value) < 1:
                problems.add(name, f"must be an integer >= 1, got {value!r}")
        if (
            is_count(self.max_rounds)
            and is_count(self.min_rounds)
            and self.min_rounds > self.max_rounds
        ):
            problems.add(
                "min_rounds", f"exceeds max_rounds ({self.min_rounds} > {self.max_rounds})"
            )
        problems.raise_if_any()

    def met(self, round_index: int, primal_residual: float, dual_residual: float) -> bool:
        """Whether round ``round_index`` (1-based) ends the run by tolerance."""
        return (
            round_index >= self.min_rounds
            and primal_residual <= self.tolerance
            and dual_residual <= self.tolerance
        )


@dataclass(frozen=True)
class CommsFaults:
    """Imperfect communication between agents and coordinator (paper §3.5).

    Attributes
    ----------
    loss_probability:
        Probability, independently per message, that an agent's schedule or a price sent to an
        agent is lost. In ``[0, 1)``.
    max_delay_rounds:
        A price reaches its agent after a delay drawn uniformly from ``0 .. max_delay_rounds``
        whole rounds (0: prices arrive in the round they are sent).
    seed:
        Seed of the random draws; the same seed gives the same faults.

    """

    loss_probability: float = 0.0
    max_delay_rounds: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = Problems(subject="communication faults")
        p = self.loss_probability
        if not is_real(p) or not 0.0 <= float(p) < 1.0:
            problems.add("loss_probability", f"must lie in [0, 1), got {p!r}")
        if not is_count(self.max_delay_rounds) or int(self.max_delay_rounds) < 0:
            problems.add(
                "max_delay_rounds", f"must be an integer >= 0, got {self.max_delay_rounds!r}"
            )
        if not is_count(self.seed):
            problems.add("seed", f"must be an integer, got {self.seed!r}")
        problems.raise_if_any()

    @property
    def perfect(self) -> bool:
        """No loss and no delay."""
        return float(self.loss_probability) == 0.0 and int(self.max_delay_rounds) == 0


@dataclass
class Channel:
    """The messages between one coordinator and ``n_agents`` agents, round by round.

    Use: ``register(first_prices, first_schedules)`` once (delivered reliably), then each round
    ``prices_held(k, prices)`` (the coordinator broadcasts ``prices``; returns, per agent, the
    index of the round whose prices it now holds, to be gathered with :meth:`gather`) and
    ``schedules_held(k, schedules)`` (the agents send; returns what the coordinator holds).

    ``prices`` may be one vector for everyone (``(T,)`` or ``(T, B)``, a broadcast) or one per
    agent (first axis ``N``); the count of numbers per message is the size of what one agent is
    sent.
    """

    faults: CommsFaults
    n_agents: int
    price_history: list[FloatArray] = field(default_factory=list)
    _held_round: IntArray = field(init=False)
    _schedules: FloatArray | None = field(init=False, default=None)
    _rng: np.random.Generator = field(init=False)
    _pending: list[tuple[int, IntArray]] = field(init=False, default_factory=list)
    _per_agent_prices: bool = field(init=False, default=False)
    _forgotten_below: int = field(init=False, default=0)
    messages_down: int = field(init=False, default=0)
    messages_up: int = field(init=False, default=0)
    numbers_down: int = field(init=False, default=0)
    numbers_up: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not is_count(self.n_agents) or self.n_agents < 0:
            raise ValueError(f"n_agents must be an integer >= 0, got {self.n_agents!r}")
        self._held_round = np.zeros(self.n_agents, dtype=np.int64)
        self._rng = np.random.default_rng(int(self.faults.seed))

    # ------------------------------------------------------------------ registration (round 0)

    def register(
        self,
        first_prices: npt.ArrayLike,
        first_schedules: npt.ArrayLike | None,
        *,
        per_agent: bool = False,
    ) -> None:
        """Round 0: the first prices and every agent's first schedule, delivered reliably.

        ``first_schedules`` has the agents on its *last* axis (``(T, N)``, time first); None for
        an algorithm whose agents send nothing up (a consensus among peers): then
        :meth:`schedules_held` is not used. ``per_agent`` says that ``first_prices`` holds one
        price vector per agent (first axis N).
        """
        prices = np.array(first_prices, dtype=np.float64)
        self._per_agent_prices = per_agent
        self.price_history = [prices]
        self._forgotten_below = 0
        self._held_round[:] = 0
        self._count_down(prices, np.ones(self.n_agents, dtype=bool))
        if first_schedules is None:
            self._schedules = None
            return
        self._schedules = np.array(first_schedules, dtype=np.float64)
        self._count_up(self._schedules, np.ones(self.n_agents, dtype=bool))

    # ------------------------------------------------------------------ downlink

    def prices_held(self, round_index: int, prices: npt.ArrayLike) -> IntArray:
        """Broadcast ``prices`` in round ``round_index``; per agent, the round of the prices held.

        With perfect communication every agent holds ``round_index``. Otherwise each copy is lost
        with ``loss_probability`` or arrives ``0 .. max_delay_rounds`` rounds later, and an agent
        holds the newest prices that have reached it.
        """
        if not self.price_history:
            raise RuntimeError("register() the first prices and schedules before round 1")
        if round_index != len(self.price_history):
            raise ValueError(
                f"rounds must follow one another: expected round {len(self.price_history)}, "
                f"got {round_index}"
            )
        prices_arr = np.array(prices, dtype=np.float64)
        self.price_history.append(prices_arr)
        n = self.n_agents
        if self.faults.perfect:
            self._held_round[:] = round_index
            self._count_down(prices_arr, np.ones(n, dtype=bool))
            self._forget_older_than(round_index)
            return self._held_round.copy()
        sent = self._rng.random(n) >= float(self.faults.loss_probability)
        self._count_down(prices_arr, np.ones(n, dtype=bool))
        delay = (
            self._rng.integers(0, int(self.faults.max_delay_rounds) + 1, size=n)
            if self.faults.max_delay_rounds
            else np.zeros(n, dtype=np.int64)
        )
        arrival = np.where(sent, round_index + delay, -1)
        self._pending.append((round_index, arrival))
        still: list[tuple[int, IntArray]] = []
        for sent_round, arrival_round in self._pending:
            arrived = (arrival_round >= 0) & (arrival_round <= round_index)
            newer = arrived & (sent_round > self._held_round)
            self._held_round[newer] = sent_round
            if (arrival_round > round_index).any():
                still.append((sent_round, np.where(arrived, -1, arrival_round)))
        self._pending = still
        self._forget_older_than(int(self._held_round.min()) if n else round_index)
        return self._held_round.copy()

    def _forget_older_than(self, oldest_held: int) -> None:
        """Free the prices no agent holds any more (a late copy of them would not be used)."""
        for r in range(self._forgotten_below, oldest_held):
            self.price_history[r] = _FORGOTTEN
        self._forgotten_below = max(self._forgotten_below, oldest_held)

    def gather(self, held_round: IntArray) -> FloatArray:
        """The prices each agent holds, stacked on a first axis of length N.

        For broadcast prices of shape ``S`` the result is ``(N, *S)``; for per-agent prices
        ``(N, ...)`` it is each agent's own row of the round it holds.
        """
        rounds = np.asarray(held_round, dtype=np.int64)
        if rounds.size == 0:
            shape = self.price_history[-1].shape
            return np.empty((0, *(shape[1:] if self._per_agent_prices else shape)))
        unique, inverse = np.unique(rounds, return_inverse=True)
        if self._per_agent_prices:
            if unique.size == 1:
                return self.price_history[int(unique[0])].copy()
            rows = np.arange(self.n_agents)
            out = np.empty_like(self.price_history[int(unique[-1])])
            for j, r in enumerate(unique):
                pick = inverse == j
                out[pick] = self.price_history[int(r)][rows[pick]]
            return out
        if unique.size == 1:
            base = self.price_history[int(unique[0])]
            return np.broadcast_to(base, (self.n_agents, *base.shape))
        return np.stack([self.price_history[int(r)] for r in unique])[inverse]

    # ------------------------------------------------------------------ uplink

    def schedules_held(self, schedules: npt.ArrayLike) -> FloatArray:
        """The agents send ``schedules`` (agents on the last axis); what the coordinator holds.

        A lost schedule leaves the coordinator with the last one it received from that agent.
        """
        if self._schedules is None:
            raise RuntimeError(
                "register() the first schedules before round 1 (registered without schedules)"
            )
        new = np.asarray(schedules, dtype=np.float64)
        if new.shape != self._schedules.shape:
            raise ValueError(
                f"schedules must keep the registered shape {self._schedules.shape}, got {new.shape}"
            )
        n = self.n_agents
        if float(self.faults.loss_probability) == 0.0:
            arrived = np.ones(n, dtype=bool)
            self._schedules = new.copy()
        else:
            arrived = self._rng.random(n) >= float(self.faults.loss_probability)
            self._schedules[..., arrived] = new[..., arrived]
        self._count_up(new, np.ones(n, dtype=bool))
        return self._schedules.copy()

    # ------------------------------------------------------------------ accounting

    def _count_down(self, prices: FloatArray, mask: npt.NDArray[np.bool_]) -> None:
        if self._per_agent_prices:
            per_message = prices[0].size if prices.ndim and prices.shape[0] else 0
        else:
            per_message = prices.size
        sent = int(mask.sum())
        self.messages_down += sent
        self.numbers_down += sent * int(per_message)

    def _count_up(self, schedules: FloatArray, mask: npt.NDArray[np.bool_]) -> None:
        per_message = schedules.size // max(self.n_agents, 1)
        sent = int(mask.sum())
        self.messages_up += sent
        self.numbers_up += sent * int(per_message)

    def messages_per_agent(self) -> float:
        """Messages sent each way, summed, per agent."""
        return (self.messages_down + self.messages_up) / max(self.n_agents, 1)

    def numbers_per_agent(self) -> float:
        """Numbers sent each way, summed, per agent."""
        return (self.numbers_down + self.numbers_up) / max(self.n_agents, 1)


@dataclass(frozen=True, eq=False)
class IterativeResult:
    """The outcome of an iterative mechanism, with every round's record.

    Attributes
    ----------
    algorithm:
        Which algorithm ran (e.g. ``"valley-filling"``).
    converged, stop_reason:
        Whether the stopping rule's tolerance was met; ``"tolerance"`` or ``"max_rounds"``.
    primal_residual, dual_residual, objective:
        ``(K,)``: one entry per round run (round 1 first). What each residual measures is in the
        algorithm's docstring (for price-based methods the dual residual is the relative price
        change).
    prices:
        The coordinator's last prices (``(T,)``, or ``(T, B)`` per bus).
    schedules_kw:
        ``(T, N)``: the agents' last schedules as the coordinator holds them.
    ids:
        ``(N,)`` agent ids, in the schedules' column order.
    messages_per_agent, numbers_per_agent:
        Messages and numbers exchanged per agent, both ways, registration included.
    faults:
        The communication faults the run had.
    extra:
        Algorithm-specific final values (e.g. per-bus congestion prices), named.

    """

    algorithm: str
    converged: bool
    stop_reason: str
    primal_residual: FloatArray
    dual_residual: FloatArray
    objective: FloatArray
    prices: FloatArray
    schedules_kw: FloatArray
    ids: StrArray
    messages_per_agent: float
    numbers_per_agent: float
    faults: CommsFaults
    extra: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def n_rounds(self) -> int:
        """Rounds run."""
        return int(self.objective.shape[0])

    def rounds_to(self, tolerance: float) -> int | None:
        """The first round (1-based) whose residuals are both within ``tolerance``, or None."""
        ok = (self.primal_residual <= tolerance) & (self.dual_residual <= tolerance)
        where = np.flatnonzero(ok)
        return int(where[0]) + 1 if where.size else None


class Recorder:
    """Collects one record per round and builds the :class:`IterativeResult`."""

    def __init__(self, algorithm: str, rule: StoppingRule) -> None:
        self.algorithm = algorithm
        self.rule = rule
        self._primal: list[float] = []
        self._dual: list[float] = []
        self._objective: list[float] = []

    @property
    def round_index(self) -> int:
        """Rounds recorded so far."""
        return len(self._objective)

    def record(self, primal_residual: float, dual_residual: float, objective: float) -> bool:
        """Record a round; True when the run should stop (tolerance met or round limit)."""
        self._primal.append(float(primal_residual))
        self._dual.append(float(dual_residual))
        self._objective.append(float(objective))
        k = len(self._objective)
        return self.rule.met(k, primal_residual, dual_residual) or k >= self.rule.max_rounds

    def result(
        self,
        *,
        prices: npt.ArrayLike,
        schedules_kw: npt.ArrayLike,
        ids: npt.ArrayLike,
        channel: Channel,
        extra: dict[str, FloatArray] | None = None,
    ) -> IterativeResult:
        """The result after the last recorded round."""
        k = len(self._objective)
        converged = k > 0 and self.rule.met(k, self._primal[-1], self._dual[-1])
        return IterativeResult(
            algorithm=self.algorithm,
            converged=bool(converged),
            stop_reason="tolerance" if converged else "max_rounds",
            primal_residual=np.asarray(self._primal, dtype=np.float64),
            dual_residual=np.asarray(self._dual, dtype=np.float64),
            objective=np.asarray(self._objective, dtype=np.float64),
            prices=np.asarray(prices, dtype=np.float64).copy(),
            schedules_kw=np.asarray(schedules_kw, dtype=np.float64).copy(),
            ids=np.asarray(ids, dtype=np.str_).copy(),
            messages_per_agent=channel.messages_per_agent(),
            numbers_per_agent=channel.numbers_per_agent(),
            faults=channel.faults,
            extra=dict(extra or {}),
        )


@dataclass(frozen=True, eq=False)
class CentralizedOptimum:
    """The same problem solved in one piece (the reference every algorithm is measured against).

    ``objective`` in the algorithm's own units (its docstring says which); ``schedules_kw`` time
    first ``(T, N)``; ``prices`` the balance constraint's duals where the problem has one.
    """

    objective: float
    schedules_kw: FloatArray
    prices: FloatArray | None
    solver: str
    solve_time_s: float


def relative_gap(objective: float, optimum: CentralizedOptimum | float) -> float:
    """``(objective - optimum) / max(|optimum|, 1e-12)``: how far above the optimum a run ended."""
    best = optimum.objective if isinstance(optimum, CentralizedOptimum) else float(optimum)
    return (float(objective) - best) / max(abs(best), 1e-12)


def checked_step_size(
    name: str,
    value: object,
    *,
    upper: float | None = None,
    upper_inclusive: bool = False,
    bound_is_necessary: bool = True,
    reference: str = "",
) -> float:
    """Check a step size: finite, > 0 and (if ``upper`` is given) below its proven bound.

    A value above the bound raises :class:`~transactive.errors.ValidationError` naming the bound
    when the bound is necessary for convergence, and warns with :class:`StepSizeWarning` when it
    is only sufficient (the method may still converge, the proof no longer covers it).
    """
    problems = Problems(subject="step size")
    if not is_real(value) or float(value) <= 0:  # type: ignore[arg-type]
        problems.add(name, f"must be a finite number > 0, got {value!r}")
        problems.raise_if_any()
    step = float(value)  # type: ignore[arg-type]
    if upper is not None:
        beyond = step > upper if upper_inclusive else step >= upper
        if beyond:
            relation = "<=" if upper_inclusive else "<"
            why = f" ({reference})" if reference else ""
            text = f"must be {relation} {upper:.6g}{why}, got {step:.6g}"
            if bound_is_necessary:
                problems.add(name, text)
                problems.raise_if_any()
            warnings.warn(
                f"{name} {text}: convergence is not guaranteed", StepSizeWarning, stacklevel=2
            )
    return step
