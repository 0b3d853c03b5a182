"""Candidate signals beside ALS and co-occurrence: EASE, the sequential "bought after" signal and BPR.

Each function fits one signal from training arrays and returns plain numpy/scipy objects that
``Model`` scores; ``training.train`` decides which are fitted.

torch and ``implicit`` are imported inside the functions that use them: heavy optional dependencies
that importing the engine (the benchmark's ``--help``) should not pay for."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recommendations.engine.interactions import DAY

#: Pairs of (earlier, later) items built at most per training set for the sequential signal; above,
#: baskets are cut to fewer items. 20M pairs are ~0.5 GB of temporary arrays.
MAX_SEQUENCE_PAIRS = 20_000_000


def fit_ease(binary: sp.csr_matrix, lam: float, max_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(catalog codes covered, B): EASE (Steck, 2019), B = I - P / diag(P) with P = (XᵀX + λI)⁻¹, diagonal 0.

    The closed form is a few lines of numpy/torch, so no library is needed for it. It scales with the
    number m of items it covers: O(m²) memory (one m x m float32 matrix: 144 MB at 6,000 items) and
    O(m³) time for the inverse (Cholesky, torch: 1.0 s at 6,000 items on 2 CPU cores, ~8x per doubling).
    Above ``max_items`` it covers the ``max_items`` most-bought items only; the long tail beyond them is
    left to the other signals (co-occurrence, content), which are sparse and scale with the events.
    """
    import torch

    n_items = binary.shape[1]
    buyers = np.diff(binary.tocsc().indptr)
    if n_items > max_items:
        codes = np.sort(np.argsort(-buyers, kind="stable")[:max_items]).astype(np.int64)
        binary = binary[:, codes]
    else:
        codes = np.arange(n_items, dtype=np.int64)
    gram = torch.from_numpy((binary.T @ binary).toarray().astype(np.float32))
    gram.diagonal().add_(float(lam))
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(gram))
    del gram
    weights = inverse / (-inverse.diagonal()).unsqueeze(0)
    weights.diagonal().zero_()
    return codes, weights.numpy()


def fit_transitions(
    user: np.ndarray,
    item: np.ndarray,
    ts: np.ndarray,
    n_items: int,
    *,
    window: int,
    neighbours: int,
    max_basket: int = 30,
) -> sp.csr_matrix:
    """Item x item "bought after": for each customer's basket (their events at one time), every item of
    the next ``window`` baskets, the d-th next counting 1/d. Normalised like a cosine by how many baskets
    hold each item, so that what everyone buys anyway does not follow everything; top ``neighbours`` per item.
    """
    if not len(user) or n_items < 2:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    # one row per (customer, time, item), ordered by customer then time
    order = np.lexsort((item, ts, user))
    u, t, i = user[order], ts[order], item[order]
    fresh = np.concatenate(([True], (u[1:] != u[:-1]) | (t[1:] != t[:-1]) | (i[1:] != i[:-1])))
    u, t, i = u[fresh], t[fresh], i[fresh]
    new_basket = np.concatenate(([True], (u[1:] != u[:-1]) | (t[1:] != t[:-1])))
    starts = np.flatnonzero(new_basket)
    sizes = np.diff(np.append(starts, len(u)))
    basket_user = u[starts]
    baskets_per_item = np.bincount(i, minlength=n_items).astype(np.float32)

    pairs_estimate = sum(
        float(np.minimum(sizes[:-d], max_basket) @ np.minimum(sizes[d:], max_basket)) for d in range(1, window + 1)
    )
    if pairs_estimate > MAX_SEQUENCE_PAIRS:
        max_basket = max(1, int(max_basket * np.sqrt(MAX_SEQUENCE_PAIRS / pairs_estimate)))

    rows, cols, vals = [], [], []
    for d in range(1, window + 1):
        first = np.arange(len(starts) - d)
        first = first[basket_user[first] == basket_user[first + d]]
        then = first + d
        size_a = np.minimum(sizes[first], max_basket)
        size_b = np.minimum(sizes[then], max_basket)
        count = size_a * size_b
        if not count.sum():
            continue
        pair = np.repeat(np.arange(len(first)), count)
        offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        rows.append(i[starts[first][pair] + offset // size_b[pair]])
        cols.append(i[starts[then][pair] + offset % size_b[pair]])
        # a big basket says less about each of its items
        vals.append((1.0 / d / np.sqrt(size_a * size_b))[pair].astype(np.float32))
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items), dtype=np.float32
    )
    matrix.setdiag(0)  # buying the same item again is not "what comes next"
    matrix.eliminate_zeros()
    norm = 1.0 / np.sqrt(np.maximum(baskets_per_item, 1.0))
    matrix = (sp.diags(norm) @ matrix @ sp.diags(norm)).tocsr().astype(np.float32)
    return top_per_row(matrix, neighbours)


def top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """The ``k`` largest entries of each row."""
    lengths = np.diff(matrix.indptr)
    if k <= 0 or lengths.max(initial=0) <= k:
        return matrix
    row = np.repeat(np.arange(matrix.shape[0]), lengths)
    order = np.lexsort((-matrix.data, row))
    rank = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], lengths)
    keep = order[rank < k]
    return sp.csr_matrix((matrix.data[keep], (row[keep], matrix.indices[keep])), shape=matrix.shape, dtype=np.float32)


def recent_items(
    pair_user: np.ndarray, pair_item: np.ndarray, last: np.ndarray, shape: tuple[int, int], half_life_days: float
) -> sp.csr_matrix:
    """Users x catalog: each item a customer has, weighted by how long before their latest event they last
    had it (half-life in days), so that the sequential signal follows their most recent baskets."""
    if not len(pair_user):
        return sp.csr_matrix(shape, dtype=np.float32)
    latest = np.zeros(shape[0], np.int64)
    np.maximum.at(latest, pair_user, last)
    age = (latest[pair_user] - last).astype(np.float64)
    weight = np.exp2(-age / (max(half_life_days, 1e-6) * DAY)).astype(np.float32)
    keep = weight >= 1e-3
    return sp.csr_matrix((weight[keep], (pair_user[keep], pair_item[keep])), shape=shape, dtype=np.float32)


def fit_bpr(binary: sp.csr_matrix, p: dict[str, Any], seed: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors) of ``implicit``'s Bayesian personalised ranking (the item bias is the
    last factor, so a dot product scores)."""
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    model = BayesianPersonalizedRanking(
        factors=int(p["bpr_factors"]),
        learning_rate=float(p["bpr_learning_rate"]),
        regularization=float(p["bpr_regularization"]),
        iterations=int(p["bpr_iterations"]),
        num_threads=threads,
        random_state=seed,
    )
    with threadpool_limits(1, "blas"):
        model.fit(binary, show_progress=False)
    return np.asarray(model.user_factors, np.float32), np.asarray(model.item_factors, np.float32)
