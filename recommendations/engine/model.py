"""The trained recommender (``Model``): blended scoring on torch, top K per customer with a reason,
similar items and the popularity order. Built by ``recommendations.engine.training.train``.

torch is imported inside the methods that use it: a heavy optional dependency that importing the
engine (the benchmark's ``--help``, a worker that only reconciles) should not pay for."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommendations.engine.interactions import _rating

REASON_ITEMS = "Bought together with {title}"
REASON_ALS = "Popular with similar customers"
REASON_CONTENT = "Similar to {title}"
REASON_POP = "Popular right now"
REASON_SEQ = "Often bought after {title}"
# An item from the customer's own history (viewed, not bought) that no other item of theirs explains.
REASON_HISTORY = "Already in their history"


#: Every signal a model can blend, in scoring order; each has a weight ``w_<name>`` (and ``cold_w_<name>``).
SIGNALS = ("items", "ease", "seq", "als", "bpr", "content", "pop")
#: The reason template of each signal that names an item of the customer's history, and what is said
#: when no history item explains the recommendation.
_ITEM_REASONS = {
    "items": (REASON_ITEMS, REASON_ALS),
    "ease": (REASON_ITEMS, REASON_ALS),
    "seq": (REASON_SEQ, REASON_ALS),
    "content": (REASON_CONTENT, REASON_POP),
}


@dataclass
class _Rows:
    """What scoring needs about a batch of customers: their (recency-weighted) history, latent factors
    (None: unknown, as for a profile) and recent items for the sequential signal."""

    history: sp.csr_matrix
    als: np.ndarray | None = None
    bpr: np.ndarray | None = None
    recent: sp.csr_matrix | None = None


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reason: str


def _torch_device(name: str) -> Any:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


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
        self.signals: frozenset[str] = frozenset(SIGNALS)  # those fitted
        self.ease: np.ndarray | None = None  # EASE weights over ease_codes x ease_codes
        self.ease_codes: np.ndarray | None = None
        self.transitions: sp.csr_matrix | None = None  # catalog x catalog, "bought after"
        self.recent: sp.csr_matrix | None = None  # users x catalog, recency within each customer's history
        self.bpr_user_factors: np.ndarray | None = None
        self.bpr_item_factors: np.ndarray | None = None
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
            if self.bpr_item_factors is not None:
                tensors["W"] = torch.from_numpy(np.ascontiguousarray(self.bpr_item_factors)).to(device)
            if self.ease is not None:
                tensors["B"] = torch.from_numpy(self.ease).to(device)
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
            names = ["total"] + [name for name in SIGNALS if name != "pop" and self._uses(name)]
            buffers = {name: torch.empty((rows, self.n_items), device=t["device"]) for name in names}
            t["buffers"] = buffers
        return {name: buffer[:rows] for name, buffer in buffers.items()}

    def _batch_rows(self) -> int:
        size = int(self.params["batch_size"])
        return size if size > 0 else int(min(2048, max(32, (16 << 20) // max(self.n_items, 1))))

    def _weights(self, signal: str) -> tuple[float, float]:
        """(weight for customers with history, weight for cold customers) of ``signal``."""
        p = self.params
        return float(p.get(f"w_{signal}", 0.0)), float(p.get(f"cold_w_{signal}", 0.0))

    def _uses(self, signal: str) -> bool:
        if signal not in self.signals or not any(self._weights(signal)):
            return False
        if signal == "items":
            return self.similarity.nnz > 0
        if signal == "als":
            return self.item_factors is not None
        if signal == "bpr":
            return self.bpr_item_factors is not None
        if signal == "ease":
            return self.ease is not None
        if signal == "seq":
            return self.transitions is not None and self.transitions.nnz > 0
        if signal == "content":
            return self.embeddings is not None
        return True

    def _signals(self, rows: _Rows) -> dict[str, Any]:
        """Each fitted signal for ``rows`` (rows x catalog, torch), every row divided by its maximum (a row
        whose maximum is not positive is zero), so that each signal's best item scores 1. Popularity is one
        row for everyone. The tensors are views of reused buffers, valid until the next call."""
        import torch

        t = self._tensors()
        device = t["device"]
        work = self._workspace(rows.history.shape[0])
        out: dict[str, Any] = {}

        def dense(product: sp.spmatrix, into: Any) -> Any:
            if device.type == "cpu":
                product.toarray(out=into.numpy())
            else:  # pragma: no cover - GPU
                into.copy_(torch.from_numpy(product.toarray()))
            return into

        def factors(values: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(device)

        if self._uses("items"):
            out["items"] = dense(rows.history @ self.similarity, work["items"])
        if self._uses("ease"):
            ease = work["ease"]
            codes = self.ease_codes
            covered = torch.from_numpy(rows.history[:, codes].toarray()).to(device)
            if len(codes) == self.n_items:
                torch.matmul(covered, t["B"], out=ease)
            else:
                ease.zero_()
                ease[:, torch.from_numpy(codes).to(device)] = covered @ t["B"]
            out["ease"] = ease
        if self._uses("seq") and rows.recent is not None:
            out["seq"] = dense(rows.recent @ self.transitions, work["seq"])
        if self._uses("als") and rows.als is not None:
            out["als"] = torch.matmul(factors(rows.als), t["V"].T, out=work["als"])
        if self._uses("bpr") and rows.bpr is not None:
            out["bpr"] = torch.matmul(factors(rows.bpr), t["W"].T, out=work["bpr"])
        if self._uses("content"):
            profile = factors(np.asarray(rows.history @ self.embeddings))
            out["content"] = torch.matmul(torch.nn.functional.normalize(profile, dim=1), t["E"].T, out=work["content"])
        for values in out.values():
            top = values.amax(dim=1, keepdim=True)
            values.mul_(torch.where(top > 0, 1.0 / top.clamp_min(1e-12), torch.zeros_like(top)))
        if self._uses("pop"):
            out["pop"] = t["pop"].unsqueeze(0)
        return out

    def _row_weights(self, rows: _Rows, names: Iterable[str]) -> dict[str, Any]:
        """Per signal, a weight per row (rows x 1): a cold customer's (at most ``cold_max_items`` items) or
        the usual one; content counts more for customers with few items (``cold_boost``)."""
        import torch

        p = self.params
        device = self._tensors()["device"]
        counts = torch.from_numpy(np.diff(rows.history.indptr).astype(np.float32)).to(device)
        cold = counts <= float(p["cold_max_items"])
        out = {}
        for name in names:
            warm_weight, cold_weight = self._weights(name)
            warm = torch.full_like(counts, warm_weight)
            if name == "content":
                warm = warm * (1 + p["cold_boost"] * p["cold_items"] / (p["cold_items"] + counts))
            out[name] = torch.where(cold, torch.full_like(counts, cold_weight), warm).unsqueeze(1)
        return out

    def _score(self, rows: _Rows) -> tuple[Any, dict[str, tuple[Any, Any]]]:
        """Blended scores (rows x catalog, torch) and, per signal, (values, per-row weight) for the reasons."""
        total = self._workspace(rows.history.shape[0])["total"]
        signals = self._signals(rows)
        weights = self._row_weights(rows, signals)
        total.zero_()
        parts: dict[str, tuple[Any, Any]] = {}
        for name, values in signals.items():
            total.addcmul_(values.expand_as(total), weights[name])
            parts[name] = (values, weights[name])
        return total, parts

    def signal_scores(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Each fitted signal for training users ``codes``, as ``_signals`` scales it (rows x catalog, numpy
        copies; popularity 1 x catalog); model selection blends these with candidate weights."""
        with self._lock:
            out = {}
            for name, values in self._signals(self._rows(codes)).items():
                out[name] = values.cpu().numpy().copy()
            return out

    def _topk(self, rows: _Rows, k: int, exclude: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(codes, scores, reason kind) for each row, each ``rows x k'`` with k' = min(k, catalog)."""
        import torch

        with self._lock:
            total, parts = self._score(rows)
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
                    values, weight = parts[name]
                    if values.shape[0] == 1:  # popularity: one row for everyone
                        gathered.append(values[0][codes] * weight)
                    else:
                        gathered.append(values.gather(1, codes) * weight)
                kinds = torch.stack(gathered).argmax(dim=0).cpu().numpy()
                kind_names = np.array(names, dtype=object)[kinds]
            else:
                kind_names = np.full(codes.shape, "pop", dtype=object)
            return codes.cpu().numpy(), scores.cpu().numpy(), kind_names

    def _pair_values(self, kind: str, hist_items: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """How much history item ``hist_items[n]`` explains ``targets[n]`` under signal ``kind``."""
        if kind == "items":
            return np.asarray(self.similarity[hist_items, targets]).ravel()
        if kind == "seq":
            return np.asarray(self.transitions[hist_items, targets]).ravel()
        if kind == "ease":
            position = np.full(self.n_items, -1, np.int64)
            position[self.ease_codes] = np.arange(len(self.ease_codes))
            a, b = position[hist_items], position[targets]
            covered = (a >= 0) & (b >= 0)
            values = np.zeros(len(hist_items), np.float32)
            values[covered] = self.ease[a[covered], b[covered]]
            return values
        values = np.empty(len(hist_items), np.float32)
        step = 200_000
        for s in range(0, len(hist_items), step):
            a, b = self.embeddings[hist_items[s : s + step]], self.embeddings[targets[s : s + step]]
            values[s : s + step] = np.einsum("ij,ij->i", a, b)
        return values

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
        values = self._pair_values(kind, hist_items, targets)
        if kind != "content":
            values = values * hist_weight
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
        self, rows: _Rows, k: int, exclude: sp.csr_matrix | None, item_titles: dict[str, str] | None
    ) -> list[list[Recommendation]]:
        codes, scores, kinds = self._topk(rows, k, exclude)
        history = rows.history
        finite = np.isfinite(scores)
        reasons = np.full(codes.shape, REASON_POP, dtype=object)
        reasons[(kinds == "als") | (kinds == "bpr")] = REASON_ALS
        titles = item_titles or {}
        for kind, (template, fallback) in _ITEM_REASONS.items():
            rows_at, cols = np.nonzero((kinds == kind) & finite)
            if not len(rows_at):
                continue
            targets = codes[rows_at, cols]
            source = rows.recent if kind == "seq" and rows.recent is not None else history
            best = self._best_history_items(source, rows_at, targets, kind)
            again = np.asarray(history[rows_at, targets]).ravel() > 0
            texts: dict[int, str] = {-1: fallback}
            for r, c, b, seen in zip(rows_at.tolist(), cols.tolist(), best.tolist(), again.tolist(), strict=True):
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

    def _rows(self, codes: np.ndarray) -> _Rows:
        return _Rows(
            history=self.history[codes],
            als=None if self.user_factors is None else self.user_factors[codes],
            bpr=None if self.bpr_user_factors is None else self.bpr_user_factors[codes],
            recent=None if self.recent is None else self.recent[codes],
        )

    def _batch(self, codes: np.ndarray, k: int, exclude_seen: bool, item_titles) -> list[list[Recommendation]]:
        exclude = self.seen[codes] if exclude_seen else None
        return self._recommendations(self._rows(codes), k, exclude, item_titles)

    def top_codes(self, codes: np.ndarray, k: int = 10, *, exclude_seen: bool = True) -> np.ndarray:
        """Catalog codes of the top ``k`` for training users ``codes`` (no reasons; for evaluation)."""
        out = np.full((len(codes), k), -1, dtype=np.int64)
        size = self._batch_rows()
        for start in range(0, len(codes), size):
            chunk = codes[start : start + size]
            top, scores, _ = self._topk(self._rows(chunk), k, self.seen[chunk] if exclude_seen else None)
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
        # BPR has no fold-in for a new customer: its signal is left out for them
        recent = (row > 0).astype(np.float32) if self.recent is not None else None
        exclude = row if exclude_seen else None
        return self._recommendations(_Rows(row, als=factors, recent=recent), k, exclude, item_titles)[0]

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
