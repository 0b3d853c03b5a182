"""Demo shop data for ``manage.py seed_demo``: a small outdoor catalog, customers and their history.

Generated, not shipped: 36 products in six categories, 80 customers in four countries,
and about four months of views, carts and purchases in which each customer mostly buys
from one or two favourite categories, so a recommendation job has structure to find.
The same seed gives the same file; event ids are stable (``demo-<n>``), so importing it
again stores nothing twice. It goes through the ordinary CSV import, as a marketer's
file would.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import datetime, timedelta

CATEGORIES = {
    "Tents": ["Ridge 2 tent", "Ridge 3 tent", "Summit ultralight tent", "Family dome tent", "Bivvy shelter",
              "Tent footprint"],
    "Sleeping": ["Down sleeping bag", "Synthetic sleeping bag", "Inflatable mat", "Foam mat", "Camp pillow",
                 "Sleeping bag liner"],
    "Cooking": ["Gas stove", "Titanium pot", "Spork set", "Water filter", "Insulated mug", "Fuel canister"],
    "Footwear": ["Trail runners", "Leather hiking boots", "Gaiters", "Merino socks", "Camp sandals",
                 "Boot wax"],
    "Clothing": ["Rain shell", "Fleece jacket", "Down vest", "Hiking trousers", "Sun hoody", "Beanie"],
    "Packs": ["Daypack 20 l", "Trekking pack 55 l", "Hip pack", "Dry bag set", "Pack rain cover",
              "Trekking poles"],
}
COUNTRIES = ["United Kingdom", "Germany", "France", "Netherlands"]
CUSTOMERS = 80
DAYS = 120
COLUMNS = ["event_id", "customer_id", "country", "sku", "title", "description", "price", "type", "value",
           "timestamp"]


def catalog() -> list[dict[str, str]]:
    """SKU, title, description and price of every demo product, in a stable order."""
    rng = random.Random(11)  # noqa: S311 (demo data, not a secret)
    items = []
    for c, (category, titles) in enumerate(CATEGORIES.items()):
        for i, title in enumerate(titles):
            items.append({
                "sku": f"{category[:3].upper()}-{c}{i:02d}",
                "title": title,
                "description": f"{title} from our {category.lower()} range, made for three-season trips.",
                "price": f"{rng.randrange(9, 400)}.{rng.choice(['00', '50', '95', '99'])}",
                "category": category,
            })
    return items


def events_csv(now: datetime, *, seed: int = 7) -> bytes:
    """The demo history as a CSV the importer recognises without a mapping; the last event is ``now``-ish."""
    rng = random.Random(seed)  # noqa: S311 (demo data, not a secret)
    items = catalog()
    by_category: dict[str, list[dict[str, str]]] = {}
    for item in items:
        by_category.setdefault(item["category"], []).append(item)
    start = now.replace(microsecond=0) - timedelta(days=DAYS)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    number = 0
    for c in range(CUSTOMERS):
        customer = f"C{1000 + c}"
        country = COUNTRIES[c % len(COUNTRIES)]
        favourites = rng.sample(list(by_category), k=rng.choice([1, 2]))
        for _ in range(rng.randint(4, 16)):
            pool = by_category[rng.choice(favourites)] if rng.random() < 0.8 else items
            item = rng.choice(pool)
            moment = start + timedelta(seconds=rng.randrange(DAYS * 86400))
            steps = [("view", 1), ("cart", 1), ("purchase", rng.randint(1, 2))] if rng.random() < 0.6 else [
                ("view", 1)]
            for offset, (kind, value) in enumerate(steps):
                number += 1
                writer.writerow([
                    f"demo-{number}", customer, country, item["sku"], item["title"], item["description"],
                    item["price"], kind, value, (moment + timedelta(minutes=3 * offset)).isoformat(),
                ])
    return out.getvalue().encode()
