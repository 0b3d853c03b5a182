"""The candidate signals (EASE, sequential, BPR), cold start, and per-project model selection on earlier
windows: small synthetic data, framework-free. Real-data figures belong in ``python -m bench.recommend``."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.engine import (
    DAY,
    Interactions,
    choose_and_evaluate,
    select,
    split_by_time,
    train,
)
from recommendations.engine.selection import full_size_cost_s
from recommendations.engine.signals import fit_ease, fit_transitions
from recommendations.engine.training import DEFAULT_PARAMS

T0 = 1_700_000_000
FAST = {"factors": 8, "iterations": 5, "bpr_iterations": 5}
ONLY = {"w_als": 0.0, "w_items": 0.0, "w_pop": 0.0, "w_content": 0.0, "cold_max_items": 0}


def _groups(users: int = 90, items: int = 30, days: int = 200, seed: int = 0) -> Interactions:
    """Three taste groups; each customer buys five items of theirs over ``days``."""
    rng = np.random.default_rng(seed)
    records = []
    for u in range(users):
        pool = [i for i in range(items) if i % 3 == u % 3]
        for n, i in enumerate(rng.choice(pool, size=5, replace=False).tolist()):
            records.append((f"u{u}", f"i{i}", 1.0, T0 + int(rng.integers(0, days)) * DAY + n))
    return Interactions.from_records(records)


def test_ease_matches_the_closed_form_and_caps_the_catalog_at_the_most_bought_items():
    rng = np.random.default_rng(1)
    x = (rng.random((40, 6)) < 0.4).astype(np.float32)
    x[:, 5] = 1  # the most bought
    codes, weights = fit_ease(sp.csr_matrix(x), lam=2.0, max_items=10)
    p = np.linalg.inv(x.T.astype(np.float64) @ x + 2.0 * np.eye(6))
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0)
    assert codes.tolist() == list(range(6))
    assert np.allclose(weights, expected, atol=1e-4)

    capped, small = fit_ease(sp.csr_matrix(x), lam=2.0, max_items=2)
    buyers = x.sum(axis=0)
    assert 5 in capped.tolist() and len(capped) == 2 and small.shape == (2, 2)
    assert buyers[capped].min() >= np.sort(buyers)[-2]


def test_a_model_with_ease_over_a_capped_catalog_still_ranks_every_item():
    data = _groups()
    model = train(data, w_ease=1.0, ease_max_items=5, **ONLY, **FAST)
    assert len(model.ease_codes) == 5
    recs = model.recommend("u0", k=10)
    assert len(recs) == 10 and len({r.item_id for r in recs}) == 10


def test_the_sequential_signal_recommends_what_follows_the_latest_basket():
    # given: everyone buys a, then b a week later, then c; "solo" just bought a
    records = []
    for u in range(15):
        for step, item in enumerate(("a", "b", "c")):
            records.append((f"u{u}", item, 1.0, T0 + u * DAY + step * 7 * DAY))
        records.append((f"u{u}", "filler", 1.0, T0))
    records += [("solo", "c", 1.0, T0 + 60 * DAY), ("solo", "a", 1.0, T0 + 90 * DAY)]
    model = train(Interactions.from_records(records), w_seq=1.0, **ONLY, **FAST)

    # when
    recs = model.recommend("solo", k=1, item_titles={"a": "Teapot"})

    # then: b follows a (their most recent), not what follows c
    assert recs[0].item_id == "b"
    assert recs[0].reason == "Often bought after Teapot"


def test_transitions_skip_items_of_the_same_basket_and_repeats():
    user = np.array([0, 0, 0, 0])
    item = np.array([0, 1, 2, 0])
    ts = np.array([10, 10, 20, 30])  # basket {0, 1}, then {2}, then {0} again
    matrix = fit_transitions(user, item, ts, 3, window=1, neighbours=10).toarray()
    assert matrix[0, 1] == matrix[1, 0] == 0  # same basket: co-occurrence, not a sequence
    assert matrix[0, 2] > 0 and matrix[1, 2] > 0 and matrix[2, 0] > 0
    assert np.all(np.diag(matrix) == 0)


def test_bpr_is_a_signal_of_its_own():
    model = train(_groups(), w_bpr=1.0, **ONLY, **FAST)
    assert model.bpr_user_factors is not None and model.user_factors is None
    assert len(model.recommend("u1", k=4)) == 4


def test_a_cold_customer_gets_content_and_popularity_only():
    data = _groups()
    rng = np.random.default_rng(2)
    centres = [rng.standard_normal(16) for _ in range(3)]
    embeddings = {f"i{i}": centres[i % 3] + 0.1 * rng.standard_normal(16) for i in range(30)}
    records = [
        (data.user_ids[u], data.item_ids[i], 1.0, int(t)) for u, i, t in zip(data.user, data.item, data.ts, strict=True)
    ]
    records.append(("newbie", "i4", 1.0, T0 + 10 * DAY))  # one purchase, in group 1
    model = train(
        Interactions.from_records(records), item_embeddings=embeddings, w_content=0.0, w_pop=0.0, w_items=1.0, **FAST
    )
    recs = model.recommend("newbie", k=5)
    # the warm blend has no content at all: these come from the cold weights, content first
    assert all(r.reason.startswith("Similar to ") or r.reason == "Popular right now" for r in recs)
    assert sum(int(r.item_id[1:]) % 3 == 1 for r in recs) >= 4
    warm = model.recommend("u1", k=5)
    assert not any(r.reason.startswith("Similar to ") for r in warm)


def test_selection_uses_only_earlier_windows_and_picks_the_best_by_ndcg():
    data = _groups(days=200)
    before, _, cutoff = split_by_time(data, 28)

    selection = select(before, window_days=28, seed=0, budget_s=30, base_params=FAST)

    report = selection.report
    assert len(report["windows"]) == 2
    assert all(datetime.fromisoformat(w["end"]).timestamp() < cutoff for w in report["windows"])
    assert report["windows"][1]["end"] <= report["windows"][0]["start"]
    names = [c["name"] for c in report["candidates"]]
    assert {"als", "bpr", "ease", "items", "seq", "pop", "default blend", "learned blend"} <= set(names)
    scores = [c["ndcg"] for c in report["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert report["chosen"] == names[0]
    assert report["chosen"] in report["why"] and f"{scores[0]:.4f}" in report["why"]
    for candidate in report["candidates"]:
        assert {"ndcg", "recall", "coverage", "ndcg_by_window"} <= set(candidate)
        assert len(candidate["ndcg_by_window"]) == 2


def test_a_spent_budget_stops_the_grid_but_every_candidate_is_still_scored():
    selection = select(_groups(), window_days=28, budget_s=0, base_params=FAST)
    report = selection.report
    assert report["skipped"] and any(s.startswith("als ") for s in report["skipped"])
    assert {"als", "ease", "seq", "default blend", "learned blend"} <= {c["name"] for c in report["candidates"]}


def test_selection_off_or_without_history_keeps_the_default_blend():
    off = select(_groups(), window_days=28, folds=0)
    assert off.params == {} and off.report["why"].startswith("Model selection is off")
    short = select(_groups(days=20), window_days=28)
    assert short.params == {} and short.report["why"].startswith("Too little history")


def test_choose_and_evaluate_reports_the_window_against_popularity_and_als():
    params, metrics = choose_and_evaluate(_groups(), holdout_days=28, budget_s=5, base_params=FAST)
    assert set(metrics) >= {"model", "popularity", "als", "als_tuned", "cold_start", "selection", "holdout_start"}
    for key in ("model", "popularity", "als", "als_tuned"):
        assert 0 <= metrics[key]["ndcg"] <= 1
    assert metrics["selection"]["chosen_params"] == params
    cold = metrics["cold_start"]
    assert set(cold) == {"customers", "new_items"} and cold["customers"]["max_items"] == 1


def test_too_little_history_is_no_evaluation_but_still_a_choice():
    params, metrics = choose_and_evaluate(_groups(days=10), holdout_days=28, budget_s=1, base_params=FAST)
    assert params == {}
    assert metrics["skipped"].startswith("No evaluation: no interactions before the last 28 days")
    assert "selection" in metrics


def test_unknown_signals_are_refused():
    with pytest.raises(ValueError, match="unknown signals: nope"):
        train(_groups(), signals=("nope",))


def test_the_full_size_cost_of_ease_grows_with_its_capped_catalog_and_other_signals_cost_nothing_extra():
    big = full_size_cost_s("ease", 50_000, 20_000, DEFAULT_PARAMS)
    assert big > 20
    assert full_size_cost_s("ease", 50_000, 200_000, DEFAULT_PARAMS) == big  # capped at ease_max_items
    assert full_size_cost_s("ease", 900, 300, DEFAULT_PARAMS) < 0.01
    assert full_size_cost_s("als", 50_000, 20_000, DEFAULT_PARAMS) == 0.0


def test_a_signal_too_costly_at_full_size_is_left_out_and_the_report_says_why(monkeypatch):
    monkeypatch.setattr("recommendations.engine.selection.MATMUL_RATE", 1.0)  # EASE looks hours long

    report = select(_groups(), window_days=28, budget_s=5, base_params=FAST).report

    assert any(s.startswith("ease (about") for s in report["skipped"])
    assert "ease" not in {c["name"] for c in report["candidates"]}


def test_large_windows_train_on_a_sample_of_customers_and_every_candidate_is_still_scored(monkeypatch):
    monkeypatch.setattr("recommendations.engine.selection.MAX_SELECTION_EVENTS", 100)

    report = select(_groups(), window_days=28, budget_s=30, base_params=FAST).report

    assert {"als", "ease", "seq", "default blend", "learned blend"} <= {c["name"] for c in report["candidates"]}
    assert report["chosen"] == report["candidates"][0]["name"]
