"""The sans-I/O bandit engine: validated configuration, selection and outcomes.

The engine does the maths and nothing else: it reads a :class:`BanditState` snapshot and
returns a :class:`Selection`; it turns rewards, failures and expiries into :class:`Outcome`
values that a store applies atomically. It never awaits, sleeps or reads a clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import compress, repeat
from operator import le, lt, ne, sub, truediv
from typing import Any, Final

from bandit_router._errors import ConfigurationError, UnknownArmError
from bandit_router._stats import (
    BanditState,
    Outcome,
    Prior,
    _finite,
    check_decay,
    check_reward,
)
from bandit_router.budget import Budget, BudgetChoice, Ledger, choose, mixture, optimistic
from bandit_router.policies import (
    KLUCB,
    UCB1,
    BoundedPolicy,
    IndexBounds,
    Policy,
    RewardTransform,
    ThompsonSampling,
    UCBTuned,
)

__all__ = ["DEFAULT_MAX_PENDING", "DEFAULT_PENDING_TTL", "Engine", "PendingDecision", "Rules"]

#: Pending decisions older than this many seconds expire (see ``expired_reward``).
DEFAULT_PENDING_TTL: Final = 3600.0
#: At most this many decisions wait for feedback at once; the oldest is expired beyond it.
DEFAULT_MAX_PENDING: Final = 100_000

#: Built-in policies, known not to modify the lists they are given (so they need no copy).
_READ_ONLY_POLICIES: Final = frozenset({UCB1, UCBTuned, KLUCB, ThompsonSampling})
_ONE: Final = Outcome(reward=1.0, learn=1.0)
_ZERO: Final = Outcome(reward=0.0, learn=0.0)


class _Default:
    """The type of :data:`DEFAULT`: "use the engine's own setting"."""


DEFAULT: Final = _Default()


@dataclass(frozen=True, slots=True)
class Rules:
    """What a store needs to know to apply updates and keep the pending registry.

    Attributes:
        decay: Discount per observation (global clock), or ``None``.
        expired: The outcome applied to a decision that expires or is evicted unsettled.
        pending_ttl: Seconds a decision may wait for its reward.
        max_pending: Most decisions that may wait at once per router name; beyond it the
            oldest is expired early.
    """

    decay: float | None
    expired: Outcome
    pending_ttl: float
    max_pending: int


@dataclass(frozen=True, slots=True)
class PendingDecision:
    """A routing decision waiting for its reward.

    Attributes:
        decision_id: The id feedback refers to (the LangChain run id of the router's call).
        context: The context whose statistics the reward updates.
        arm: The arm the call was routed to.
        started_at: When the decision was made (seconds, the caller's clock).
        expires_at: When it expires unsettled.
    """

    decision_id: str
    context: str
    arm: str
    started_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class Selection:
    """Why an arm was chosen: the figures the policy saw.

    Attributes:
        arm: The chosen arm.
        arms: Every arm name, aligned with the lists below.
        indices: The policy's index per arm (less its known cost, when the engine has
            ``costs``): ``inf`` for untried arms, ``nan`` for excluded
            arms and, while untried arms remain, for every tried arm (no index is computed
            until every arm has been tried). Under a policy with exact pruning
            (:class:`~bandit_router.policies.BoundedPolicy`, such as the default ``KLUCB()``)
            the indices of the arms that could not win were not needed for the choice: they
            are computed when this field is first read, from the statistics of the choice, and
            are the same numbers the full computation gives.
        means: Each arm's estimated mean (``None`` without data or prior); calls in flight
            do not change it.
        pulls: Raw completed pulls per arm.
        in_flight: Calls in flight per arm when the choice was made.
        explore: Whether the chosen arm is not the one with the best mean.
        policy: The policy's name.
    """

    arm: str
    arms: tuple[str, ...]
    indices: tuple[float, ...]
    means: tuple[float | None, ...]
    pulls: tuple[int, ...]
    in_flight: tuple[int, ...]
    explore: bool
    policy: str


# Selection is a frozen dataclass: its generated __init__ sets every field through
# object.__setattr__, which costs as much as the rest of a fast selection. The hot path fills
# the slots through their descriptors instead: the same object with the same fields.
_SELECTION_SETTERS: Final[tuple[Any, ...]] = tuple(
    Selection.__dict__[f.name].__set__ for f in fields(Selection)
)
_INDICES_SLOT: Final[Any] = Selection.__dict__["indices"]


class _Pruned(tuple[Any, ...]):
    """The indices of a pruned selection, until they are read (see ``Selection.indices``).

    ``(bounds, known, keep, costs, size)``: the policy's bounds (with the statistics of the
    moment), the exact indices already computed, the allowed arms, the costs and the number
    of arms. A tuple subclass: built in C, told apart from the final tuple by its type.
    """

    __slots__ = ()

    def materialize(self) -> tuple[float, ...]:
        """Return every arm's index, as the full computation reports them."""
        bounds, known, keep, costs, size = self
        out = [math.nan] * size
        exact = bounds.exact
        for j in range(size if keep is None else len(keep)):
            v = known.get(j)
            if v is None:
                v = exact(j)
            i = j if keep is None else keep[j]
            out[i] = v if costs is None else v - costs[i]
        return tuple(out)


