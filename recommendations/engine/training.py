"""Fitting the blended recommender: parameters, per-(customer, item) ratings, item-item co-occurrence,
implicit ALS and BPR, EASE, the sequential signal and projected content embeddings, gathered into a ``Model``.

``implicit`` (and its GPU build) and ``threadpoolctl`` are imported inside the functions that use them:
heavy optional dependencies, loaded only when a model is fitted."""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommendations.engine.interactions import Interactions, _decay, _rating
from recommendations.engine.model import SIGNALS, Model
from recommendations.engine.signals import fit_bpr, fit_ease, fit_transitions, recent_items

#: Defaults chosen on earlier splits of the Online Retail sample (the three 4-week
#: windows before the final 4 weeks, never the final one) and checked on synthetic
#: data (``python -m bench.recommend --synthetic``). One unit of weight per
#: purchase line worked better there than the quantity.
DEFAULT_PARAMS: dict[str, Any] = {
    # signal weights
    "w_als": 1.0,
    "w_items": 0.3,
    "w_pop": 0.5,
    "w_content": 0.5,
    "w_ease": 0.0,
    "w_seq": 0.0,
    "w_bpr": 0.0,
    # customers with at most cold_max_items items are scored with the cold_w_* weights instead
    # (content and popularity; the selection may add co-occurrence when it helps them)
    "cold_max_items": 1,
    "cold_w_content": 1.0,
    "cold_w_pop": 0.5,
    "cold_w_items": 0.0,
    # content vectors are projected on their top principal directions (0: keep all), for speed
    "content_dims": 64,
    # content weight multiplier for a customer with n items: 1 + cold_boost * cold_items / (cold_items + n)
    "cold_boost": 2.0,
    "cold_items": 5.0,
    # how the summed weight of a (customer, item) pair becomes a rating: "log1p", "binary" or "linear"
    "weighting": "log1p",
    # ALS
    "factors": 32,
    "regularization": 1.0,
    "alpha": 10.0,
    "iterations": 15,
    # item-item
    "neighbours": 100,
    "user_weight_power": 0.5,
    # EASE: L2 weight, and the most-bought items it covers (O(items³) time, O(items²) memory; see signals.fit_ease)
    "ease_lambda": 250.0,
    "ease_max_items": 6000,
    # sequential: items of the next seq_window baskets follow an item; a customer's earlier items count
    # half every seq_half_life_days before their latest one
    "seq_window": 2,
    "seq_half_life_days": 30.0,
    "seq_neighbours": 100,
    # BPR (implicit)
    "bpr_factors": 64,
    "bpr_learning_rate": 0.05,
    "bpr_regularization": 0.01,
    "bpr_iterations": 50,
    # recency, in days (0: no decay)
    "half_life_days": 90.0,
    "pop_half_life_days": 14.0,
    # execution
    "batch_size": 0,  # customers scored at once; 0: as many as keep each score buffer near 64 MB
    "device": "auto",  # "auto", "cpu" or "cuda"
    "num_threads": 0,  # 0: all cores
}


def _resolve_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise TypeError(f"unknown recommendation parameters: {', '.join(sorted(unknown))}")
    return {**DEFAULT_PARAMS, **params}


def _row_normalize(matrix: sp.csr_matrix, power: float = 1.0) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.zeros_like(norms)
    np.divide(1.0, norms**power, out=scale, where=norms > 0)
    return sp.diags(scale.astype(np.float32)) @ matrix


def _item_similarity(binary: sp.csr_matrix, neighbours: int, user_weight_power: float, threads: int) -> sp.csr_matrix:
    """Item x item cosine on customer-weighted columns, top ``neighbours`` per item, diagonal removed."""
    from implicit.nearest_neighbours import all_pairs_knn

    n_items = binary.shape[1]
    if binary.nnz == 0 or n_items < 2:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    lengths = np.diff(binary.indptr).astype(np.float32)
    user_scale = 1.0 / np.power(np.maximum(lengths, 1.0), user_weight_power * 0.5)
    weighted = sp.diags(user_scale) @ binary
    # cosine: unit-norm item columns
    weighted = _row_normalize(weighted.T.tocsr()).T.tocsr()
    similarity = all_pairs_knn(weighted.astype(np.float64), K=neighbours + 1, show_progress=False, num_threads=threads)
    similarity = similarity.tocsr().astype(np.float32)
    similarity.setdiag(0)
    similarity.eliminate_zeros()
    return similarity


