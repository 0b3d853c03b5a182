"""The LoRA trainer (finetune.training): resume after a kill, cancel, knobs, too little data, the split.

Training runs on tests.support.models.tiny_model (2 layers, the real tokenizer): the loop, the
checkpoints and the RNG handling are the same code as on the bundled model, at a fraction of the cost.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from safetensors.torch import load_file

from finetune.forms import StartRunForm
from finetune.training import (
    FLOAT_KNOBS,
    INT_KNOBS,
    MIN_TRAINING_EXAMPLES,
    Canceled,
    Example,
    TooLittleData,
    TrainConfig,
    latest_checkpoint,
    minimum_examples,
    split_examples,
    train,
)
from tests.support.models import tiny_model


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # One torch thread: the tiny model gains nothing from two, and a shared CI machine loses a lot.
    monkeypatch.setenv("LOOM_TRAIN_THREADS", "1")


SYSTEM = "You write copy for Fjellgard. Short sentences."


def examples(n: int = MIN_TRAINING_EXAMPLES) -> list[Example]:
    return [Example(SYSTEM, f"Write a blurb for pack {i}.", f"Sleet. Wind. Ridge. Pack {i}. Walk far.")
            for i in range(n)]


def small_config(**overrides: object) -> TrainConfig:
    values = {"rank": 4, "alpha": 8, "epochs": 2, "batch_size": 8, "max_length": 48, "checkpoint_every_steps": 3,
              "learning_rate": 5e-3}
    return TrainConfig.from_dict({**values, **overrides})


def adapter_weights(folder: Path) -> dict:
    return load_file(str(folder / "adapter_model.safetensors"))


class Killed(Exception):
    pass


def test_a_run_killed_mid_training_resumes_from_its_checkpoint_to_the_same_adapter(tmp_path):
    config = small_config()  # 40 examples, batch 8: 5 steps an epoch, 10 in all, checkpoints at 3, 6, 9
    whole = train(tiny_model(), examples(), config, output_dir=tmp_path / "whole", checkpoint_dir=tmp_path / "ck1")

    def kill_at_step_7(progress: dict) -> None:
        if progress["step"] == 7:
            raise Killed  # the worker dies after step 7: the newest checkpoint is step 6
    with pytest.raises(Killed):
        train(tiny_model(), examples(), config, output_dir=tmp_path / "resumed", checkpoint_dir=tmp_path / "ck2",
              on_progress=kill_at_step_7)
    assert not (tmp_path / "resumed").exists()
    assert latest_checkpoint(tmp_path / "ck2").name == "step-0000006"

    steps: list[int] = []
    resumed = train(tiny_model(), examples(), config, output_dir=tmp_path / "resumed",
                    checkpoint_dir=tmp_path / "ck2", on_progress=lambda p: steps.append(p["step"]))

    assert resumed.resumed_from_step == 6
    assert steps == [7, 8, 9, 10]
    assert resumed.losses == pytest.approx(whole.losses, abs=1e-5)
    expected, got = adapter_weights(tmp_path / "whole"), adapter_weights(tmp_path / "resumed")
    assert expected.keys() == got.keys() and expected
    for name in expected:
        assert (expected[name] - got[name]).abs().max() < 1e-5, name


def test_progress_reports_every_step_with_its_loss(tmp_path):
    seen: list[dict] = []
    result = train(tiny_model(), examples(), small_config(epochs=1), output_dir=tmp_path / "out",
                   checkpoint_dir=tmp_path / "ck", on_progress=seen.append)

    assert [p["step"] for p in seen] == [1, 2, 3, 4, 5]
    assert {p["total_steps"] for p in seen} == {5}
    assert all(p["epoch"] == 1 and p["loss"] > 0 and p["seconds"] >= 0 for p in seen)
    assert (tmp_path / "out" / "adapter_config.json").exists()
    assert result.steps == result.total_steps == 5


def test_a_checkpoint_of_other_data_is_not_resumed_from(tmp_path):
    with pytest.raises(Killed):
        train(tiny_model(), examples(), small_config(), output_dir=tmp_path / "a", checkpoint_dir=tmp_path / "ck",
              on_progress=lambda p: (_ for _ in ()).throw(Killed) if p["step"] == 4 else None)

    other = train(tiny_model(), examples(41), small_config(), output_dir=tmp_path / "b",
                  checkpoint_dir=tmp_path / "ck")

    assert other.resumed_from_step == 0


def test_cancel_raises_canceled_and_writes_no_adapter(tmp_path):
    polls = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) > 2

    with pytest.raises(Canceled):
        train(tiny_model(), examples(), small_config(), output_dir=tmp_path / "out", checkpoint_dir=tmp_path / "ck",
              should_stop=stop)

    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"rank": 0}, "rank"),
        ({"rank": "8"}, "rank"),
        ({"epochs": 500}, "epochs"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"dropout": 1.5}, "dropout"),
        ({"batch_size": True}, "batch_size"),
        ({"target_modules": []}, "target_modules"),
        ({"target_modules": ["lm_head"]}, "target_modules"),
        ({"momentum": 0.9}, "unknown setting 'momentum'"),
    ],
)
def test_bad_training_settings_are_refused_with_the_setting_named(knobs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(knobs)


def test_good_training_settings_override_the_defaults():
    config = TrainConfig.from_dict({"rank": 8, "learning_rate": 0.0005, "target_modules": ["q_proj", "v_proj"]})

    assert (config.rank, config.learning_rate, config.target_modules) == (8, 0.0005, ("q_proj", "v_proj"))
    assert config.epochs == TrainConfig().epochs
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("knob", ["epochs", "learning_rate", "rank", "alpha"])
def test_the_dashboard_form_accepts_and_refuses_what_the_training_config_does(knob):
    low, high = {**INT_KNOBS, **FLOAT_KNOBS}[knob]
    below, above = (low - 1, high + 1) if knob in INT_KNOBS else (low / 10, high * 2)
    for value in (low, high):
        form = StartRunForm(data={knob: value})
        assert form.is_valid(), form.errors
        assert getattr(TrainConfig.from_dict(form.config()), knob) == value
    for value in (below, above):
        assert not StartRunForm(data={knob: value}).is_valid()
        with pytest.raises(ValueError, match=knob):
            TrainConfig.from_dict({knob: value})


def test_too_little_data_says_how_many_more_examples_are_needed(tmp_path):
    with pytest.raises(TooLittleData) as refused:
        train(tiny_model(), examples(minimum_examples() - 15), small_config(), output_dir=tmp_path / "out",
              checkpoint_dir=tmp_path / "ck")

    assert refused.value.needed == 15
    assert "15 more" in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_the_split_holds_out_the_newest_tenth_and_drops_duplicates():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    dated = [(start + timedelta(days=i), e) for i, e in enumerate(examples(95))]
    duplicate = Example(SYSTEM, dated[0][1].user, " sleet.  WIND. ridge. pack 0. walk far.")
    dated.append((start + timedelta(days=200), duplicate))
    dated.reverse()  # the order given does not matter, the time does

    train_part, heldout = split_examples(dated)

    assert len(train_part) + len(heldout) == 95  # the later duplicate of example 0 is dropped
    assert len(heldout) == 10  # ceil(10% of 95)
    assert [e.user for e in heldout] == [f"Write a blurb for pack {i}." for i in range(85, 95)]
    assert train_part[0].user == "Write a blurb for pack 0."


def test_a_small_set_still_holds_out_at_least_ten_percent():
    dated = [(float(i), e) for i, e in enumerate(examples(12))]

    train_part, heldout = split_examples(dated)

    assert len(heldout) >= 0.1 * 12 and len(heldout) >= 1
    assert len(train_part) + len(heldout) == 12
