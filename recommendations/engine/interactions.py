"""Events as engine input: parallel arrays of (customer, item, weight, time), the time split, and how
summed weights become ratings (with a recency decay)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DAY = 86_400
#: How much each kind of event says about a customer's taste; summed per (customer, item), then
#: log1p-scaled by the engine. A purchase counts its quantity; returns teach nothing and are left out.
#: Plain strings (``EventType`` values) so the benchmark can weigh events without Django.
EVENT_WEIGHTS = {"view": 0.1, "cart": 0.5}
#: Ratings count above a neutral 3 of 5; a low rating says "not this" and is left out.
NEUTRAL_RATING = 3.0


def event_weight(kind: str, value: float) -> float:
    if kind == "purchase":
        return max(value, 0.0)
    if kind == "rating":
        return max(value - NEUTRAL_RATING, 0.0)
    return EVENT_WEIGHTS.get(kind, 0.0)


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