def train(
    interactions: Interactions,
    *,
    item_embeddings: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    signals: Collection[str] | None = None,
    **params: Any,
) -> Model:
    """Fit the blended recommender on ``interactions`` (rows with weight <= 0 are ignored).

    ``signals``: fit only these (model selection fits one signal per grid point); by default every signal
    with a weight, and co-occurrence always, which similar items use whatever the blend.
    """
    p = _resolve_params(params)
    wanted = _wanted_signals(p, signals)
    threads = int(p["num_threads"]) or (os.cpu_count() or 1)
    keep = interactions.weight > 0
    users, items = interactions.user[keep].astype(np.int64), interactions.item[keep].astype(np.int64)
    weights, stamps = interactions.weight[keep], interactions.ts[keep]

    model = Model()
    model.params = p
    model.signals = wanted
    model.user_ids = list(interactions.user_ids)
    n_users, n_train_items = interactions.n_users, interactions.n_items
    item_ids = list(interactions.item_ids)
    extra = []
    if item_embeddings:
        known = set(item_ids)
        extra = [str(i) for i in item_embeddings if str(i) not in known]
    model.item_ids = item_ids + extra
    model.n_train_items = n_train_items
    model._user_index = {u: i for i, u in enumerate(model.user_ids)}
    model._item_index = {it: i for i, it in enumerate(model.item_ids)}
    n_items = model.n_items
    end = int(stamps.max()) if len(stamps) else 0
    model.trained_until = end

    # one entry per (user, item): summed weight, last timestamp
    key = users * max(n_train_items, 1) + items
    order = np.lexsort((stamps, key))
    key_sorted = key[order]
    if len(key_sorted):
        starts = np.flatnonzero(np.concatenate(([True], key_sorted[1:] != key_sorted[:-1])))
        ends = np.concatenate((starts[1:], [len(key_sorted)])) - 1
        total = np.add.reduceat(weights[order].astype(np.float64), starts)
        last = stamps[order][ends]
        pair_user = (key_sorted[starts] // max(n_train_items, 1)).astype(np.int64)
        pair_item = (key_sorted[starts] % max(n_train_items, 1)).astype(np.int64)
    else:
        total = last = pair_user = pair_item = np.zeros(0, np.int64)
    rating = _rating(np.asarray(total, np.float64), p["weighting"])
    recency = _decay(end - np.asarray(last), p["half_life_days"])

    def matrix(values: np.ndarray, columns: int) -> sp.csr_matrix:
        return sp.csr_matrix(
            (np.asarray(values, np.float32), (pair_user, pair_item)), shape=(n_users, columns), dtype=np.float32
        )

    model.history = matrix(rating * recency, n_items)
    model.seen = matrix(np.ones(len(pair_user), np.float32), n_items)
    model.user_counts = np.bincount(pair_item, minlength=n_items).astype(np.float32)
    popularity = np.bincount(
        pair_item, weights=_decay(end - np.asarray(last), p["pop_half_life_days"]), minlength=n_items
    )
    model.popularity = (popularity / max(popularity.max(initial=0), 1e-12)).astype(np.float32)

    binary = matrix(np.ones(len(pair_user), np.float32), n_train_items)
    if "items" in wanted:
        similarity = _item_similarity(binary, int(p["neighbours"]), float(p["user_weight_power"]), threads)
        model.similarity = _pad_square(similarity, n_items)
    else:
        model.similarity = sp.csr_matrix((n_items, n_items), dtype=np.float32)

    fits = len(pair_user) and n_train_items > 1
    if "als" in wanted and fits:
        model._als = _fit_als(matrix(rating, n_train_items), p, seed, threads)
        user_factors, item_factors = _als_factors(model._als)
        model.user_factors = user_factors
        model.item_factors = _pad_rows(item_factors, n_items)
    if "bpr" in wanted and fits:
        user_factors, item_factors = fit_bpr(binary, p, seed, threads)
        model.bpr_user_factors = user_factors
        model.bpr_item_factors = _pad_rows(item_factors, n_items)
    if "ease" in wanted and fits:
        model.ease_codes, model.ease = fit_ease(binary, float(p["ease_lambda"]), int(p["ease_max_items"]))
    if "seq" in wanted and fits:
        transitions = fit_transitions(
            users[weights > 0],
            items[weights > 0],
            stamps[weights > 0],
            n_train_items,
            window=int(p["seq_window"]),
            neighbours=int(p["seq_neighbours"]),
        )
        model.transitions = _pad_square(transitions, n_items)
        model.recent = recent_items(pair_user, pair_item, np.asarray(last), (n_users, n_items), p["seq_half_life_days"])

    if item_embeddings and "content" in wanted:
        dim = len(next(iter(item_embeddings.values())))
        embeddings = np.zeros((n_items, dim), np.float32)
        for item_id, vector in item_embeddings.items():
            code = model._item_index.get(str(item_id))
            if code is not None:
                embeddings[code] = np.asarray(vector, np.float32)
        model.embeddings = _unit_rows(_project(_unit_rows(embeddings), int(p["content_dims"])))
    return model


def _wanted_signals(p: dict[str, Any], signals: Collection[str] | None) -> frozenset[str]:
    if signals is not None:
        unknown = set(signals) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown signals: {', '.join(sorted(unknown))}")
        return frozenset(signals)
    weighted = {s for s in SIGNALS if p.get(f"w_{s}") or p.get(f"cold_w_{s}")}
    return frozenset(weighted | {"items", "pop"})


def _pad_square(matrix: sp.csr_matrix, size: int) -> sp.csr_matrix:
    """A train-items square matrix grown to the catalog (items known only by embedding have no entries)."""
    extra = size - matrix.shape[0]
    if not extra:
        return matrix
    return sp.csr_matrix(
        (matrix.data, matrix.indices, np.concatenate((matrix.indptr, np.full(extra, matrix.nnz)))),
        shape=(size, size),
    )


def _pad_rows(factors: np.ndarray, size: int) -> np.ndarray:
    return np.vstack([factors, np.zeros((size - len(factors), factors.shape[1]), np.float32)])


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0).astype(np.float32)