#: The incremental choice is used from this many arms (below, pruning from scratch is as fast).
_MEMO_MIN_ARMS: Final = 16
#: Kept bounds are widened by this much: the index grows with the count, but where its
#: formula changes (level 0: the mean; above: the two-point transform of a bisection) a
#: rounding could take back a few units in the last place.
_MEMO_SLACK: Final = 1e-15
#: After this many choices in a row that the memo could not serve, it is left aside a while.
_MEMO_PATIENCE: Final = 4


class _Memo:
    """Per-arm caps kept between choices (see ``Engine._choose_incremental``).

    For arm j: the statistics its cap was made from (``n``, ``s``, ``q``); ``cap[j]``, a
    certified upper bound of its index less its cost while the total count is at most
    ``horizon[j]``; ``low[j]``, a lower bound of it (which holds at any later count).
    ``expiry`` is at most the smallest horizon; ``built``: every arm has had a cap.
    ``misses`` counts the choices in a row the memo could not serve; ``skip``, the choices
    left before it is tried again.
    """

    __slots__ = (
        "built",
        "cap",
        "expiry",
        "horizon",
        "k",
        "low",
        "misses",
        "n",
        "q",
        "s",
        "skip",
    )

    def __init__(self, k: int) -> None:
        self.k = k
        self.n = [math.nan] * k  # NaN equals nothing: every arm starts changed
        self.s = [math.nan] * k
        self.q = [math.nan] * k
        self.cap = [math.inf] * k
        self.low = [-math.inf] * k
        self.horizon = [-math.inf] * k
        self.expiry = -math.inf
        self.built = False
        self.misses = 0
        self.skip = 0

    def missed(self) -> _Memo:
        """Count a choice the memo could not serve; a few in a row: back off, then start anew."""
        self.misses += 1
        if self.misses >= _MEMO_PATIENCE:
            self.skip = 16 << min(self.misses - _MEMO_PATIENCE, 6)  # up to 1,024 choices
            self.built = False
        return self

    def certify(
        self,
        policy: KLUCB,
        arms: Iterable[int],
        n: list[float],
        s: list[float],
        q: list[float],
        t: float,
        floor: float,
        lower: dict[int, float],
        costs: tuple[float, ...] | None,
    ) -> None:
        """Give ``arms`` (changed or expired) their statistics, lower bound and a new cap.

        The cap is the cheap bound at the later count, or the exact index there when the
        cheap one does not clear the floor.
        """
        step = max(16.0, t / 64.0)
        # Four horizons, by arm, so that caps made together do not all expire together.
        ends = [t + step * (1.0 + 0.25 * i) for i in range(4)]
        later = [policy._lazy_bounds(n, s, q, end) for end in ends]
        cap, horizon, low = self.cap, self.horizon, self.low
        mn, ms, mq = self.n, self.s, self.q
        for j in arms:
            at = later[j & 3]
            lo, hi = at.bounds_of(j)
            c = 0.0 if costs is None else costs[j]
            if hi - c >= floor and lo != hi:  # would not clear the floor: the exact index
                hi = at.exact(j)
            mn[j], ms[j], mq[j] = n[j], s[j], q[j]
            cap[j] = (hi if costs is None else hi - c) + _MEMO_SLACK
            low[j] = lower[j] - _MEMO_SLACK
            horizon[j] = ends[j & 3]
        if ends[0] < self.expiry or t > self.expiry:
            self.expiry = min(horizon)


def _read_indices(sel: Selection) -> tuple[float, ...]:
    value = _INDICES_SLOT.__get__(sel, Selection)
    if type(value) is _Pruned:
        value = value.materialize()
        _INDICES_SLOT.__set__(sel, value)
    return value  # type: ignore[no-any-return]


# The indices field reads through this property, which fills a pruned selection's indices on
# first use; everything else about the dataclass (init, eq, repr, replace, pickling) is as is.
setattr(  # noqa: B010 - assigning the attribute directly would shadow the declared field type
    Selection,
    "indices",
    property(
        _read_indices,
        _INDICES_SLOT.__set__,
        doc="The policy's index per arm (see the class docstring); filled on first read.",
    ),
)


def _selection(
    arm: str,
    arms: tuple[str, ...],
    indices: tuple[float, ...],
    means: tuple[float | None, ...],
    pulls: tuple[int, ...],
    in_flight: tuple[int, ...],
    explore: bool,
    policy: str,
) -> Selection:
    """Return ``Selection(arm, arms, ...)``, built faster than its ``__init__`` does."""
    sel: Selection = object.__new__(Selection)
    s_arm, s_arms, s_indices, s_means, s_pulls, s_in_flight, s_explore, s_policy = (
        _SELECTION_SETTERS
    )
    s_arm(sel, arm)
    s_arms(sel, arms)
    s_indices(sel, indices)
    s_means(sel, means)
    s_pulls(sel, pulls)
    s_in_flight(sel, in_flight)
    s_explore(sel, explore)
    s_policy(sel, policy)
    return sel


