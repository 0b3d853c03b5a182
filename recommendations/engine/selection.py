"""Automatic model selection per project, on its own past (rolling origin), within a time budget.

``select`` scores candidates on the windows *before* the data it is given: the last ``window_days`` of
it are the first validation window (trained on what came before), the ``window_days`` before those the
second, and so on (``folds``). Candidates:

- each signal alone (``implicit`` ALS and BPR, EASE, co-occurrence, the sequential "bought after"
  signal, recency-weighted popularity, content) with a small grid of its hyperparameters (``GRID``),
  cold customers getting the cold-start weights as they would when served;
- the default blend (``DEFAULT_PARAMS``);
- a learned blend: weights found by coordinate ascent on the validation windows, from the best of
  the above, then the cold-start weights (content and popularity) for customers with at most
  ``cold_max_items`` items.

The winner is the highest mean NDCG@K over the windows. Every signal is fitted once per window with its
first grid point; further grid points are fitted in ``GRID`` order until 60% of ``budget_s`` is spent (a
point whose last fit would not fit in what is left is skipped), the blend search until all of it is. The
first fits are bounded too: on large projects the windows train on a sample of customers (at most
``MAX_SELECTION_EVENTS`` events), a later window is dropped when the earlier ones used the fitting share,
and a signal whose cost at full size would exceed the whole budget (and ``AFFORDABLE_S``: EASE on a large
catalog, see ``full_size_cost_s``) is not a candidate, since the job would pay it again to train and score the winner.

``choose_and_evaluate`` is what a recommendation job and ``bench.recommend`` run: selection on the
events before the reported hold-out window (it never sees that window), the winner trained on the rest
and measured on the window against popularity, plain ALS and tuned ALS (the best ALS of the grid, alone),
and the cold start measured on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recommendations.engine.evaluation import _metrics, cold_start, evaluate_model, relevant_sets
from recommendations.engine.interactions import Interactions, split_by_time
from recommendations.engine.model import SIGNALS
from recommendations.engine.training import DEFAULT_PARAMS, train

#: Hyperparameters tried per signal; the first point of each is its ``DEFAULT_PARAMS`` values, fitted
#: with every other signal in one training per window, the others one by one, in this order, while the
#: budget lasts. ALS settings with a low confidence weight (alpha 2) and strong regularisation were best
#: on earlier windows of the Online Retail sample and on MovieLens 100k.
GRID: dict[str, list[dict[str, Any]]] = {
    "pop": [{}, {"pop_half_life_days": 7.0}, {"pop_half_life_days": 30.0}, {"pop_half_life_days": 3.0}],
    "als": [
        {},
        {"factors": 64, "regularization": 10.0, "alpha": 2.0},
        {"factors": 16, "regularization": 1.0, "alpha": 2.0},
        {"factors": 128, "regularization": 10.0, "alpha": 2.0},
    ],
    "ease": [{}, {"ease_lambda": 50.0}, {"ease_lambda": 1000.0}],
    "seq": [{}, {"seq_half_life_days": 7.0}, {"seq_window": 1}],
    "items": [{}, {"neighbours": 30}],
    "bpr": [{}, {"bpr_factors": 32, "bpr_learning_rate": 0.01}],
    "content": [{}],
}
#: Every weight off: a single-signal candidate sets its own to 1 (cold customers keep the cold weights).
_ZERO = {f"w_{name}": 0.0 for name in SIGNALS}
#: One signal for everyone, cold customers included (the ALS references).
_ALONE = _ZERO | {"cold_max_items": 0}
#: Blend weights tried for each signal during coordinate ascent (scores are scaled per signal, so
#: weights are relative).
BLEND_STEPS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
#: Cold-start weights tried: (content, popularity).
COLD_GRID = ((1.0, 0.5), (1.0, 0.25), (1.0, 1.0), (1.0, 2.0), (0.0, 1.0))
#: Signal scores kept per window (validation customers x catalog, float32, per signal): 6M cells are
#: 24 MB per signal; above, validation customers are sampled (at least MIN_VALIDATION_USERS).
MAX_CELLS = 6_000_000
MIN_VALIDATION_USERS = 200
#: Events a validation window trains on at most: above, a random sample of its customers (with all their
#: events) stands in for them. Ranking candidates needs the shape of the data, not all of it; a full
#: training per window was 20-25 s at 1M events on 2 CPU cores, 2-3 s at 200k.
MAX_SELECTION_EVENTS = 200_000
#: float32 multiply-adds per second assumed for cost estimates (2 busy CPU cores: EASE scoring 50k
#: customers x 6,000 items, 1.8e12 multiply-adds, took 35 s with the other signals; 5e10 keeps it close).
MATMUL_RATE = 5e10
#: Full-size cost (seconds) a signal may have whatever the budget: below it, leaving a signal out would
#: save less than the job's fixed costs, and a budget of 0 (search stopped) still compares every signal.
AFFORDABLE_S = 10.0
#: Share of the budget for fitting grid points; the rest is for the blend search.
FIT_SHARE = 0.6
FOLDS = 2


@dataclass
class _Window:
    """One validation window: its customers and what they did, and the current signal scores for them."""

    start: int
    end: int
    customers: int
    relevant: list[set[int]]
    exclude: tuple[np.ndarray, np.ndarray]  # (row, column) of items each customer already has
    counts: np.ndarray  # items in each customer's training history
    n_items: int
    codes: np.ndarray  # the customers' codes in the window's training part
    signals: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Selection:
    params: dict[str, Any]  # the winner, as overrides of DEFAULT_PARAMS
    tuned_als: dict[str, Any]  # the best ALS grid point, alone
    report: dict[str, Any]


def _blend_params(weights: dict[str, float], cold: tuple[float, float]) -> dict[str, Any]:
    params = {f"w_{name}": float(weights.get(name, 0.0)) for name in SIGNALS}
    params.update({"cold_w_content": cold[0], "cold_w_pop": cold[1], "cold_w_items": 0.0})
    return params


class _Search:
    def __init__(self, windows: list[_Window], k: int, p: dict[str, Any]) -> None:
        self.windows = windows
        self.k = k
        self.p = p

    def score(self, weights: dict[str, float], cold: tuple[float, float] | None) -> dict[str, Any]:
        """Mean metrics over the windows of a blend (``cold`` None: everyone gets ``weights``)."""
        import torch

        per_window = []
        for window in self.windows:
            cold_rows = (
                window.counts <= self.p["cold_max_items"] if cold is not None else np.zeros(len(window.counts), bool)
            )
            total = torch.zeros((len(window.counts), window.n_items))
            for name, values in window.signals.items():
                warm = float(weights.get(name, 0.0))
                row = np.full(len(window.counts), warm, np.float32)
                if name == "content":
                    p = self.p
                    row *= 1 + p["cold_boost"] * p["cold_items"] / (p["cold_items"] + window.counts)
                if cold is not None:
                    row[cold_rows] = {"content": cold[0], "pop": cold[1]}.get(name, 0.0)
                if not row.any():
                    continue
                total.addcmul_(torch.from_numpy(values), torch.from_numpy(row).unsqueeze(1))
            rows, cols = window.exclude
            total[torch.from_numpy(rows), torch.from_numpy(cols)] = -np.inf
            scores, top = torch.topk(total, min(self.k, window.n_items), dim=1)
            top = torch.where(torch.isfinite(scores), top, torch.full_like(top, -1)).numpy()
            coverage = len(np.setdiff1d(np.unique(top), [-1])) / max(window.n_items, 1)
            per_window.append(_metrics(top, window.relevant, self.k, coverage))
        mean = {key: round(float(np.mean([m[key] for m in per_window])), 6) for key in per_window[0]}
        mean["ndcg_by_window"] = [m["ndcg"] for m in per_window]
        return mean


def _windows(
    data: Interactions,
    window_days: float,
    folds: int,
    new_items_only: bool,
    item_embeddings: dict[str, np.ndarray] | None,
    seed: int,
) -> list[tuple[Interactions, _Window]]:
    """(training part, validation window) for each fold, most recent first; folds without customers to
    score are left out."""
    out = []
    rest = data
    rng = np.random.default_rng(seed)
    for _ in range(folds):
        if len(rest) == 0:
            break
        before, after, origin = split_by_time(rest, window_days)
        if len(before) == 0:
            break
        rest = before
        if len(before) > MAX_SELECTION_EVENTS:
            sampled = rng.random(before.n_users) < MAX_SELECTION_EVENTS / len(before)
            before = before.select(sampled[before.user])
        # a model of nothing but the histories, to map ids and find each customer's relevant items
        probe = train(before, item_embeddings=item_embeddings, signals=(), **_ALONE)
        codes, relevant = relevant_sets(probe, after, new_items_only=new_items_only)
        if not len(codes):
            continue
        limit = max(MIN_VALIDATION_USERS, MAX_CELLS // max(probe.n_items, 1))
        if len(codes) > limit:
            keep = np.sort(rng.choice(len(codes), limit, replace=False))
            codes, relevant = codes[keep], [relevant[n] for n in keep.tolist()]
        seen = probe.seen[codes].tocoo() if new_items_only else probe.seen[codes][:0].tocoo()
        window = _Window(
            start=origin,
            end=int(after.ts.max()),
            customers=len(codes),
            relevant=relevant,
            exclude=(seen.row.astype(np.int64), seen.col.astype(np.int64)),
            counts=np.diff(probe.seen[codes].indptr).astype(np.float32),
            n_items=probe.n_items,
            codes=codes,
        )
        out.append((before, window))
    return out


def full_size_cost_s(signal: str, n_users: int, n_items: int, params: dict[str, Any]) -> float:
    """Estimated seconds to fit ``signal`` on ``n_users`` x ``n_items`` and score every customer with it,
    for the signals whose cost does not grow with the events alone (0 for the others).

    EASE covers m = min(items, ``ease_max_items``) items: its inverse costs ~m³/3 multiply-adds (O(m³),
    8x per doubling of m), scoring n customers n·m² (dense n x m times m x m), which dominates once there
    are more customers than items: 50k customers x 6,000 items is ~1.8e12, about 35 s on 2 CPU cores."""
    if signal != "ease":
        return 0.0
    m = float(min(n_items, int(params["ease_max_items"])))
    return (m**3 / 3 + n_users * m * m) / MATMUL_RATE


def select(
    data: Interactions,
    *,
    window_days: float,
    k: int = 10,
    new_items_only: bool = True,
    item_embeddings: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    budget_s: float = 30.0,
    folds: int = FOLDS,
    base_params: dict[str, Any] | None = None,
) -> Selection:
    """Choose the candidate with the best mean NDCG@``k`` on ``folds`` windows of ``window_days`` at the
    end of ``data``; see the module docstring. Without a window to score, the defaults are kept."""
    clock = time.monotonic()
    base = {**DEFAULT_PARAMS, **(base_params or {})}
    parts = _windows(data, window_days, folds, new_items_only, item_embeddings, seed)
    report: dict[str, Any] = {"metric": f"ndcg@{k}", "budget_s": budget_s, "windows": _describe_windows(parts)}
    if not parts:
        why = (
            "Model selection is off: the default blend is used."
            if folds <= 0
            else "Too little history before the evaluation window to compare models on earlier windows: "
            "the default blend is used."
        )
        report.update(chosen="default blend", chosen_params={}, why=why, candidates=[], skipped=[])
        report["elapsed_s"] = round(time.monotonic() - clock, 3)
        return Selection(params={}, tuned_als={}, report=report)

    fit_all = {**base, **{f"w_{name}": 1.0 for name in SIGNALS}}
    candidates: list[dict[str, Any]] = []
    available: list[str] = []
    skipped: list[str] = []

    def fit(before: Interactions, window: _Window, signals: tuple[str, ...], extra: dict[str, Any]) -> dict[str, Any]:
        model = train(before, item_embeddings=item_embeddings, seed=seed, signals=signals, **{**fit_all, **extra})
        return model.signal_scores(window.codes)

    # A signal the job could not afford at full size (train the winner, score every customer) is left out.
    first: list[str] = []
    for name in SIGNALS:
        cost = full_size_cost_s(name, data.n_users, data.n_items, base)
        if cost > max(budget_s, AFFORDABLE_S):
            skipped.append(f"{name} (about {cost:.0f} s to train and score at full size)")
        else:
            first.append(name)
    # every signal at its first grid point, in one training per window; later windows only while the
    # fitting share of the budget lasts (the most recent one is always fitted)
    for index, (before, window) in enumerate(parts):
        if index and time.monotonic() - clock > FIT_SHARE * budget_s:
            skipped.append(f"{len(parts) - index} earlier window(s)")
            parts = parts[:index]
            break
        window.signals = fit(before, window, tuple(first), {})
    report["windows"] = _describe_windows(parts)
    windows = [w for _, w in parts]
    search = _Search(windows, k, base)
    available = [name for name in SIGNALS if all(name in w.signals for w in windows)]
    default_weights = {name: float(base[f"w_{name}"]) for name in SIGNALS}
    default_cold = (float(base["cold_w_content"]), float(base["cold_w_pop"]))
    best_point: dict[str, dict[str, Any]] = {}
    best_single: dict[str, dict[str, Any]] = {}
    for name in available:
        best_point[name] = {}
        best_single[name] = search.score({name: 1.0}, default_cold)
        candidates.append({"name": name, "params": {}, **best_single[name]})
    default_score = search.score(default_weights, default_cold)
    candidates.append({"name": "default blend", "params": {}, **default_score})

    # further grid points, one signal at a time, while the fitting share of the budget lasts
    # breadth first, in GRID order: the cheap signals that win most often (popularity, ALS) first
    ordered = [name for name in GRID if name in available]
    depth_max = max((len(GRID[name]) for name in ordered), default=0)
    queue = [(name, GRID[name][depth]) for depth in range(1, depth_max) for name in ordered if depth < len(GRID[name])]
    last_cost: dict[str, float] = {}  # seconds the signal's previous grid point took to fit on every window
    for name, point in queue:
        label = f"{name} {_describe(point)}"
        if time.monotonic() - clock + last_cost.get(name, 0.0) > FIT_SHARE * budget_s:
            skipped.append(label)
            continue
        started = time.monotonic()
        fitted = [fit(before, window, (name,), point) for before, window in parts]
        last_cost[name] = time.monotonic() - started
        previous = [w.signals[name] for w in windows]
        for window, scores in zip(windows, fitted, strict=True):
            window.signals[name] = scores[name]
        result = search.score({name: 1.0}, default_cold)
        candidates.append({"name": name, "params": point, **result})
        if result["ndcg"] > best_single[name]["ndcg"]:
            best_single[name], best_point[name] = result, point
        else:
            for window, scores in zip(windows, previous, strict=True):
                window.signals[name] = scores

    # the learned blend: coordinate ascent from the best so far
    best_name = max(available, key=lambda n: best_single[n]["ndcg"])
    if default_score["ndcg"] >= best_single[best_name]["ndcg"]:
        weights, cold, score = dict(default_weights), default_cold, default_score
    else:
        weights, cold = {best_name: 1.0}, default_cold
        score = search.score(weights, cold)
    for _ in range(2):
        improved = False
        for name in available:
            for step in BLEND_STEPS:
                if time.monotonic() - clock > budget_s or step == weights.get(name, 0.0):
                    continue
                trial = search.score({**weights, name: step}, cold)
                if trial["ndcg"] > score["ndcg"] + 1e-6:
                    weights, score, improved = {**weights, name: step}, trial, True
        if not improved or time.monotonic() - clock > budget_s:
            break
    for option in COLD_GRID:
        if time.monotonic() - clock > budget_s:
            break
        trial = search.score(weights, option)
        if trial["ndcg"] > score["ndcg"] + 1e-6:
            cold, score = option, trial
    point_params = {key: value for name in available if weights.get(name) for key, value in best_point[name].items()}
    learned = {**point_params, **_blend_params(weights, cold)}
    candidates.append({"name": "learned blend", "params": learned, **score})

    # the winner: highest mean validation NDCG (ties: the simpler candidate, listed first)
    ranked = sorted(enumerate(candidates), key=lambda pair: (-pair[1]["ndcg"], pair[0]))
    winner = ranked[0][1]
    runner_up = next((c for _, c in ranked[1:] if c["name"] != winner["name"]), None)
    if winner["name"] == "default blend":
        params: dict[str, Any] = {}
    elif winner["name"] == "learned blend":
        params = learned
    else:
        params = {**_ZERO, f"w_{winner['name']}": 1.0, **winner["params"]}
    tuned_als = {**_ALONE, "w_als": 1.0, **best_point.get("als", {})}
    why = (
        f"{_label(winner)} had the highest mean NDCG@{k} over {len(windows)} earlier window(s) of "
        f"{window_days:g} days: {winner['ndcg']:.4f}"
        + (f", against {runner_up['ndcg']:.4f} for {_label(runner_up)}, the next best." if runner_up else ".")
    )
    report.update(
        chosen=_label(winner),
        chosen_params=params,
        why=why,
        candidates=[{"name": _label(c), **{key: c[key] for key in c if key != "name"}} for _, c in ranked],
        skipped=skipped,
        tuned_als=tuned_als,
        elapsed_s=round(time.monotonic() - clock, 3),
    )
    return Selection(params=params, tuned_als=tuned_als, report=report)


def _describe_windows(parts: list[tuple[Interactions, _Window]]) -> list[dict[str, Any]]:
    return [
        {
            "start": datetime.fromtimestamp(w.start, UTC).isoformat(),
            "end": datetime.fromtimestamp(w.end, UTC).isoformat(),
            "customers": w.customers,
        }
        for _, w in parts
    ]


def _describe(point: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in point.items()
    )


def _label(candidate: dict[str, Any]) -> str:
    name = candidate["name"]
    if name in SIGNALS and candidate["params"]:
        return f"{name} ({_describe(candidate['params'])})"
    return str(name)


def choose_and_evaluate(
    interactions: Interactions,
    *,
    holdout_days: float = 28,
    k: int = 10,
    new_items_only: bool = True,
    item_embeddings: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    budget_s: float = 30.0,
    folds: int = FOLDS,
    als_reference: dict[str, Any] | None = None,
    base_params: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(chosen parameters, metrics): selection on the events before the last ``holdout_days`` (rolling
    origin, never the reported window), the winner trained on them and scored on the window against
    popularity, plain ALS and tuned ALS (``als_reference``: other ALS parameters to use as the tuned one),
    and the cold start on its own. When there is no window to report, selection runs on all events and
    the metrics say why there is no evaluation. ``base_params`` override the defaults everywhere (the
    benchmark's ``--param``)."""
    base = dict(base_params or {})

    def choose(data: Interactions) -> Selection:
        return select(
            data, window_days=holdout_days, k=k, new_items_only=new_items_only, item_embeddings=item_embeddings,
            seed=seed, budget_s=budget_s, folds=folds, base_params=base,
        )

    try:
        before, after, cutoff = split_by_time(interactions, holdout_days)
        if len(before) == 0:
            raise ValueError(f"no interactions before the last {holdout_days:g} days")
    except ValueError as exc:
        selection = choose(interactions)
        return selection.params, {"skipped": f"No evaluation: {exc}.", "selection": selection.report}
    selection = choose(before)
    clock = time.monotonic()
    model = train(before, item_embeddings=item_embeddings, seed=seed, **{**base, **selection.params})
    top = model.top_codes(np.arange(model.n_users), k, exclude_seen=new_items_only)
    metrics = evaluate_model(model, after, k=k, new_items_only=new_items_only, all_user_top=top)
    metrics["train_events"] = len(before)
    metrics["holdout_start"] = datetime.fromtimestamp(cutoff, UTC).isoformat()
    plain = {**_ALONE, "w_als": 1.0}
    tuned = als_reference or selection.tuned_als or plain
    for key, als_params in (("als", plain), ("als_tuned", tuned)):
        if key == "als_tuned" and als_params == plain:
            metrics[key] = metrics["als"]
            continue
        als = train(before, seed=seed, signals=("als",), **{**base, **als_params})
        metrics[key] = evaluate_model(als, after, k=k, new_items_only=new_items_only, with_popularity=False)["model"]
    metrics["als_tuned_params"] = {key: value for key, value in tuned.items() if key not in _ALONE}
    metrics["cold_start"] = cold_start(model, after, k=k, new_items_only=new_items_only, all_user_top=top)
    metrics["selection"] = selection.report
    metrics["evaluate_s"] = round(time.monotonic() - clock, 3)
    return selection.params, metrics
