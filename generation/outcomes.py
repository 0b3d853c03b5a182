"""The outcome-calibrated component of brand fit: what a project's concluded experiments measured about its copy.

Once a project has ``OUTCOME_CALIBRATION_MIN_EXPERIMENTS`` concluded experiments, every arm it tested is a
data point: its text and how it converted against the other arms of its experiment. A ridge regression
over the texts' MiniLM embeddings (the vectors brand fit already computes) predicts that relative lift
for a new text, and a logistic squashes the prediction into 0..1: 0.5 is "converts like the average arm",
0.73 "one standard deviation of the measured lifts better". Brand fit blends it in with the weight
``OUTCOME_CALIBRATION_WEIGHT`` (``blend``), and the variant keeps both parts (``brand_fit_breakdown``).

Why these choices, with a dozen data points in 384 dimensions:

* the lift of an arm is its posterior mean rate over its experiment's mean arm rate, minus 1: relative,
  so a 2% email and a 10% landing page teach on one scale, and the Beta(1, 1) prior keeps an arm that
  converted nobody in 50 exposures from reading as -100%;
* scikit-learn's ``Ridge`` with a strong ``RIDGE_ALPHA``: with few points the fit is close to the
  direction from the losers' centroid to the winners', which is what one should trust;
* points weighted by nothing but their count: every experiment the project concluded counts.

Generation sits above experiments and never imports it: the experiments app registers where concluded
arms come from (``register_outcome_source``), as generation registers its jobs with billing. The fit is
kept per project and keyed by the arms it was fitted on, so an experiment concluding (a new arm set) is
a new key: the next score refits, and nothing stale is ever served.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings


@dataclass(frozen=True)
class TestedArm:
    """One arm of a concluded experiment: its text and what it measured."""

    experiment_id: str
    text: str
    exposures: int
    conversions: int


#: ``project -> arms of its concluded experiments``; the experiments app registers it at start-up.
OutcomeSource = Callable[[Any], list[TestedArm]]
_source: OutcomeSource | None = None


def register_outcome_source(source: OutcomeSource) -> None:
    global _source
    _source = source


#: Ridge penalty on unit-length embeddings: large against the handful of points a project has, so the
#: fit leans on the direction the winners share rather than on any one arm's wording.
RIDGE_ALPHA = 1.0
#: Fitted models kept in this process (a few hundred floats each).
MODEL_CACHE_SIZE = 256


@dataclass(frozen=True)
class OutcomeModel:
    """A project's fitted outcome component: ``score(vectors)`` in 0..1 for unit-length embeddings."""

    experiments: int
    arms: int
    mean: np.ndarray
    coef: np.ndarray
    lift_scale: float

    def score(self, vectors: np.ndarray) -> list[float]:
        predicted = (np.asarray(vectors, dtype=np.float64) - self.mean) @ self.coef
        return [round(float(v), 4) for v in 1.0 / (1.0 + np.exp(-predicted / self.lift_scale))]


def relative_lifts(arms: Sequence[TestedArm]) -> np.ndarray:
    """Each arm's posterior mean rate over its experiment's mean arm rate, minus 1."""
    rates = np.array([(a.conversions + 1) / (a.exposures + 2) for a in arms])
    lifts = np.zeros(len(arms))
    for experiment in {a.experiment_id for a in arms}:
        members = np.array([a.experiment_id == experiment for a in arms])
        lifts[members] = rates[members] / rates[members].mean() - 1.0
    return lifts


def fit(arms: Sequence[TestedArm], vectors: np.ndarray) -> OutcomeModel:
    """Ridge regression of the arms' relative lifts on their embeddings (rows of ``vectors``)."""
    # Imported here: scikit-learn takes about a second to load, paid only by a process that fits.
    from sklearn.linear_model import Ridge

    x = np.asarray(vectors, dtype=np.float64)
    mean = x.mean(axis=0)
    coef = Ridge(alpha=RIDGE_ALPHA).fit(x, relative_lifts(arms)).coef_
    # The spread of what the fit predicts for the arms it saw: a text predicted one such spread above
    # the average arm scores 0.73, whatever the project's typical lifts are.
    spread = float(np.std((x - mean) @ coef))
    return OutcomeModel(
        experiments=len({a.experiment_id for a in arms}),
        arms=len(arms),
        mean=mean,
        coef=coef,
        lift_scale=max(spread, 1e-6),
    )


_lock = threading.Lock()
_models: OrderedDict[tuple[Any, ...], OutcomeModel] = OrderedDict()


def model_for(project: Any, embed: Callable[[list[str]], Any]) -> OutcomeModel | None:
    """The project's outcome model, or None below the minimum of concluded experiments (or no source)."""
    if project is None or _source is None:
        return None
    arms = _source(project)
    if len({a.experiment_id for a in arms}) < settings.OUTCOME_CALIBRATION_MIN_EXPERIMENTS:
        return None
    key = (str(project.pk), *((a.experiment_id, a.text, a.exposures, a.conversions) for a in arms))
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
    vectors = embed([a.text for a in arms])
    model = fit(arms, vectors.detach().cpu().numpy() if hasattr(vectors, "detach") else np.asarray(vectors))
    with _lock:
        _models[key] = model
        while len(_models) > MODEL_CACHE_SIZE:
            _models.popitem(last=False)
    return model


def blend(voice_score: float, outcome_score: float | None) -> float:
    """The brand fit shown: the voice's part, with the outcome component's weight blended in when there is one."""
    if outcome_score is None:
        return voice_score
    weight = settings.OUTCOME_CALIBRATION_WEIGHT
    return round(min(max((1.0 - weight) * voice_score + weight * outcome_score, 0.0), 1.0), 4)


def breakdown(voice_score: float, outcome_score: float | None, model: OutcomeModel | None) -> dict[str, Any]:
    """What a variant's brand fit is made of, as the API and the dashboard show it."""
    parts: dict[str, Any] = {"voice": voice_score}
    if model is not None and outcome_score is not None:
        parts.update(
            outcome=outcome_score,
            outcome_weight=settings.OUTCOME_CALIBRATION_WEIGHT,
            outcome_experiments=model.experiments,
            outcome_arms=model.arms,
        )
    return parts