def _project(vectors: np.ndarray, dims: int) -> np.ndarray:
    """``vectors`` on their ``dims`` main (uncentred) principal directions; dot products are kept approximately."""
    if dims <= 0 or dims >= vectors.shape[1]:
        return vectors
    from threadpoolctl import threadpool_limits

    gram = (vectors.T @ vectors).astype(np.float64)
    # One BLAS thread: a 384 x 384 eigh took 24 ms alone and 0.7-2 s with OpenBLAS's 2 threads on 2 busy cores.
    with threadpool_limits(1, "blas"):
        _, eigenvectors = np.linalg.eigh(gram)  # ascending eigenvalues
    basis = eigenvectors[:, ::-1][:, :dims]
    # a deterministic sign for each direction
    basis *= np.where(basis[np.abs(basis).argmax(axis=0), np.arange(dims)] < 0, -1.0, 1.0)
    return (vectors @ basis.astype(np.float32)).astype(np.float32)


def _fit_als(ratings: sp.csr_matrix, p: dict[str, Any], seed: int, threads: int) -> Any:
    from threadpoolctl import threadpool_limits

    kwargs = {
        "factors": int(p["factors"]),
        "regularization": float(p["regularization"]),
        "alpha": float(p["alpha"]),
        "iterations": int(p["iterations"]),
        "random_state": seed,
    }
    use_gpu = p["device"] in ("auto", "cuda") and _implicit_has_cuda()
    # implicit parallelises itself; nested BLAS threads only slow it down (and it warns about them)
    with threadpool_limits(1, "blas"):
        if use_gpu:  # pragma: no cover - needs implicit built with CUDA
            from implicit.gpu.als import AlternatingLeastSquares as GpuALS

            model = GpuALS(**kwargs)
        else:
            from implicit.cpu.als import AlternatingLeastSquares

            model = AlternatingLeastSquares(**kwargs, num_threads=threads)
        model.fit(ratings, show_progress=False)
    if use_gpu:  # pragma: no cover - factors (and recalculate_user) on the CPU from here on
        model = model.to_cpu()
    return model


def _implicit_has_cuda() -> bool:
    try:
        import implicit.gpu

        return bool(implicit.gpu.HAS_CUDA)
    except Exception:  # pragma: no cover - depends on the build
        return False


def _als_factors(als: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(als.user_factors, np.float32), np.asarray(als.item_factors, np.float32)
