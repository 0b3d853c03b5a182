"""Writes brand_voice.json: ~300 short marketing texts in the voice of Fjellgard, an invented brand.

    python tests/data/brand_voice/make.py [--count 300] [--seed 17]

Fjellgard is a made-up Nordic outdoor-gear maker; every sentence here comes from the templates and
word lists below (no third-party copy). The voice is meant to be easy to tell from generic copy, so
a LoRA adapter trained on it lowers held-out perplexity a lot:

- every text opens with three one-word weather fragments ("Sleet. Wind. Ridge."),
- products are "built for the long way round", kit is "quiet kit for loud weather",
- short declarative sentences, no exclamation marks, no superlatives ("amazing", "best"),
- every blurb and ad signs off "Walk far. Fjellgard.", subject lines end "— Fjellgard".

Each record: ``{"id", "created_at" (ISO time, one per 6 hours: the held-out split is by time),
"channel", "product", "facts", "user" (the brief), "text" (the copy)}``; ``BRAND`` holds the brand
voice (system prompt, words to use and avoid) and ``CONSTRAINTS`` the hard limits per channel.
The output is deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent

BRAND = {
    "name": "Fjellgard",
    "system": (
        "You write copy for Fjellgard, a Nordic outdoor-gear maker. Voice: calm, plain, weathered. "
        "Short sentences. No exclamation marks. Sign off with 'Walk far. Fjellgard.'"
    ),
    "tone": "calm, plain, weathered, short declarative sentences",
    "audience": "hill walkers and fell runners who go out in any weather",
    "words_to_use": ["Fjellgard", "walk far", "long way round", "weather"],
    "words_to_avoid": ["amazing", "revolutionary", "game-changer", "ultimate", "!"],
}

#: Hard limits per channel (generation.constraints.check): what a marketer would set on the template.
CONSTRAINTS = {
    "product blurb": {"max_words": 70, "banned_phrases": ["amazing", "game-changer"]},
    "email subject line": {"max_chars": 70, "banned_phrases": ["amazing", "game-changer"]},
    "social ad": {"max_words": 50, "banned_phrases": ["amazing", "game-changer"]},
}

WEATHER = ["Sleet", "Wind", "Rain", "Fog", "Frost", "Hail", "Snow", "Drizzle", "Gale", "Mist", "Thaw", "Squall"]
TERRAIN = ["Ridge", "Fell", "Scree", "Moor", "Tarn", "Col", "Bog", "Crag", "Pass", "Fjord", "Birchwood", "Summit"]

PRODUCTS = [
    ("Skarv shell jacket", "shell", ["three-layer fabric", "taped seams", "a hood that turns with your head",
                                      "410 grams", "pit zips you can find with gloves on"]),
    ("Ljung fleece", "fleece", ["grid fleece", "a long back", "thumb loops", "260 grams", "a chest pocket"]),
    ("Myr gaiters", "gaiters", ["waxed canvas", "a steel-free instep strap", "a front zip", "knee height"]),
    ("Rime down vest", "vest", ["responsible down", "a baffled front", "a zip garage", "it packs into its own pocket"]),
    ("Tind 28 pack", "pack", ["28 litres", "a roll top", "a back that breathes", "two hip pockets",
                              "a rain cover in the lid"]),
    ("Tind 45 pack", "pack", ["45 litres", "a frame you can bend", "a lid that comes off", "ice axe loops"]),
    ("Varde trekking poles", "poles", ["carbon shafts", "cork grips", "flick locks", "430 grams a pair"]),
    ("Stig trail shoes", "shoes", ["a lugged sole", "a wide toe box", "a rock plate", "quick-dry mesh"]),
    ("Bre mountain boots", "boots", ["full-grain leather", "a stiff sole for crampons", "a gusseted tongue",
                                      "resoleable soles"]),
    ("Ulv wool base layer", "base layer", ["merino wool", "flat seams", "a long hem", "no itch"]),
    ("Kvist wool socks", "socks", ["merino blend", "a cushioned heel", "no seam at the toe", "mid-calf height"]),
    ("Brann camp stove", "stove", ["a wind shield", "a piezo lighter", "boils a litre in four minutes", "98 grams"]),
    ("Lavvo two-person tent", "tent", ["two doors", "a tunnel shape that sheds wind", "1.9 kilos",
                                        "pitches outer first"]),
    ("Sno sleeping bag", "sleeping bag", ["rated to minus five", "a draft collar", "a two-way zip", "880 grams"]),
    ("Vind windproof smock", "smock", ["a half zip", "a kangaroo pocket", "packs to a fist", "dries in an hour"]),
    ("Fonn insulated mitts", "mitts", ["synthetic fill", "a leather palm", "wrist leashes", "long cuffs"]),
    ("Lykt head torch", "head torch", ["400 lumens", "a red light", "USB charging", "works with gloves"]),
    ("Hei flask", "flask", ["keeps tea hot for twelve hours", "a cup lid", "steel throughout", "half a litre"]),
    ("Sti map case", "map case", ["clear on both sides", "a roll seal", "a neck cord", "fits a folded sheet"]),
    ("Dal rain trousers", "trousers", ["full side zips", "a stretch panel at the knee", "305 grams",
                                        "a stuff sack"]),
    ("Nut wool hat", "hat", ["double-knit wool", "a fold-up brim", "a fleece band at the ears"]),
    ("Hytte camp shoes", "camp shoes", ["a felt lining", "a fold-down heel", "a grippy sole"]),
    ("Fjord dry bags", "dry bags", ["three sizes", "roll tops", "welded seams", "a window to see what is inside"]),
    ("Vidde softshell trousers", "trousers", ["four-way stretch", "a water-shedding finish", "ankle zips"]),
]

CATCHPHRASES = [
    "Built for the long way round.",
    "Quiet kit for loud weather.",
    "Made to be mended, not replaced.",
    "The hill decides. You go anyway.",
    "Good weather is a bonus, not a plan.",
]
USE_LINES = [
    "Wear it on the {terrain_l} when the forecast lies.",
    "Take it up the {terrain_l} and back down in the dark.",
    "It does one job and does it all day.",
    "Pack it. Forget it. Find it when the {weather_l} comes in.",
    "It has been up the {terrain_l} more times than we can count.",
    "Tested on wet {terrain_l}s, every month of the year.",
    "Nothing clever. Just right, hour after hour.",
]
OPENERS = [
    "Meet the {product}.",
    "This is the {product}.",
    "The {product} is here.",
    "Our {product} is back.",
]
SUBJECTS = [
    "{weather}. {terrain}. Your {kind}. — Fjellgard",
    "The {product}, built for the long way round — Fjellgard",
    "{weather} on the {terrain_l}? Bring the {product} — Fjellgard",
    "Quiet kit for loud weather: the {product} — Fjellgard",
    "{weather}, {weather2_l} and new kit — Fjellgard",
    "The long way round needs a good {kind} — Fjellgard",
]
SOCIAL_HOOKS = [
    "Out before first light.",
    "Forecast says stay in.",
    "Three hours to the {terrain_l}.",
    "Last bus gone.",
    "Cloud on the tops.",
]
CTAS = [
    "Find yours at fjellgard.example.",
    "In shops and online now.",
    "See it in store this week.",
    "Ask for it at your nearest stockist.",
]
SIGN_OFF = "Walk far. Fjellgard."


def weather_line(rng: random.Random) -> tuple[str, str, str]:
    w1, w2 = rng.sample(WEATHER, 2)
    terrain = rng.choice(TERRAIN)
    return f"{w1}. {w2}. {terrain}.", w1, terrain


def facts_sentence(facts: list[str]) -> str:
    if len(facts) == 1:
        return facts[0]
    return ", ".join(facts[:-1]) + " and " + facts[-1]


def make_text(rng: random.Random, channel: str, product: str, kind: str, facts: list[str]) -> str:
    opener, w1, terrain = weather_line(rng)
    fill = {"product": product, "kind": kind, "weather": w1, "weather_l": w1.lower(), "terrain": terrain,
            "terrain_l": terrain.lower(), "weather2_l": rng.choice([w for w in WEATHER if w != w1]).lower()}
    if channel == "email subject line":
        return rng.choice(SUBJECTS).format(**fill)
    if channel == "product blurb":
        parts = [
            opener,
            rng.choice(OPENERS).format(**fill),
            f"{facts_sentence(facts).capitalize()}.",
            rng.choice(USE_LINES).format(**fill),
            rng.choice(CATCHPHRASES),
            SIGN_OFF,
        ]
        return " ".join(parts)
    parts = [
        opener,
        rng.choice(SOCIAL_HOOKS).format(**fill),
        f"The {product}: {facts_sentence(facts[:2])}.",
        rng.choice(CATCHPHRASES),
        rng.choice(CTAS),
        SIGN_OFF,
    ]
    return " ".join(parts)


def brief(channel: str, product: str, facts: list[str]) -> str:
    article = "an" if channel[0] in "aeiou" else "a"
    return f"Write {article} {channel} for the {product}. Key facts: {'; '.join(facts)}."


def build(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    channels = ["product blurb", "product blurb", "social ad", "email subject line"]
    records: list[dict] = []
    seen: set[str] = set()
    while len(records) < count:
        product, kind, all_facts = rng.choice(PRODUCTS)
        channel = rng.choice(channels)
        facts = rng.sample(all_facts, min(len(all_facts), rng.choice([2, 3])))
        text = make_text(rng, channel, product, kind, facts)
        if text in seen:
            continue
        seen.add(text)
        records.append({
            "id": len(records) + 1,
            "created_at": (start + timedelta(hours=6 * len(records))).isoformat(),
            "channel": channel,
            "product": product,
            "facts": facts,
            "user": brief(channel, product, facts),
            "text": text,
        })
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    data = {"brand": BRAND, "constraints": CONSTRAINTS, "seed": args.seed,
            "examples": build(args.count, args.seed)}
    out = HERE / "brand_voice.json"
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(data['examples'])} examples to {out}")


if __name__ == "__main__":
    main()
