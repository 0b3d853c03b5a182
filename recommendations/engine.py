"""Recommendation engine: implicit feedback blended with co-occurrence, recent popularity and content.

Framework-free (numpy, scipy, implicit, torch; no Django) so that the Celery
recommendation task and ``python -m bench.recommend`` run the same code.

A customer's score for an item is a weighted sum (``w_*``) of four signals, each
divided by its largest value for that customer, so that each signal's best item
scores its weight:

- ``als``: implicit-feedback matrix factorisation (``implicit``'s alternating
  least squares, on the GPU when ``implicit`` was built with CUDA);
- ``items``: item-item co-occurrence ("bought together"): cosine similarity of
  item columns, each customer's row weighted down by how many items they have,
  keeping the ``neighbours`` most similar items of each item; a customer's score
  is the sum over their history, recent interactions counting more
  (``half_life_days``);
- ``pop``: popularity with a recency decay (``pop_half_life_days``), distinct
  customers per item, so that what sells now outranks what sold last year;
- ``content``: cosine similarity between the item's embedding and the mean
  embedding of the customer's history (``item_embeddings``, e.g. 384-d
  all-MiniLM-L6-v2 vectors of titles). Its weight grows for customers with little
  history, and it is the only signal for items nobody interacted with yet.

Scoring runs in batches of customers with torch (CUDA when present), so every
customer's top K over the whole catalog is exact, not approximate.

Evaluation (``evaluate``) splits by time: train on everything before
``max(ts) - holdout_days``, test on the rest, for customers in both parts.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp

DAY = 86_400

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
    # recency, in days (0: no decay)
    "half_life_days": 90.0,
    "pop_half_life_days": 14.0,
    # execution
    "batch_size": 0,  # customers scored at once; 0: as many as keep each score buffer near 64 MB
    "device": "auto",  # "auto", "cpu" or "cuda"
    "num_threads": 0,  # 0: all cores
}

REASON_ITEMS = "Bought together with {title}"
REASON_ALS = "Popular with similar customers"
REASON_CONTENT = "Similar to {title}"
REASON_POP = "Popular right now"
# An item from the customer's own history (viewed, not bought) that no other item of theirs explains.
REASON_HISTORY = "Already in their history"


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reason: str


# --------------------------------------------------------------------------- data


@dataclass
class Interactions:
    """Events as parallel arrays; ``user``/``item`` are codes into ``user_ids``/``item_ids``."""

    user_ids: list[str]
    item_ids: list[str]
    user: np.ndarray  # int32 codes
    item: np.ndarray  # int32 codes
    weight: np.ndarray  # float32
    ts: np.ndarray  # int64 unix seconds

    @classmethod
    def from_records(cls, records: Iterable[tuple[Any, Any, float, int]]) -> Interactions:
        """``records``: (user_id, item_id, weight, unix seconds). Ids are kept as strings."""
        user_index: dict[str, int] = {}
        item_index: dict[str, int] = {}
        users: list[int] = []
        items: list[int] = []
        weights: list[float] = []
        stamps: list[int] = []
        for user_id, item_id, weight, ts in records:
            users.append(user_index.setdefault(str(user_id), len(user_index)))
            items.append(item_index.setdefault(str(item_id), len(item_index)))
            weights.append(float(weight))
            stamps.append(int(ts))
        weight_array = np.asarray(weights, dtype=np.float32)
        if not np.all(np.isfinite(weight_array)):
            raise ValueError("weights must be finite numbers")
        return cls(
            user_ids=list(user_index),
            item_ids=list(item_index),
            user=np.asarray(users, dtype=np.int32),
            item=np.asarray(items, dtype=np.int32),
            weight=weight_array,
            ts=np.asarray(stamps, dtype=np.int64),
        )

    @classmethod
    def from_arrays(
        cls, users: Sequence[Any] | np.ndarray, items: Sequence[Any] | np.ndarray, weights=None, ts=None
    ) -> Interactions:
        """Vectorised constructor for large inputs: ids are any hashable array values."""
        user_keys, user_codes = np.unique(np.asarray(users), return_inverse=True)
        item_keys, item_codes = np.unique(np.asarray(items), return_inverse=True)
        n = len(user_codes)
        weight_array = np.ones(n, np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        ts_array = np.zeros(n, np.int64) if ts is None else np.asarray(ts, dtype=np.int64)
        if not np.all(np.isfinite(weight_array)):
            raise ValueError("weights must be finite numbers")
        return cls(
            user_ids=[str(u) for u in user_keys.tolist()],
            item_ids=[str(i) for i in item_keys.tolist()],
            user=user_codes.astype(np.int32).ravel(),
            item=item_codes.astype(np.int32).ravel(),
            weight=weight_array,
            ts=ts_array,
        )

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def select(self, mask: np.ndarray) -> Interactions:
        """The events where ``mask`` is true, with users and items recoded to those present."""
        users, user_codes = np.unique(self.user[mask], return_inverse=True)
        items, item_codes = np.unique(self.item[mask], return_inverse=True)
        return Interactions(
            user_ids=[self.user_ids[u] for u in users.tolist()],
            item_ids=[self.item_ids[i] for i in items.tolist()],
            user=user_codes.astype(np.int32).ravel(),
            item=item_codes.astype(np.int32).ravel(),
            weight=self.weight[mask],
            ts=self.ts[mask],
        )


def split_by_time(interactions: Interactions, holdout_days: float) -> tuple[Interactions, Interactions, int]:
    """(train, test, cutoff): train has the events before ``max(ts) - holdout_days``, test the others."""
    if len(interactions) == 0:
        raise ValueError("no interactions")
    cutoff = int(interactions.ts.max() - holdout_days * DAY)
    before = interactions.ts < cutoff
    return interactions.select(before), interactions.select(~before), cutoff


# --------------------------------------------------------------------------- model


def _resolve_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise TypeError(f"unknown recommendation parameters: {', '.join(sorted(unknown))}")
    return {**DEFAULT_PARAMS, **params}


def _torch_device(name: str) -> Any:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _decay(age_seconds: np.ndarray, half_life_days: float | None) -> np.ndarray:
    if not half_life_days:
        return np.ones(len(age_seconds), np.float32)
    return np.exp2(-np.maximum(age_seconds, 0) / (half_life_days * DAY)).astype(np.float32)


def _rating(total: np.ndarray, weighting: str) -> np.ndarray:
    if weighting == "log1p":
        return np.log1p(np.maximum(total, 0)).astype(np.float32)
    if weighting == "binary":
        return np.ones(len(total), np.float32)
    if weighting == "linear":
        return total.astype(np.float32)
    raise ValueError(f"unknown weighting {weighting!r}")


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


class Model:
    """A trained recommender. Build with :func:`train`."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.user_ids: list[str] = []
        self.item_ids: list[str] = []  # catalog: training items, then items known only by embedding
        self.n_train_items = 0
        self.history: sp.csr_matrix  # users x catalog, recency-weighted ratings
        self.seen: sp.csr_matrix  # users x catalog, 1 where the user interacted
        self.similarity: sp.csr_matrix  # catalog x catalog
        self.popularity: np.ndarray  # recency-weighted, max 1
        self.user_counts: np.ndarray  # distinct customers per catalog item (popularity baseline)
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None
        self.embeddings: np.ndarray | None = None  # catalog x d, unit rows (zeros where unknown)
        self.trained_until = 0
        self._als = None
        self._user_index: dict[str, int] = {}
        self._item_index: dict[str, int] = {}
        self._torch: dict[str, Any] | None = None  # device tensors and reused score buffers
        self._pop_order: np.ndarray | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ helpers

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_code(self, user_id: str) -> int | None:
        return self._user_index.get(str(user_id))

    def item_code(self, item_id: str) -> int | None:
        return self._item_index.get(str(item_id))

    def _tensors(self) -> dict[str, Any]:
        if self._torch is None:
            import torch

            device = _torch_device(self.params["device"])
            tensors: dict[str, Any] = {"device": device}
            tensors["pop"] = torch.from_numpy(self.popularity).to(device)
            if self.item_factors is not None:
                tensors["V"] = torch.from_numpy(np.ascontiguousarray(self.item_factors)).to(device)
            if self.embeddings is not None:
                tensors["E"] = torch.from_numpy(self.embeddings).to(device)
            self._torch = tensors
        return self._torch

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_torch"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ scoring

    def _workspace(self, rows: int) -> dict[str, Any]:
        """Score buffers (rows x catalog), allocated once and reused: fresh large tensors cost page faults."""
        import torch

        t = self._tensors()
        buffers = t.get("buffers")
        if buffers is None or buffers["total"].shape[0] < rows:
            names = ["total"] + [name for name in ("items", "als", "content") if self._uses(name)]
            buffers = {name: torch.empty((rows, self.n_items), device=t["device"]) for name in names}
            t["buffers"] = buffers
        return {name: buffer[:rows] for name, buffer in buffers.items()}

    def _batch_rows(self) -> int:
        size = int(self.params["batch_size"])
        return size if size > 0 else int(min(2048, max(32, (16 << 20) // max(self.n_items, 1))))

    def _uses(self, signal: str) -> bool:
        p = self.params
        if signal == "items":
            return bool(p["w_items"]) and self.similarity.nnz > 0
        if signal == "als":
            return bool(p["w_als"]) and self.item_factors is not None
        if signal == "content":
            return bool(p["w_content"]) and self.embeddings is not None
        return bool(p["w_pop"])

    def _score(self, history: sp.csr_matrix, user_factors: np.ndarray | None) -> tuple[Any, dict[str, Any]]:
        """Blended scores (rows x catalog, torch) and, per signal, (values, per-row scale) for the reasons.

        Each signal is scaled by ``weight / its row maximum`` and added to the total in one pass
        (``addcmul``); the returned tensors are views of reused buffers, valid until the next call.
        """
        import torch

        p = self.params
        t = self._tensors()
        device = t["device"]
        rows = history.shape[0]
        work = self._workspace(rows)
        total = work["total"]
        parts: dict[str, tuple[Any, Any]] = {}

        def scale(values: Any, weight: Any) -> Any:
            top = values.amax(dim=1, keepdim=True)
            return torch.where(top > 0, weight / top.clamp_min(1e-12), torch.zeros_like(top))

        if self._uses("items"):
            items = work["items"]
            if device.type == "cpu":
                (history @ self.similarity).toarray(out=items.numpy())
            else:  # pragma: no cover - GPU
                items.copy_(torch.from_numpy((history @ self.similarity).toarray()))
            parts["items"] = (items, scale(items, p["w_items"]))
        if self._uses("als") and user_factors is not None:
            als = work["als"]
            factors = torch.from_numpy(np.ascontiguousarray(user_factors, dtype=np.float32)).to(device)
            torch.matmul(factors, t["V"].T, out=als)
            parts["als"] = (als, scale(als, p["w_als"]))
        if self._uses("content"):
            content = work["content"]
            counts = torch.from_numpy(np.diff(history.indptr).astype(np.float32)).to(device)
            profile = torch.from_numpy(np.asarray(history @ self.embeddings, dtype=np.float32)).to(device)
            torch.matmul(torch.nn.functional.normalize(profile, dim=1), t["E"].T, out=content)
            weight = p["w_content"] * (1 + p["cold_boost"] * p["cold_items"] / (p["cold_items"] + counts))
            parts["content"] = (content, scale(content, weight.unsqueeze(1)))
        first = True
        for values, factor in parts.values():
            if first:
                torch.mul(values, factor, out=total)
                first = False
            else:
                total.addcmul_(values, factor)
        if self._uses("pop"):
            pop = (t["pop"] * p["w_pop"]).unsqueeze(0)
            if first:
                total.copy_(pop.expand(rows, -1))
            else:
                total.add_(pop)
            parts["pop"] = (pop, None)
        elif first:
            total.zero_()
        return total, parts

    def _topk(
        self, history: sp.csr_matrix, user_factors: np.ndarray | None, k: int, exclude: sp.csr_matrix | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(codes, scores, reason kind) for each row, each ``rows x k'`` with k' = min(k, catalog)."""
        import torch

        with self._lock:
            total, parts = self._score(history, user_factors)
            device = total.device
            if exclude is not None and exclude.nnz:
                coo = exclude.tocoo()
                total[
                    torch.from_numpy(coo.row.astype(np.int64)).to(device),
                    torch.from_numpy(coo.col.astype(np.int64)).to(device),
                ] = -math.inf
            k = min(k, self.n_items)
            scores, codes = torch.topk(total, k, dim=1)
            names = list(parts)
            if names:
                gathered = []
                for name in names:
                    values, factor = parts[name]
                    if factor is None:  # popularity: one row for everyone
                        gathered.append(values[0][codes])
                    else:
                        gathered.append(values.gather(1, codes) * factor)
                kinds = torch.stack(gathered).argmax(dim=0).cpu().numpy()
                kind_names = np.array(names, dtype=object)[kinds]
            else:
                kind_names = np.full(codes.shape, "pop", dtype=object)
            return codes.cpu().numpy(), scores.cpu().numpy(), kind_names

    def _best_history_items(self, history: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray, kind: str) -> np.ndarray:
        """For each (row, item) pair: the history item of that row, other than the item itself, that
        explains the item best (-1 if none)."""
        result = np.full(len(rows), -1, dtype=np.int64)
        if not len(rows):
            return result
        lengths = np.diff(history.indptr)[rows]
        keep = lengths > 0
        rows, cols, index = rows[keep], cols[keep], np.flatnonzero(keep)
        lengths = lengths[keep]
        if not len(rows):
            return result
        pair = np.repeat(np.arange(len(rows)), lengths)
        starts = np.repeat(history.indptr[rows], lengths)
        offsets = np.arange(len(pair)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        position = starts + offsets
        hist_items = history.indices[position]
        hist_weight = history.data[position]
        targets = cols[pair]
        if kind == "items":
            values = np.asarray(self.similarity[hist_items, targets]).ravel() * hist_weight
        else:
            values = np.empty(len(pair), np.float32)
            step = 200_000
            for s in range(0, len(pair), step):
                a, b = self.embeddings[hist_items[s : s + step]], self.embeddings[targets[s : s + step]]
                values[s : s + step] = np.einsum("ij,ij->i", a, b)
        # An item recommended from the customer's own history (viewed, not bought) is most similar to
        # itself; "Similar to Foam mat" on the Foam mat explains nothing, so the reason names another item.
        values[hist_items == targets] = -np.inf
        bounds = np.concatenate(([0], np.cumsum(lengths)))
        maxima = np.maximum.reduceat(values, bounds[:-1])
        is_max = values >= np.repeat(maxima, lengths)
        first = np.flatnonzero(is_max)
        segment = pair[first]
        first_of_segment = np.unique(segment, return_index=True)[1]
        best = hist_items[first[first_of_segment]]
        ok = maxima[segment[first_of_segment]] > 0
        result[index[segment[first_of_segment][ok]]] = best[ok]
        return result

    def _recommendations(
        self,
        history: sp.csr_matrix,
        user_factors: np.ndarray | None,
        k: int,
        exclude: sp.csr_matrix | None,
        item_titles: dict[str, str] | None,
    ) -> list[list[Recommendation]]:
        codes, scores, kinds = self._topk(history, user_factors, k, exclude)
        finite = np.isfinite(scores)
        reasons = np.full(codes.shape, REASON_POP, dtype=object)
        reasons[kinds == "als"] = REASON_ALS
        titles = item_titles or {}
        for kind, template in (("items", REASON_ITEMS), ("content", REASON_CONTENT)):
            rows, cols = np.nonzero((kinds == kind) & finite)
            targets = codes[rows, cols]
            best = self._best_history_items(history, rows, targets, kind)
            again = np.asarray(history[rows, targets]).ravel() > 0 if len(rows) else np.zeros(0, dtype=bool)
            texts: dict[int, str] = {-1: REASON_ALS if kind == "items" else REASON_POP}
            for r, c, b, seen in zip(rows.tolist(), cols.tolist(), best.tolist(), again.tolist(), strict=True):
                if b < 0 and seen:
                    reasons[r, c] = REASON_HISTORY
                    continue
                text = texts.get(b)
                if text is None:
                    item_id = self.item_ids[b]
                    text = texts[b] = template.format(title=titles.get(item_id) or item_id)
                reasons[r, c] = text
        item_ids = self.item_ids
        out: list[list[Recommendation]] = []
        rounded = np.round(scores.astype(np.float64), 6)
        for code_row, score_row, reason_row, ok_row in zip(
            codes.tolist(), rounded.tolist(), reasons.tolist(), finite.tolist(), strict=True
        ):
            out.append(
                [
                    Recommendation(item_ids[code], score, reason)
                    for code, score, reason, ok in zip(code_row, score_row, reason_row, ok_row, strict=True)
                    if ok
                ]
            )
        return out

    # ------------------------------------------------------------------ public API

    def recommend(
        self, user_id: str, k: int = 10, *, exclude_seen: bool = True, item_titles: dict[str, str] | None = None
    ) -> list[Recommendation]:
        """Top ``k`` for a training customer; an unknown customer gets the most popular items."""
        code = self.user_code(user_id)
        if code is None:
            return self.recommend_for_profile([], k, exclude_seen=exclude_seen, item_titles=item_titles)
        return self._batch(np.array([code]), k, exclude_seen, item_titles)[0]

    def recommend_all(
        self, k: int = 10, *, exclude_seen: bool = True, item_titles: dict[str, str] | None = None
    ) -> Iterator[tuple[str, list[Recommendation]]]:
        """(user_id, top ``k``) for every training customer, in batches."""
        size = self._batch_rows()
        for start in range(0, self.n_users, size):
            codes = np.arange(start, min(start + size, self.n_users))
            for code, recs in zip(codes.tolist(), self._batch(codes, k, exclude_seen, item_titles), strict=True):
                yield self.user_ids[code], recs

    def _batch(self, codes: np.ndarray, k: int, exclude_seen: bool, item_titles) -> list[list[Recommendation]]:
        factors = None if self.user_factors is None else self.user_factors[codes]
        exclude = self.seen[codes] if exclude_seen else None
        return self._recommendations(self.history[codes], factors, k, exclude, item_titles)

    def top_codes(self, codes: np.ndarray, k: int = 10, *, exclude_seen: bool = True) -> np.ndarray:
        """Catalog codes of the top ``k`` for training users ``codes`` (no reasons; for evaluation)."""
        out = np.full((len(codes), k), -1, dtype=np.int64)
        size = self._batch_rows()
        for start in range(0, len(codes), size):
            chunk = codes[start : start + size]
            factors = None if self.user_factors is None else self.user_factors[chunk]
            top, scores, _ = self._topk(self.history[chunk], factors, k, self.seen[chunk] if exclude_seen else None)
            top = np.where(np.isfinite(scores), top, -1)
            out[start : start + len(chunk), : top.shape[1]] = top
        return out

    def _profile_row(self, item_ids: Sequence[str]) -> sp.csr_matrix:
        codes = sorted({c for c in (self.item_code(i) for i in item_ids) if c is not None})
        data = np.ones(len(codes), np.float32) * float(_rating(np.array([1.0]), self.params["weighting"])[0])
        return sp.csr_matrix((data, (np.zeros(len(codes), int), codes)), shape=(1, self.n_items), dtype=np.float32)

    def recommend_for_profile(
        self,
        item_ids: Sequence[str],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        item_titles: dict[str, str] | None = None,
    ) -> list[Recommendation]:
        """Top ``k`` for a customer the model has not seen, from the items they interacted with (may be empty)."""
        row = self._profile_row(item_ids)
        factors = None
        if self._als is not None and row.nnz:
            train_part = row[:, : self.n_train_items].tocsr()
            if train_part.nnz:
                factors = np.asarray(self._als.recalculate_user(0, train_part), dtype=np.float32).reshape(1, -1)
        exclude = row if exclude_seen else None
        return self._recommendations(row, factors, k, exclude, item_titles)[0]

    def similar_items(self, item_id: str, k: int = 10) -> list[tuple[str, float]]:
        """Items most similar to ``item_id`` (co-occurrence, latent factors and content, blended); [] if unknown."""
        code = self.item_code(item_id)
        if code is None:
            return []
        return self._similar(np.array([code]), k)[0]

    def similar_all(self, k: int = 10) -> Iterator[tuple[str, list[tuple[str, float]]]]:
        """(item_id, its ``k`` most similar items) for every catalog item, in batches."""
        size = self._batch_rows()
        for start in range(0, self.n_items, size):
            codes = np.arange(start, min(start + size, self.n_items))
            yield from zip([self.item_ids[c] for c in codes.tolist()], self._similar(codes, k), strict=True)

    def _similar(self, codes: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Each signal scaled to [0, 1] per item and cubed (only close neighbours count), then weighted:
        co-occurrence 1, latent factors 0.5, content 1 (more for items few customers bought)."""
        import torch

        p = self.params
        t = self._tensors()
        device = t["device"]
        k = min(k, self.n_items - 1)
        if k <= 0:
            return [[] for _ in codes]

        def sharpen(values: Any) -> Any:
            values.clamp_min_(0)
            values.div_(values.amax(dim=1, keepdim=True).clamp_min(1e-12))
            return values.pow_(3)

        with self._lock:
            total = self._workspace(len(codes))["total"]
            total.zero_()
            if self.similarity.nnz:
                total.add_(sharpen(torch.from_numpy(self.similarity[codes].toarray()).to(device)))
            if "V" in t:
                v = torch.nn.functional.normalize(t["V"], dim=1)
                total.add_(sharpen(v[torch.from_numpy(codes).to(device)] @ v.T), alpha=0.5)
            if "E" in t:
                e = t["E"]
                buyers = torch.from_numpy(self.user_counts[codes]).to(device)
                weight = 1 + p["cold_boost"] * p["cold_items"] / (p["cold_items"] + buyers)
                total.add_(sharpen(e[torch.from_numpy(codes).to(device)] @ e.T) * weight.unsqueeze(1))
            rows = torch.arange(len(codes), device=device)
            total[rows, torch.from_numpy(codes).to(device)] = -math.inf
            scores, top = torch.topk(total, k, dim=1)
            scores, top = scores.cpu().numpy(), top.cpu().numpy()
        return [
            [(self.item_ids[j], round(float(v), 6)) for j, v in zip(row_codes, row_scores, strict=True) if v > 0]
            for row_codes, row_scores in zip(top.tolist(), scores.tolist(), strict=True)
        ]

    def popular_codes(self, k: int, exclude_codes: Iterable[int] = ()) -> list[int]:
        """Popularity baseline: training items by distinct customers, all time, minus ``exclude_codes``."""
        if self._pop_order is None:
            self._pop_order = np.argsort(-self.user_counts[: self.n_train_items], kind="stable")
        exclude = set(exclude_codes)
        out = []
        for code in self._pop_order.tolist():
            if code not in exclude:
                out.append(code)
                if len(out) == k:
                    break
        return out


def train(
    interactions: Interactions,
    *,
    item_embeddings: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    **params: Any,
) -> Model:
    """Fit the blended recommender on ``interactions`` (rows with weight <= 0 are ignored)."""
    p = _resolve_params(params)
    threads = int(p["num_threads"]) or (os.cpu_count() or 1)
    keep = interactions.weight > 0
    users, items = interactions.user[keep].astype(np.int64), interactions.item[keep].astype(np.int64)
    weights, stamps = interactions.weight[keep], interactions.ts[keep]

    model = Model()
    model.params = p
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
    similarity = _item_similarity(binary, int(p["neighbours"]), float(p["user_weight_power"]), threads)
    if extra:
        similarity = sp.csr_matrix(
            (
                similarity.data,
                similarity.indices,
                np.concatenate((similarity.indptr, np.full(len(extra), similarity.nnz))),
            ),
            shape=(n_items, n_items),
        )
    model.similarity = similarity

    if p["w_als"] and len(pair_user) and n_train_items > 1:
        model._als = _fit_als(matrix(rating, n_train_items), p, seed, threads)
        user_factors, item_factors = _als_factors(model._als)
        model.user_factors = user_factors
        model.item_factors = np.vstack([item_factors, np.zeros((len(extra), item_factors.shape[1]), np.float32)])

    if item_embeddings:
        dim = len(next(iter(item_embeddings.values())))
        embeddings = np.zeros((n_items, dim), np.float32)
        for item_id, vector in item_embeddings.items():
            code = model._item_index.get(str(item_id))
            if code is not None:
                embeddings[code] = np.asarray(vector, np.float32)
        model.embeddings = _unit_rows(_project(_unit_rows(embeddings), int(p["content_dims"])))
    return model


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0).astype(np.float32)


def _project(vectors: np.ndarray, dims: int) -> np.ndarray:
    """``vectors`` on their ``dims`` main (uncentred) principal directions; dot products are kept approximately."""
    if dims <= 0 or dims >= vectors.shape[1]:
        return vectors
    gram = (vectors.T @ vectors).astype(np.float64)
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


# --------------------------------------------------------------------------- evaluation


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


def evaluate_model(
    model: Model,
    test: Interactions,
    *,
    k: int = 10,
    new_items_only: bool = True,
    all_user_top: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` and of the popularity baseline on ``test`` (events after the model's training data)."""
    test_user_codes = np.array([model.user_code(u) if model.user_code(u) is not None else -1 for u in test.user_ids])
    test_item_codes = np.array(
        [model.item_code(i) if model.item_code(i) is not None else -2 - n for n, i in enumerate(test.item_ids)]
    )
    # test items unknown to the model get distinct codes below -1 (-1 marks an empty slot in a top k):
    # relevant, never recommendable
    pair_users = test_user_codes[test.user]
    pair_items = test_item_codes[test.item]
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
    user_array = np.array(users, dtype=np.int64)

    catalog = max(model.n_items, 1)
    if all_user_top is None:
        all_user_top = model.top_codes(np.arange(model.n_users), k, exclude_seen=new_items_only)
    model_coverage = len(np.setdiff1d(np.unique(all_user_top), [-1])) / catalog
    model_top = all_user_top[user_array] if users else np.zeros((0, k), np.int64)

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
    return {
        "model": _metrics(model_top, rel_sets, k, model_coverage),
        "popularity": _metrics(pop_top, rel_sets, k, len(pop_all) / catalog),
        "train_events": int(model.seen.nnz),
        "test_users": len(users),
        "k": k,
    }


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