def _check_optional_reward(value: object, what: str) -> float | None:
    if value is None:
        return None
    try:
        return check_reward(value, what=what)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


class Engine:
    """Validated bandit configuration plus the pure selection and update rules.

    Args:
        arms: Arm names, in order (non-empty, unique, non-empty strings).
        policy: The selection rule; default ``KLUCB()`` (anytime KL-UCB++-style rate).
        priors: Optional ``{arm: Prior}`` pseudo-observations.
        decay: Discount per observation of any arm, in (0, 1]; ``None`` is stationary.
        failure_reward: What a failed attempt teaches the policy about its arm (a reward in
            [0, 1]; default 0.0), or ``None`` to count failures without learning from them.
        expired_reward: What a decision whose reward never arrives counts as: ``None`` (the
            default) counts nothing and only releases its in-flight slot; a number counts it as
            that reward.
        pending_ttl: Seconds a decision waits for its reward before it expires (> 0).
        max_pending: Most decisions waiting at once per router name (>= 1).
        seed: Seed of the random generator used for tie-breaking and sampling.
        costs: Optional ``{arm: cost}``: the *known* cost of one call of each arm, in the
            reward's units, subtracted from that arm's policy index ("cost is known, quality
            is learned"). The rewards then measure quality only, and exploration is spent on
            quality alone. For the trade-off ``quality - lam * usd / max_usd``, give
            ``lam * usd_per_call / max_usd``. Arms not listed cost 0.
        rate_limit_reward: What a rate-limited attempt teaches about its arm (default
            ``None``: nothing; it is still counted in ``failures``).
        budget: Optional :class:`~bandit_router.budget.Budget`: maximise quality at an average
            spend per call instead (see :meth:`select_budgeted`); exclusive with ``costs``.

    Raises:
        ConfigurationError: On any invalid argument; the message names it.
    """

    __slots__ = (
        "_bounded",
        "_incremental",
        "_learn",
        "_memo",
        "_name",
        "_read_only",
        "arms",
        "budget",
        "budget_costs",
        "costs",
        "decay",
        "failure_reward",
        "policy",
        "priors",
        "rate_limit_reward",
        "rng",
        "rules",
    )

    def __init__(
        self,
        arms: Collection[str],
        *,
        policy: Policy | None = None,
        priors: Mapping[str, Prior] | None = None,
        decay: float | None = None,
        failure_reward: float | None = 0.0,
        expired_reward: float | None = None,
        pending_ttl: float = DEFAULT_PENDING_TTL,
        max_pending: int = DEFAULT_MAX_PENDING,
        seed: int | None = None,
        costs: Mapping[str, float] | None = None,
        rate_limit_reward: float | None = None,
        budget: Budget | None = None,
    ) -> None:
        if isinstance(arms, str | bytes):
            raise ConfigurationError(f"arms must be a collection of names, got {arms!r}")
        names = tuple(arms)
        if not names:
            raise ConfigurationError("a router needs at least one arm, got none")
        for a in names:
            if not isinstance(a, str) or not a:
                raise ConfigurationError(f"arm names must be non-empty strings, got {a!r}")
        dupes = sorted({a for a in names if names.count(a) > 1})
        if dupes:
            raise ConfigurationError(f"duplicate arm names: {dupes}")
        policy = KLUCB() if policy is None else policy
        if isinstance(policy, type) or not isinstance(policy, Policy):
            raise ConfigurationError(
                f"policy must implement the Policy protocol (name, indices), got {policy!r}"
            )
        prior_map = dict(priors or {})
        for arm, p in prior_map.items():
            if arm not in names:
                raise ConfigurationError(
                    f"prior for unknown arm {arm!r}; the arms are {list(names)}"
                )
            if not isinstance(p, Prior):
                raise ConfigurationError(f"prior for arm {arm!r} must be a Prior, got {p!r}")
        if not _finite(pending_ttl) or pending_ttl <= 0:
            raise ConfigurationError(
                f"pending_ttl must be a number of seconds > 0, got {pending_ttl!r}"
            )
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ConfigurationError(f"max_pending must be an integer >= 1, got {max_pending!r}")
        self.arms: tuple[str, ...] = names
        self.policy: Policy = policy
        self.priors: tuple[Prior | None, ...] | None = (
            tuple(prior_map.get(a) for a in names) if prior_map else None
        )
        self.decay = check_decay(decay)
        self.failure_reward = _check_optional_reward(failure_reward, "failure_reward")
        self.rate_limit_reward = _check_optional_reward(rate_limit_reward, "rate_limit_reward")
        expired = _check_optional_reward(expired_reward, "expired_reward")
        self.rules = Rules(
            decay=self.decay,
            expired=Outcome(reward=expired, learn=expired),
            pending_ttl=float(pending_ttl),
            max_pending=max_pending,
        )
        self.rng = random.Random(seed)
        self.costs: tuple[float, ...] | None = _check_costs(costs, names)
        self._learn = policy.learn if isinstance(policy, RewardTransform) else None
        self.budget: Budget | None = None
        self.budget_costs: tuple[float, ...] = ()
        if budget is not None:
            if self.costs is not None:
                raise ConfigurationError(
                    "costs= (a price subtracted from the index) and budget= (a spending rate) "
                    "are two ways to trade quality for money: give one"
                )
            self.set_budget(budget)
        self._bounded = policy if isinstance(policy, BoundedPolicy) else None
        # The built-in policies never modify their arguments (no copies needed), and they are
        # frozen: their name never changes (a property call saved).
        self._read_only = type(policy) in _READ_ONLY_POLICIES
        self._name = policy.name if self._read_only else None
        self._memo: _Memo | None = None
        # KL-UCB's index grows with t, the memo's premise (see _choose_incremental).
        self._incremental = policy if isinstance(policy, KLUCB) else None

    # --- outcomes ------------------------------------------------------------------------

    def reward_outcome(self, reward: object) -> Outcome:
        """Validate ``reward`` and return the outcome it makes.

        Raises:
            InvalidRewardError: If the reward is not a finite number in [0, 1] (or a bool).
        """
        # The test is check_reward's fast path: a float in [0, 1] (so neither NaN nor inf).
        r = reward if type(reward) is float and 0.0 <= reward <= 1.0 else check_reward(reward)
        learn = self._learn
        v = r if learn is None else learn(r, self.rng)
        # Outcomes are immutable: share the two most common ones (binary rewards).
        if type(v) is float and v == r:
            if r == 1.0:
                return _ONE
            if r == 0.0 and math.copysign(1.0, r) == 1.0 and math.copysign(1.0, v) == 1.0:
                return _ZERO
        return Outcome(reward=r, learn=v)

    def failure_outcome(self) -> Outcome:
        """Return the outcome of a failed attempt (``failure_reward`` learned, if any)."""
        return Outcome(reward=None, learn=self.failure_reward, failure=True)

    def rate_limit_outcome(self) -> Outcome:
        """Return the outcome of a rate-limited attempt.

        A failure, learned only if ``rate_limit_reward`` is set: a rate limit is about
        capacity, not quality.
        """
        return Outcome(reward=None, learn=self.rate_limit_reward, failure=True)

    # --- selection -----------------------------------------------------------------------

    def new_state(self) -> BanditState:
        """Return the empty state of a bandit over this engine's arms."""
        return BanditState(self.arms)

    def select(
        self,
        state: BanditState,
        exclude: Collection[str] = (),
        priors: tuple[Prior | None, ...] | _Default | None = DEFAULT,
    ) -> Selection:
        """Choose an arm from a state snapshot.

        Arms with no data, no prior and nothing in flight are tried first. Calls in flight
        count as virtual observations at the arm's current mean (at 0 for an arm with no
        data), so a burst of concurrent calls spreads its exploration: each pending call
        shrinks its arm's confidence bonus as a real observation would (the "hallucinated
        observations" of Desautels, Krause & Burdick, "Parallelizing Exploration-Exploitation
        Tradeoffs in Gaussian Process Bandit Optimization", JMLR 2014), without pretending to
        know its reward. Ties are broken at random.

        Args:
            state: The bandit's statistics (not modified).
            exclude: Arms that must not be chosen (those that already failed this call).
            priors: Priors aligned with the arms, used instead of the engine's own for this
                selection (a context seeded from the global statistics); default: the
                engine's.

        Returns:
            The choice and the figures it was made from.

        Raises:
            UnknownArmError: If ``exclude`` names an unknown arm or excludes every arm.
        """
        use = self.priors if priors is DEFAULT or isinstance(priors, _Default) else priors
        flights = state.in_flight
        if exclude or any(flights):
            return self._select_general(state, exclude, use)
        # Fast path (the common case): nothing in flight, nothing excluded. Same maths and
        # the same random draws as the general path.
        decay = self.decay
        policy = self.policy
        decayed = decay is not None and decay != 1.0
        fresh = use is not None or decayed
        if fresh:
            n, s, q = state.discounted(decay, use)
        elif self._read_only:
            n, s, q = state.n, state.total, state.total_sq
        else:
            n, s, q = state.n.copy(), state.total.copy(), state.total_sq.copy()
        if min(n) <= 0.0:  # an arm to try first
            return self._select_general(state, exclude, use)
        rng = self.rng
        costs = self.costs
        idx: Any
        bounded = self._bounded
        if bounded is not None:
            if not fresh:  # the pruned indices are filled later: they need their own lists
                n, s, q = n.copy(), s.copy(), q.copy()
            pick = None
            incremental = self._incremental
            if incremental is not None and len(n) >= _MEMO_MIN_ARMS and not decayed:
                pick = self._choose_incremental(incremental, n, s, q)
            if pick is None:
                pick = self._choose_pruned(bounded, n, s, q, None)
            if pick is not None:
                chosen, idx = pick
                means = list(map(truediv, s, n))
                net = means if costs is None else list(map(sub, means, costs))
                return _selection(
                    self.arms[chosen],
                    self.arms,
                    idx,
                    tuple(means),
                    tuple(state.pulls),
                    tuple(flights),
                    net[chosen] < max(net),
                    self._name or policy.name,
                )
        idx = policy.indices(n, s, q, math.fsum(n), rng)
        if type(idx) is not list:
            idx = list(idx)
        k = len(n)
        if len(idx) != k:
            raise ValueError(f"policy {policy.name!r} returned {len(idx)} indices for {k} arms")
        means = list(map(truediv, s, n))
        net = means
        if costs is not None:
            idx = list(map(sub, idx, costs))
            net = list(map(sub, means, costs))
        best = max(idx)
        # max() equals the general loop's best unless idx[0] is NaN (then best != best).
        single = best == best and idx.count(best) == 1
        chosen = idx.index(best) if single else _argmax(idx, rng)
        return _selection(
            self.arms[chosen],
            self.arms,
            tuple(idx),
            tuple(means),
            tuple(state.pulls),
            tuple(flights),
            net[chosen] < max(net),
            self._name or policy.name,
        )

    def _choose_pruned(
        self,
        policy: BoundedPolicy,
        n: list[float],
        s: list[float],
        q: list[float],
        keep: list[int] | None,
    ) -> tuple[int, _Pruned] | None:
        """Choose among the allowed arms by exact pruning; ``None``: use the full computation.

        ``n``, ``s``, ``q`` are the allowed arms' statistics (lists the engine never touches
        again) and ``keep`` their positions (``None``: every arm). The choice, ties and the
        random draw that breaks them included, is the full computation's: an arm is skipped
        only when its index is certainly below the best index found (less costs), and every
        arm whose index equals the best is computed exactly and joins the draw.
        """
        bounds = policy.index_bounds(n, s, q, math.fsum(n))
        upper, lower = raw_upper, raw_lower = bounds.upper, bounds.lower
        size = len(n)
        if len(upper) != size or len(lower) != size:
            name = self.policy.name
            raise ValueError(f"policy {name!r} returned bounds of the wrong length for {size} arms")
        costs = self.costs
        cs = costs if costs is None or keep is None else [costs[i] for i in keep]
        if cs is not None:
            upper = list(map(sub, upper, cs))  # rounding is monotone: still bounds
            lower = list(map(sub, lower, cs))
        floor = max(lower)  # the best index is at least this
        if floor != floor:  # a NaN bound: leave the policy's quirks to the full computation
            return None
        # Only the arms whose upper bound reaches the floor can win or tie.
        rivals: Any = (
            range(size)
            if size <= 16
            else compress(range(size), map(le, repeat(floor, size), upper))
        )
        picked = self._resolve(bounds, rivals, raw_lower, raw_upper, upper, floor, cs)
        if picked is None:
            return None
        chosen, known = picked
        pruned = _Pruned((bounds, known, keep, costs, len(self.arms)))
        return (chosen if keep is None else keep[chosen]), pruned

    def _resolve(
        self,
        bounds: IndexBounds,
        rivals: Iterable[int],
        raw_lower: Any,
        raw_upper: Any,
        upper: Any,
        floor: float,
        cs: Sequence[float] | None,
    ) -> tuple[int, dict[int, float]] | None:
        """Find the best index among ``rivals`` (ties drawn as the full computation draws).

        ``raw_lower[j]``, ``raw_upper[j]``: arm j's bounds; ``upper[j]``: the upper one less
        its cost ``cs[j]``; ``floor``: a lower bound of the best index less costs. Every arm
        not among the rivals must be certainly below the floor. Returns the chosen arm and the
        exact indices computed, or None (a NaN: left to the full computation).
        """
        known: dict[int, float] = {}  # exact indices (before costs)
        best = -math.inf  # the best of them, less costs
        winners: list[int] = []
        todo = []
        for j in rivals:
            u = upper[j]
            if u < floor:
                continue
            e = raw_upper[j]
            if raw_lower[j] == e:  # the bounds meet: that is the index
                known[j] = e
                if u > best:
                    best = u
                    winners = [j]
                elif u == best:
                    winners.append(j)
            else:
                todo.append(j)
        if todo:
            if best > floor:
                floor = best
            # The arms certainly below the floor are dropped in one batch, the others taken
            # most promising first (a high best early stops the loop early).
            if cs is None:
                todo = bounds.keep(todo, [floor] * len(todo))
            else:
                todo = bounds.keep(todo, [_threshold(floor, cs[j]) for j in todo])
            if len(todo) > 1:
                todo.sort(key=upper.__getitem__, reverse=True)
            tested = floor
            exact, survivors = bounds.exact, bounds.keep
            for j in todo:
                if upper[j] < floor:
                    break
                # Every arm whose index may equal the best is computed: "keep" is strict.
                if floor > tested:
                    x = floor if cs is None else _threshold(floor, cs[j])
                    if not survivors((j,), (x,)):
                        continue
                e = known[j] = exact(j)
                v = e if cs is None else e - cs[j]
                if v > best:
                    best = floor = v
                    winners = [j]
                elif v == best:
                    winners.append(j)
                elif v != v:  # NaN
                    return None
        if len(winners) == 1:
            return winners[0], known
        if not winners:  # NaN bounds or indices
            return None
        winners.sort()  # the full computation's draw: among the tied arms, in arm order
        return self.rng.choice(winners), known

    def _choose_incremental(
        self, policy: KLUCB, n: list[float], s: list[float], q: list[float]
    ) -> tuple[int, _Pruned] | None:
        """:meth:`_choose_pruned` for every arm, reusing bounds from earlier choices.

        An arm's index only grows with the total count ``t`` while its own statistics stay
        the same (KL-UCB's level grows with t), so a bound of its index at a later count
        ``t_hi`` bounds it until then. The memo keeps, per arm, such a bound less its cost
        (its "cap") and ``t_hi``. An arm whose cap is below the floor (a lower bound of the
        best index) cannot win: it is skipped without being looked at. The others (statistics
        changed, cap expired, or cap not below the floor) are bounded and resolved as in
        :meth:`_choose_pruned`, and the changed or expired ones get a new cap, valid up to
        ``t + max(16, t / 64) * (1 + (j mod 4) / 4)`` for arm j (so that caps made together
        expire apart): the exact index there when the cheap bound does not clear the floor.
        The floor is the best lower bound in the memo (one made from the same statistics at
        an earlier count still holds) or among the arms looked at. The choice is
        :meth:`_choose_pruned`'s. ``None``: let the caller prune from scratch, as it does
        better when many arms must be looked at one by one (an early, undecided phase; states
        of several contexts alternating); after a few such choices in a row the memo is left
        aside for a while, then made anew.
        """
        k = len(n)
        memo, self._memo = self._memo, None  # a concurrent selection finds none: no sharing
        if memo is None or memo.k != k:
            memo = _Memo(k)
        if memo.skip > 0:  # backing off after choices the memo could not serve
            memo.skip -= 1
            self._memo = memo
            return None
        t = math.fsum(n)
        every = range(k)
        changed = set(compress(every, map(ne, n, memo.n)))
        changed.update(compress(every, map(ne, s, memo.s)))
        changed.update(compress(every, map(ne, q, memo.q)))
        stale = changed
        if t > memo.expiry:
            stale = changed.union(compress(every, map(lt, memo.horizon, repeat(t, k))))
        limit = max(_MEMO_MIN_ARMS, k // 4)
        if memo.built and len(stale) > limit:
            self._memo = memo.missed()
            return None
        bounds = policy._lazy_bounds(n, s, q, t)
        bounds_of = bounds.bounds_of
        costs = self.costs
        raw_lower: dict[int, float] = {}
        raw_upper: dict[int, float] = {}
        lower: dict[int, float] = {}
        upper: dict[int, float] = {}

        def look(j: int) -> float:
            lo, hi = bounds_of(j)
            raw_lower[j] = lo
            raw_upper[j] = hi
            if costs is not None:
                c = costs[j]
                lo -= c
                hi -= c
            lower[j] = lo
            upper[j] = hi
            return lo

        # The floor: the best lower bound known. One made with the same statistics at an
        # earlier count still holds (the index only grows with the count).
        low = memo.low
        for j in changed:
            low[j] = -math.inf
        floor = max(low)
        for j in stale:
            lo = look(j)
            if lo > floor:
                floor = lo
        cap = memo.cap
        # The arms whose cap does not clear the floor are looked at (their lower bounds can
        # only raise the floor further; an arm skipped is below it either way).
        loose = [j for j in compress(every, map(le, repeat(floor, k), cap)) if j not in upper]
        if len(loose) > limit:  # many arms near the top: better bounded all at once
            if stale:
                memo.certify(policy, stale, n, s, q, t, floor, lower, costs)
            self._memo = memo.missed()
            return None
        for j in loose:
            lo = look(j)
            low[j] = lo - _MEMO_SLACK  # the arm's statistics are the memo's: its bound holds
            if lo > floor:
                floor = lo
        if floor != floor or not upper:
            self._memo = memo
            return None
        picked = self._resolve(bounds, list(upper), raw_lower, raw_upper, upper, floor, costs)
        if picked is None:
            self._memo = memo
            return None
        chosen, known = picked
        if stale:
            memo.certify(policy, stale, n, s, q, t, floor, lower, costs)
        memo.built = True
        memo.misses = 0
        self._memo = memo
        return chosen, _Pruned((bounds, known, None, costs, k))

    def _select_general(
        self,
        state: BanditState,
        exclude: Collection[str],
        priors: tuple[Prior | None, ...] | None,
    ) -> Selection:
        """Select in the general case (decay, priors, calls in flight, exclusions)."""
        arms = self.arms
        k = len(arms)
        n, s, q = state.discounted(self.decay, priors)
        # The means reported are the estimates, before any call in flight is hallucinated.
        means: list[float | None] = [s[i] / n[i] if n[i] > 0 else None for i in range(k)]
        flights = state.in_flight
        for i in range(k):
            f = flights[i]
            if f:
                m = n[i]
                if m > 0:
                    # Hallucinate f observations at the current mean and second moment.
                    s[i] += f * s[i] / m
                    q[i] += f * q[i] / m
                n[i] = m + f
        allowed = [True] * k
        for a in exclude:
            if a not in arms:
                raise UnknownArmError(
                    f"cannot exclude unknown arm {a!r}; the arms are {list(arms)}"
                )
            allowed[arms.index(a)] = False
        if not any(allowed):
            raise UnknownArmError(f"every arm is excluded: {sorted(exclude)}")
        untried = [i for i in range(k) if allowed[i] and n[i] <= 0.0]
        rng = self.rng
        pruned: _Pruned | None = None
        if untried:
            chosen = untried[0] if len(untried) == 1 else rng.choice(untried)
            idx = [math.inf if n[i] <= 0.0 and allowed[i] else math.nan for i in range(k)]
        else:
            keep = None if all(allowed) else [i for i in range(k) if allowed[i]]
            pick = None
            if self._bounded is not None:
                if keep is None:
                    pick = self._choose_pruned(self._bounded, n, s, q, None)
                else:
                    pick = self._choose_pruned(
                        self._bounded,
                        [n[i] for i in keep],
                        [s[i] for i in keep],
                        [q[i] for i in keep],
                        keep,
                    )
            if pick is not None:
                chosen, pruned = pick
                idx = []
            else:
                chosen, idx = self._choose_full(n, s, q, keep, allowed)
        costs = self.costs or (0.0,) * k
        net = [None if m is None else m - costs[i] for i, m in enumerate(means)]
        known = [m for i, m in enumerate(net) if m is not None and allowed[i]]
        chosen_mean = net[chosen]
        explore = bool(known) and (chosen_mean is None or chosen_mean < max(known))
        return _selection(
            arms[chosen],
            arms,
            tuple(idx) if pruned is None else pruned,
            tuple(means),
            tuple(state.pulls),
            tuple(flights),
            explore,
            self.policy.name,
        )

    # --- budgets (see bandit_router.budget) ------------------------------------------------

    def set_budget(self, budget: Budget) -> None:
        """Use ``budget`` from the next selection on (a budget changed at run time).

        Raises:
            ConfigurationError: If ``budget`` is not a Budget or lacks an arm's cost.
        """
        if not isinstance(budget, Budget):
            raise ConfigurationError(f"budget must be a Budget, got {budget!r}")
        self.budget_costs = budget.bind(self.arms)
        self.budget = budget

    def select_budgeted(
        self,
        state: BanditState,
        ledger: Ledger,
        *,
        context: str = "",
        exclude: Collection[str] = (),
        priors: tuple[Prior | None, ...] | _Default | None = DEFAULT,
        costs: Sequence[float] | None = None,
    ) -> tuple[Selection, BudgetChoice]:
        """Choose an arm under the engine's budget: the optimistic LP of ``bandit_router.budget``.

        The policy's indices (with priors, decay and calls in flight hallucinated as in
        :meth:`select`) are the optimistic qualities; the LP over them and the arms' expected
        costs, at this call's spending target, gives a mixture of at most two arms (across
        contexts: one price of money, from the frontiers ``ledger`` keeps), and the ledger's
        rounding carry picks the arm. The caller records the call with
        ``ledger.begin(budget, choice, context=...)`` in the same atomic step as the state's.

        Args:
            state: The context's statistics (not modified).
            ledger: The budget's shared spending state (not modified).
            context: The context of the call.
            exclude: Arms that must not be chosen.
            priors: As in :meth:`select`.
            costs: Each arm's expected cost in USD, aligned with the arms (see
                ``budget.expected_costs``); default: the budget's configured costs.

        Returns:
            The selection (its ``indices`` are the optimistic qualities) and the budget's
            figures.

        Raises:
            ConfigurationError: If the engine has no budget.
            UnknownArmError: If ``exclude`` names an unknown arm or excludes every arm.
        """
        budget = self.budget
        if budget is None:
            raise ConfigurationError("this engine has no budget: pass budget= or set_budget()")
        arms = self.arms
        k = len(arms)
        use = self.priors if isinstance(priors, _Default) else priors
        n, s, q = state.discounted(self.decay, use)
        means: list[float | None] = [s[i] / n[i] if n[i] > 0 else None for i in range(k)]
        flights = state.in_flight
        for i in range(k):
            f = flights[i]
            if f:  # hallucinated observations at the current mean, as select() does
                m = n[i]
                if m > 0:
                    s[i] += f * s[i] / m
                    q[i] += f * q[i] / m
                n[i] = m + f
        allowed = [True] * k
        for a in exclude:
            if a not in arms:
                raise UnknownArmError(
                    f"cannot exclude unknown arm {a!r}; the arms are {list(arms)}"
                )
            allowed[arms.index(a)] = False
        if not any(allowed):
            raise UnknownArmError(f"every arm is excluded: {sorted(exclude)}")
        idx = [math.nan] * k
        tried = [i for i in range(k) if allowed[i] and n[i] > 0.0]
        if tried:
            sub_n = [n[i] for i in tried]
            sub = self.policy.indices(
                sub_n, [s[i] for i in tried], [q[i] for i in tried], math.fsum(sub_n), self.rng
            )
            if len(sub) != len(tried):
                raise ValueError(
                    f"policy {self.policy.name!r} returned {len(sub)} indices for {len(tried)} arms"
                )
            for j, i in enumerate(tried):
                idx[i] = sub[j]
        values = optimistic(idx, n)
        cost = tuple(self.budget_costs if costs is None else costs)
        if len(cost) != k:
            raise ValueError(f"costs must give one expected cost per arm, got {len(cost)}")
        choice = choose(budget, ledger, arms, values, cost, context=context, allowed=allowed)
        chosen = arms.index(choice.arm)
        known = [allowed[i] and means[i] is not None for i in range(k)]
        if any(known):
            plain = mixture(
                cost, [m if m is not None else 0.0 for m in means], choice.target, known
            )
            explore = chosen not in (plain.cheap, plain.dear)
        else:
            explore = True
        for i in range(k):
            if not allowed[i]:
                values[i] = math.nan
        sel = Selection(
            arm=choice.arm,
            arms=arms,
            indices=tuple(values),
            means=tuple(means),
            pulls=tuple(state.pulls),
            in_flight=tuple(flights),
            explore=explore,
            policy=self.policy.name,
        )
        return sel, choice

    def _choose_full(
        self,
        n: list[float],
        s: list[float],
        q: list[float],
        keep: list[int] | None,
        allowed: list[bool],
    ) -> tuple[int, list[float]]:
        """Choose by computing every allowed arm's index; return the arm and the indices."""
        k = len(n)
        rng = self.rng
        if keep is None:
            t = math.fsum(n)
            idx = list(self.policy.indices(n, s, q, t, rng))
            expected = k
        else:
            # The policy sees only the arms it may choose (an excluded arm may have no
            # data at all); the others get NaN below.
            sub_n = [n[i] for i in keep]
            sub = self.policy.indices(
                sub_n, [s[i] for i in keep], [q[i] for i in keep], math.fsum(sub_n), rng
            )
            expected = len(keep)
            idx = [math.nan] * k
            if len(sub) == expected:
                for j, i in enumerate(keep):
                    idx[i] = sub[j]
            else:
                idx = list(sub)
        if len(idx) != k:
            raise ValueError(
                f"policy {self.policy.name!r} returned {len(idx)} indices for {expected} arms"
            )
        if self.costs is not None:
            idx = [v - c for v, c in zip(idx, self.costs, strict=True)]
        best = -math.inf
        winners: list[int] = []
        for i in range(k):
            if not allowed[i]:
                continue
            v = idx[i]
            if v > best:
                best = v
                winners = [i]
            elif v == best:
                winners.append(i)
        if not winners:  # every allowed index is NaN: the policy is broken, fall back to random
            winners = [i for i in range(k) if allowed[i]]
        chosen = winners[0] if len(winners) == 1 else rng.choice(winners)
        for i in range(k):
            if not allowed[i]:
                idx[i] = math.nan
        return chosen, idx


def _check_costs(
    costs: Mapping[str, float] | None, arms: tuple[str, ...]
) -> tuple[float, ...] | None:
    """Validate ``{arm: known cost}`` and align it with ``arms`` (``None``: no costs)."""
    if costs is None:
        return None
    if not isinstance(costs, Mapping):
        raise ConfigurationError(f"costs must be a mapping of arm -> cost, got {costs!r}")
    for arm, c in costs.items():
        if arm not in arms:
            raise ConfigurationError(f"cost for unknown arm {arm!r}; the arms are {list(arms)}")
        if not _finite(c) or c < 0:
            raise ConfigurationError(f"cost for arm {arm!r} must be a number >= 0, got {c!r}")
    if not costs:
        return None
    return tuple(float(costs.get(a, 0.0)) for a in arms)


def _argmax(idx: list[float], rng: random.Random) -> int:
    """Return the position of the largest index, ties broken with ``rng`` (NaN never wins)."""
    best = -math.inf
    winners: list[int] = []
    for i, v in enumerate(idx):
        if v > best:
            best = v
            winners = [i]
        elif v == best:
            winners.append(i)
    if not winners:  # every index is NaN: the policy is broken, fall back to random
        winners = list(range(len(idx)))
    return winners[0] if len(winners) == 1 else rng.choice(winners)


def _threshold(best: float, cost: float) -> float:
    """Return an ``x`` with ``x - cost < best`` as rounded (an index below ``x`` loses).

    ``-inf`` if no such ``x`` is found quickly; nothing is then certified below it.
    """
    x = best + cost
    step = math.ulp(x)
    for _ in range(64):
        if x - cost < best:
            return x
        x -= step
        step *= 2.0
    return -math.inf
