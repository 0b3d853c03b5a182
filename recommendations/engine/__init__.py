"""Recommendation engine: implicit feedback blended with co-occurrence, recent popularity and content.

Framework-free (numpy, scipy, implicit, torch; no Django) so that the Celery
recommendation task and ``python -m bench.recommend`` run the same code.

A customer's score for an item is a weighted sum (``w_*``) of signals, each
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

- ``ease``: EASE, the closed-form item-item model (``signals.fit_ease``), on at most
  ``ease_max_items`` most-bought items;
- ``seq``: what follows the customer's most recent baskets ("bought after"), time-decayed;
- ``bpr``: ``implicit``'s Bayesian personalised ranking.

Customers with at most ``cold_max_items`` items get the ``cold_w_*`` weights (content and popularity).
Which signals and weights a project uses is chosen per job by ``selection`` on its earlier time windows.

Scoring runs in batches of customers with torch (CUDA when present), so every
customer's top K over the whole catalog is exact, not approximate.

Evaluation (``evaluate``) splits by time: train on everything before
``max(ts) - holdout_days``, test on the rest, for customers in both parts.

Modules, each importing only those above it:

- ``interactions``: events as arrays, the time split, weights to ratings;
- ``model``: the trained ``Model`` and its scoring (top K with reasons, similar items);
- ``signals``: fitting EASE, the sequential signal and BPR;
- ``training``: ``DEFAULT_PARAMS`` and ``train``, which fits the signals into a ``Model``;
- ``evaluation``: metrics at K against the popularity baseline (``evaluate_model``,
  ``evaluate``), the cold start on its own (``cold_start``);
- ``selection``: the per-project choice of model on earlier windows within a time budget
  (``select``, ``choose_and_evaluate``).

Another candidate recommender belongs in a module of its own beside ``training``,
returning an object with ``Model``'s evaluation surface (``user_code``, ``item_code``,
``n_users``, ``n_items``, ``seen``, ``top_codes``, ``popular_codes``) so that
``evaluate_model`` scores it the same way.
"""

from __future__ import annotations

from recommendations.engine.evaluation import _metrics, cold_start, evaluate, evaluate_model
from recommendations.engine.interactions import DAY, Interactions, event_weight, split_by_time
from recommendations.engine.model import (
    REASON_ALS,
    REASON_CONTENT,
    REASON_HISTORY,
    REASON_ITEMS,
    REASON_POP,
    REASON_SEQ,
    SIGNALS,
    Model,
    Recommendation,
)
from recommendations.engine.selection import FOLDS, GRID, Selection, choose_and_evaluate, select
from recommendations.engine.training import DEFAULT_PARAMS, train

__all__ = [
    "DAY",
    "DEFAULT_PARAMS",
    "FOLDS",
    "GRID",
    "REASON_ALS",
    "REASON_CONTENT",
    "REASON_HISTORY",
    "REASON_ITEMS",
    "REASON_POP",
    "REASON_SEQ",
    "SIGNALS",
    "Interactions",
    "Model",
    "Recommendation",
    "Selection",
    "_metrics",
    "choose_and_evaluate",
    "cold_start",
    "evaluate",
    "evaluate_model",
    "event_weight",
    "select",
    "split_by_time",
    "train",
]
