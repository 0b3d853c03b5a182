"""Brand adapter: LoRA fine-tuning of the bundled model on an invented brand's copy, against the base.

    python -m bench.finetune [--examples 300] [--epochs N] [--briefs 20] [--max-new-tokens 64]

The brand data set is tests/data/brand_voice/brand_voice.json (Fjellgard, an invented Nordic
outdoor-gear maker; written by tests/data/brand_voice/make.py). The first ``examples`` texts are split
by time (the newest 10% held out), an adapter is trained on the rest on this machine's CPU
(``finetune.training.train``, the default TrainConfig unless overridden) and evaluated against the
base model on the held-out split (``finetune.evaluation.evaluate``): perplexity of the held-out copy,
hard-constraint pass rate (each channel's limits in the data set) and brand fit
(``generation.scoring.brand_fit``) of copy generated for the held-out briefs.

Training time is wall time and CPU time of this process (all threads): on a shared machine the CPU
time is the steadier figure. The last lines are ``perplexity_ratio: <adapter / base>`` and
``brand_fit_gain: <adapter mean brand fit - base mean brand fit>``. No database or worker is used.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import srcroot  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django

django.setup()

from finetune.evaluation import evaluate  # noqa: E402
from finetune.training import Example, TrainConfig, split_examples, train  # noqa: E402
from srcroot import REPO_ROOT  # noqa: E402
from workers.runtime import BUNDLED_MODEL, ModelSpec  # noqa: E402

DATA = REPO_ROOT / "tests" / "data" / "brand_voice" / "brand_voice.json"


def load_brand(count: int) -> tuple[dict, list[tuple[datetime, Example, str]]]:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    system = data["brand"]["system"]
    rows = [
        (datetime.fromisoformat(r["created_at"]), Example(system, r["user"], r["text"]), r["channel"])
        for r in data["examples"][:count]
    ]
    return data, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None, help="stop training after this many steps")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--rank", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--top-layers", type=int, default=None)
    parser.add_argument("--briefs", type=int, default=20, help="held-out briefs to generate copy for")
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the adapter in this folder")
    args = parser.parse_args(argv)

    knobs = {k: v for k, v in {
        "epochs": args.epochs, "max_steps": args.max_steps, "batch_size": args.batch_size,
        "max_length": args.max_length, "rank": args.rank, "learning_rate": args.learning_rate,
        "top_layers": args.top_layers,
    }.items() if v is not None}
    config = TrainConfig.from_dict(knobs)
    if args.threads:
        os.environ["LOOM_TRAIN_THREADS"] = str(args.threads)
    data, rows = load_brand(args.examples)
    channel_of = {id(example): channel for _, example, channel in rows}
    train_part, heldout = split_examples([(when, example) for when, example, _ in rows])
    spec = ModelSpec(model=BUNDLED_MODEL, gguf_file=None, device="auto", dtype="auto")
    print(f"brand data set: {len(rows)} examples -> {len(train_part)} training, {len(heldout)} held out (newest)")
    print(f"config: {json.dumps(config.to_dict())}")

    work = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    try:
        last_print = [0.0]

        def progress(p: dict) -> None:
            if time.perf_counter() - last_print[0] > 30 or p["step"] == p["total_steps"]:
                last_print[0] = time.perf_counter()
                print(f"  step {p['step']}/{p['total_steps']} epoch {p['epoch']} loss {p['loss']:.3f} "
                      f"({p['seconds']:.0f} s)", flush=True)

        result = train(spec, train_part, config, output_dir=work / "adapter", checkpoint_dir=work / "checkpoints",
                       on_progress=progress)
        print(f"training: {result.examples} examples, {result.total_steps} steps, {result.seconds:.1f} s wall, "
              f"{result.cpu_seconds:.1f} s CPU ({os.cpu_count()} cores, {result.device}), "
              f"final loss {result.final_loss:.3f}")

        brand = data["brand"]
        voice = SimpleNamespace(
            example_texts=[e.assistant for e in train_part[:5]], tone=brand["tone"], audience=brand["audience"],
            words_to_use=brand["words_to_use"], words_to_avoid=brand["words_to_avoid"],
        )
        constraints = [data["constraints"][channel_of[id(e)]] for e in heldout]
        report = evaluate(
            spec, work / "adapter", heldout, voice=voice, approved=[e.assistant for e in train_part[-20:]],
            constraints=constraints, max_briefs=args.briefs, max_new_tokens=args.max_new_tokens,
        )
        if args.keep:
            shutil.copytree(work / "adapter", args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ppl, fit, rate = report["perplexity"], report["brand_fit"], report["constraint_pass_rate"]
    print(f"evaluation: {report['heldout_examples']} held-out texts, {report['briefs']} briefs, "
          f"{report['seconds']:.1f} s")
    for sample in report["samples"]:
        print(f"  brief:   {sample['brief']}\n  base:    {sample['base']!r}\n  adapter: {sample['adapter']!r}")
    print(f"held-out perplexity: base {ppl['base']:.3f}, adapter {ppl['adapter']:.3f}")
    print(f"constraint pass rate: base {rate['base']:.2f}, adapter {rate['adapter']:.2f}")
    print(f"brand fit: base {fit['base']}, adapter {fit['adapter']}")
    print(f"beats_base: {report['beats_base']}")
    print(f"perplexity_ratio: {ppl['ratio']:.4f}")
    gain = fit["gain"] if fit["gain"] is not None else float("nan")
    print(f"brand_fit_gain: {gain:.4f}")


if __name__ == "__main__":
    main()
