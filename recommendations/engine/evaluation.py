"""Offline evaluation: precision, recall, NDCG and coverage at K of a model against the popularity
baseline, on the events after its training data (a time split)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from recommendations.engine.interactions import Interactions, split_by_time
from recommendations.engine.model import Model
from recommendations.engine.training import train


def _metrics(top: np.ndarray, relevant: list[set[int]], k: int, coverage: float) -> dict[str, float]:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision = recall = ndcg = 0.0
    for row, rel in zip(top, relevant, strict=True):
        hits = np.array([code in rel for code in row[:k].tolist()], dtype=float)
        if len(hits) < k:
            hits = np.concatenate((hits, np.zeros(k - len(hits))))
        precision += hits.sum() / k
        recall += hits.sum() / len(rel)
        ideal = discounts[: min(len(rel), k)].sum()
        ndcg += float(hits @ discounts) / ideal
    n = max(len(relevant), 1)
    return {
        "precision": round(float(precision) / n, 6),
        "recall": round(float(recall) / n, 6),
        "ndcg": round(float(ndcg) / n, 6),
        "coverage": round(float(coverage), 6),
    }


def relevant_sets(
    model: Model, test: Interactions, *, new_items_only: bool = True
) -> tuple[np.ndarray, list[set[int]]]:
    """(training user codes, their relevant catalog codes): the test customers the model knows, with what
    they did in ``test`` (only items new to them with ``new_items_only``). Test items unknown to the model
    get distinct codes below -1 (-1 marks an empty slot in a top k): relevant, never recommendable."""
    test_user_codes = np.array([model.user_code(u) if model.user_code(u) is not None else -1 for u in test.user_ids])
    test_item_codes = np.array(
        [model.item_code(i) if model.item_code(i) is not None else -2 - n for n, i in enumerate(test.item_ids)]
    )
    pair_users = test_user_codes[test.user] if len(test) else np.zeros(0, np.int64)
    pair_items = test_item_codes[test.item] if len(test) else np.zeros(0, np.int64)
    mask = (pair_users >= 0) & (test.weight > 0)
    relevant: dict[int, set[int]] = {}
    seen = model.seen.tocsr()
    for user, item in zip(pair_users[mask].tolist(), pair_items[mask].tolist(), strict=True):
        relevant.setdefault(user, set()).add(item)
    users = []
    rel_sets = []
    for user in sorted(relevant):
        rel = relevant[user]
        if new_items_only:
            rel = rel - set(seen.indices[seen.indptr[user] : seen.indptr[user + 1]].tolist())
        if rel:
            users.append(user)
            rel_sets.append(rel)
    return np.array(users, dtype=np.int64), rel_sets


def evaluate_model(
    model: Model,
    test: Interactions,
    *,
    k: int = 10,
    new_items_only: bool = True,
    all_user_top: np.ndarray | None = None,
    with_popularity: bool = True,
) -> dict[str, Any]:
    """Metrics of ``model`` and of the popularity baseline on ``test`` (events after the model's training data)."""
    user_array, rel_sets = relevant_sets(model, test, new_items_only=new_items_only)
    users = user_array.tolist()
    seen = model.seen.tocsr()

    catalog = max(model.n_items, 1)
    if all_user_top is None:
        all_user_top = model.top_codes(np.arange(model.n_users), k, exclude_seen=new_items_only)
    model_coverage = len(np.setdiff1d(np.unique(all_user_top), [-1])) / catalog
    model_top = all_user_top[user_array] if users else np.zeros((0, k), np.int64)
    result: dict[str, Any] = {"model": _metrics(model_top, rel_sets, k, model_coverage)}
    if with_popularity:
        # popularity baseline: the same top k for everyone, minus what each customer already has
        pop_all: set[int] = set()
        pop_top = np.full((len(users), k), -1, dtype=np.int64)
        evaluated = {user: n for n, user in enumerate(users)}
        for user in range(model.n_users):
            excluded = seen.indices[seen.indptr[user] : seen.indptr[user + 1]].tolist() if new_items_only else ()
            codes = model.popular_codes(k, excluded)
            pop_all.update(codes)
            if user in evaluated:
                pop_top[evaluated[user], : len(codes)] = codes
        result["popularity"] = _metrics(pop_top, rel_sets, k, len(pop_all) / catalog)
    result.update({"train_events": int(model.seen.nnz), "test_users": len(users), "k": k})
    return result


def cold_start(
    model: Model,
    test: Interactions,
    *,
    k: int = 10,
    new_items_only: bool = True,
    all_user_top: np.ndarray | None = None,
) -> dict[str, Any]:
    """The cold start, measured on its own: customers with at most ``cold_max_items`` items before the test
    (none at all included), model vs popularity; and items nobody had bought before the test: their share
    of what customers did, and how much of it the model's top k found (popularity never can)."""
    limit = int(model.params["cold_max_items"])
    seen = model.seen.tocsr()
    counts = np.diff(seen.indptr)
    if all_user_top is None:
        all_user_top = model.top_codes(np.arange(model.n_users), k, exclude_seen=new_items_only)
    known_users, known_sets = relevant_sets(model, test, new_items_only=new_items_only)

    tops, pop_tops, rel_sets = [], [], []
    for user, rel in zip(known_users.tolist(), known_sets, strict=True):
        if counts[user] <= limit:
            tops.append(all_user_top[user])
            excluded = seen.indices[seen.indptr[user] : seen.indptr[user + 1]].tolist() if new_items_only else ()
            pop_tops.append(_padded(model.popular_codes(k, excluded), k))
            rel_sets.append(rel)
    # customers the model never saw: what a profile with no items gets
    unknown = [n for n, u in enumerate(test.user_ids) if model.user_code(u) is None]
    if unknown:
        profile_top = _padded([model.item_code(r.item_id) for r in model.recommend_for_profile([], k)], k)
        popular = _padded(model.popular_codes(k), k)
        item_codes = [model.item_code(i) for i in test.item_ids]
        is_unknown = np.isin(test.user, unknown) & (test.weight > 0)
        by_user: dict[int, set[int]] = {}
        for u, i in zip(test.user[is_unknown].tolist(), test.item[is_unknown].tolist(), strict=True):
            code = item_codes[i]
            by_user.setdefault(u, set()).add(code if code is not None else -2 - i)
        for rel in by_user.values():
            tops.append(profile_top)
            pop_tops.append(popular)
            rel_sets.append(rel)
    customers: dict[str, Any] = {"customers": len(rel_sets), "max_items": limit}
    if rel_sets:
        customers["model"] = _metrics(np.array(tops), rel_sets, k, 0.0)
        customers["popularity"] = _metrics(np.array(pop_tops), rel_sets, k, 0.0)
        for metrics in (customers["model"], customers["popularity"]):
            metrics.pop("coverage")

    # items nobody bought before the test, among what the known customers did
    new_pairs = hits = total = 0
    for user, rel in zip(known_users.tolist(), known_sets, strict=True):
        fresh = {code for code in rel if code < 0 or code >= model.n_train_items}
        total += len(rel)
        new_pairs += len(fresh)
        hits += len(fresh & set(all_user_top[user].tolist()))
    items = {
        "share_of_test": round(new_pairs / total, 6) if total else 0.0,
        "test_pairs": new_pairs,
        "recall_model": round(hits / new_pairs, 6) if new_pairs else 0.0,
        "in_catalog": int(max(model.n_items - model.n_train_items, 0)),
    }
    return {"customers": customers, "new_items": items}


def _padded(codes: list[int | None], k: int) -> np.ndarray:
    row = np.full(k, -1, dtype=np.int64)
    values = [c for c in codes if c is not None][:k]
    row[: len(values)] = values
    return row


def evaluate(
    interactions: Interactions,
    *,
    holdout_days: int = 28,
    k: int = 10,
    new_items_only: bool = True,
    item_embeddings: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    **params: Any,
) -> dict[str, Any]:
    """Train on all but the last ``holdout_days`` and score the model and the popularity baseline on them."""
    train_part, test_part, cutoff = split_by_time(interactions, holdout_days)
    if len(train_part) == 0:
        raise ValueError(f"no interactions before the last {holdout_days} days")
    model = train(train_part, item_embeddings=item_embeddings, seed=seed, **params)
    result = evaluate_model(model, test_part, k=k, new_items_only=new_items_only)
    result["train_events"] = len(train_part)
    result["holdout_start"] = datetime.fromtimestamp(cutoff, UTC).isoformat()
    return result
