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
# An item from the customer's own history (viewed, not bought) that no other item of theirs explains.
REASON_HISTORY = "Already in their history"


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
