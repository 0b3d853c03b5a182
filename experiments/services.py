"""Writes of the experiments app: experiments and their arms, the lifecycle (start, stop, conclude),
outcomes (tracking links, pixels, ingested and custom events), adaptive reweighting and the automatic stop.

Assignment itself is ``experiments.serving`` (the hot path, one statement); results are ``experiments.results``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext

from audit.services import record
from billing.admission import lock_account, refuse_beyond_running_experiments
from billing.plans import current_plan
from core.errors import Conflict, InvalidInput, NotFound
from core.text import storable_text
from experiments import limits, stats
from experiments.models import Arm, Assignment, Experiment, Outcome, Policy, Status
from experiments.tracking import host_of, is_web_url
from generation.models import Variant
from generation.services import record_outcome_lift

if TYPE_CHECKING:
    from apikeys.models import ApiKey
    from organizations.models import Organization
    from projects.models import Project

LABELS = "ABCDEFGHIJ"


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) else None


def _invalid(name: str, message: str) -> InvalidInput:
    """A 400 whose code names the setting (``invalid_arms``, ``invalid_min_share``): the rules here go
    beyond what the API schema states (an approved variant of the project, a floor the arms can share)."""
    root = name.split("[")[0].split(".")[0]
    return InvalidInput(f"{name}: {message}", code=f"invalid_{root}", fields={name: [message]})


# --- settings of an experiment --------------------------------------------------------------------


def _text(value: Any, name: str, limit: int, *, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _invalid(name, gettext("must be text"))
    value = value.strip()
    if required and not value:
        raise _invalid(name, gettext("must not be empty"))
    if len(value) > limit:
        message = gettext("at most %(limit)s characters (got %(length)s)")
        raise _invalid(name, message % {"limit": limit, "length": len(value)})
    if not storable_text(value):
        raise _invalid(name, gettext("contains a NUL or an unpaired surrogate character"))
    return value


def _number(value: Any, name: str, low: float, high: float, *, whole: bool = False) -> Any:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if ok and whole:
        ok = float(value).is_integer()
    if not ok or not low <= value <= high:
        message = (
            gettext("must be a whole number from %(low)s to %(high)s") if whole
            else gettext("must be a number from %(low)s to %(high)s")
        )
        raise _invalid(name, message % {"low": f"{low:g}", "high": f"{high:g}"})
    return int(value) if whole else float(value)


def event_name(value: Any, name: str = "goal_event") -> str:
    text = _text(value, name, limits.MAX_EVENT_NAME_LENGTH).lower()
    if not all(ch.isalnum() or ch in "_-.:" for ch in text):
        raise _invalid(name, gettext("letters, digits and _ - . : only (e.g. purchase, newsletter_signup)"))
    return text


def _hosts(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > limits.MAX_ALLOWED_HOSTS:
        raise _invalid(
            "allowed_hosts",
            gettext("must be a list of at most %(count)s host names") % {"count": limits.MAX_ALLOWED_HOSTS},
        )
    hosts = []
    for entry in value:
        host = _text(entry, "allowed_hosts", 253).lower()
        if host_of(f"https://{host}/") != host or "@" in host:
            raise _invalid(
                "allowed_hosts", gettext("%(host)r is not a host name (e.g. shop.example.com)") % {"host": host[:60]}
            )
        hosts.append(host)
    return sorted(set(hosts))


_SETTINGS = (
    "name", "goal_event", "policy", "min_share", "stop_probability", "min_exposures", "max_exposures",
    "attribution_window_hours", "target_url", "allowed_hosts",
)


def _clean_settings(data: dict[str, Any]) -> dict[str, Any]:
    """Validate the settings present in ``data`` (a partial update names only some)."""
    cleaned: dict[str, Any] = {}
    if "name" in data:
        cleaned["name"] = _text(data["name"], "name", limits.MAX_NAME_LENGTH)
    if "goal_event" in data:
        cleaned["goal_event"] = event_name(data["goal_event"])
    if "policy" in data:
        if data["policy"] not in Policy.values:
            raise _invalid("policy", gettext("must be one of %(choices)s") % {"choices": ", ".join(Policy.values)})
        cleaned["policy"] = data["policy"]
    if "min_share" in data:
        cleaned["min_share"] = _number(data["min_share"], "min_share", 0.0, limits.MAX_MIN_SHARE)
    if "stop_probability" in data:
        cleaned["stop_probability"] = _number(
            data["stop_probability"], "stop_probability", limits.MIN_STOP_PROBABILITY, limits.MAX_STOP_PROBABILITY
        )
    if "min_exposures" in data:
        cleaned["min_exposures"] = _number(data["min_exposures"], "min_exposures", 0, limits.MAX_EXPOSURES, whole=True)
    if "max_exposures" in data:
        cleaned["max_exposures"] = None if data["max_exposures"] is None else _number(
            data["max_exposures"], "max_exposures", 1, limits.MAX_EXPOSURES, whole=True
        )
    if "attribution_window_hours" in data:
        cleaned["attribution_window_hours"] = _number(
            data["attribution_window_hours"], "attribution_window_hours",
            limits.MIN_ATTRIBUTION_HOURS, limits.MAX_ATTRIBUTION_HOURS, whole=True,
        )
    if "target_url" in data:
        url = _text(data["target_url"], "target_url", limits.MAX_URL_LENGTH, required=False)
        if url and not is_web_url(url):
            raise _invalid("target_url", gettext("must be an http or https URL"))
        cleaned["target_url"] = url
    if "allowed_hosts" in data:
        cleaned["allowed_hosts"] = _hosts(data["allowed_hosts"])
    return cleaned


@dataclass(frozen=True)
class ArmSpec:
    label: str
    text: str
    variant: Variant | None


def _arm_specs(project: Project, arms: Any) -> list[ArmSpec]:
    """Arms as sent: each ``{"variant": id}`` (an approved variant of the project) or ``{"text": ...}``."""
    if not isinstance(arms, list) or not limits.MIN_ARMS <= len(arms) <= limits.MAX_ARMS:
        raise _invalid(
            "arms",
            gettext("must be a list of %(min)s to %(max)s arms") % {"min": limits.MIN_ARMS, "max": limits.MAX_ARMS},
        )
    specs, labels = [], set()
    for index, arm in enumerate(arms):
        name = f"arms[{index}]"
        if not isinstance(arm, dict):
            raise _invalid(name, gettext("must be an object with a variant or a text"))
        label = _text(arm.get("label") or LABELS[index], f"{name}.label", limits.MAX_LABEL_LENGTH)
        if label in labels:
            raise _invalid(f"{name}.label", gettext("%(label)r is used twice") % {"label": label})
        labels.add(label)
        variant_id = arm.get("variant")
        if variant_id is not None:
            variant = _approved_variant(project, variant_id, f"{name}.variant")
            specs.append(ArmSpec(label, variant.final_text, variant))
        else:
            specs.append(ArmSpec(label, _text(arm.get("text"), f"{name}.text", limits.MAX_ARM_TEXT_LENGTH), None))
    return specs


def _approved_variant(project: Project, value: Any, name: str) -> Variant:
    try:
        variant_id = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise _invalid(name, gettext("must be a variant id")) from None
    variant = Variant.objects.filter(
        pk=variant_id, job__organization=project.organization, job__project=project
    ).first()
    if variant is None:
        raise _invalid(name, gettext("no such variant in this project"))
    if not variant.approved or variant.is_withheld:
        raise _invalid(name, gettext("only approved variants can be tested; approve it first"))
    return variant


def _write_arms(experiment: Experiment, specs: list[ArmSpec]) -> None:
    Arm.objects.filter(experiment=experiment).delete()
    even = 1.0 / len(specs)
    Arm.objects.bulk_create([
        Arm(experiment=experiment, label=s.label, text=s.text, variant=s.variant, position=i, weight=even)
        for i, s in enumerate(specs)
    ])


def _check_floor(policy: str, min_share: float, arms: int) -> None:
    if policy == Policy.ADAPTIVE and min_share * arms > 1:
        raise _invalid(
            "min_share",
            gettext("%(arms)s arms with a floor of %(share)s each need more than all the traffic")
            % {"arms": arms, "share": f"{min_share:g}"},
        )


# --- create, edit, delete ------------------------------------------------------------------------


@transaction.atomic
def create_experiment(
    *,
    organization: Organization,
    project: Project,
    arms: Any,
    actor: Any = None,
    api_key: ApiKey | None = None,
    **settings: Any,
) -> Experiment:
    if project.organization_id != organization.pk:
        raise NotFound(gettext("Project not found."), code="project_not_found")
    unknown = sorted(set(settings) - set(_SETTINGS))
    if unknown:
        raise InvalidInput(gettext("Unknown settings: %(names)s.") % {"names": ", ".join(unknown)})
    cleaned = _clean_settings({"name": settings.get("name"), **settings})
    specs = _arm_specs(project, arms)
    experiment = Experiment(
        organization=organization, project=project, created_by=_user(actor), api_key=api_key, **cleaned
    )
    _check_floor(experiment.policy, experiment.min_share, len(specs))
    experiment.save()
    _write_arms(experiment, specs)
    record("experiments.created", organization=organization, actor=actor, api_key=api_key, target=experiment)
    return experiment


def _locked(experiment: Experiment) -> Experiment:
    # NO KEY: exposures and outcomes inserted meanwhile reference the row (a KEY SHARE lock each) and
    # must not wait for a review's posterior draws.
    return Experiment.objects.select_for_update(no_key=True).get(pk=experiment.pk)


@transaction.atomic
def update_experiment(*, experiment: Experiment, actor: Any = None, arms: Any = None, **settings: Any) -> Experiment:
    """Change a draft's settings and (when ``arms`` is given) replace its arms. A started experiment's
    arms and goal are what its data measured: only its name changes."""
    experiment = _locked(experiment)
    unknown = sorted(set(settings) - set(_SETTINGS))
    if unknown:
        raise InvalidInput(gettext("Unknown settings: %(names)s.") % {"names": ", ".join(unknown)})
    cleaned = _clean_settings(settings)
    if not experiment.is_draft and (arms is not None or set(cleaned) - {"name"}):
        raise Conflict(
            gettext(
                "This experiment is %(status)s: only its name can change. Create a new one to test other settings."
            ) % {"status": experiment.get_status_display().lower()},
            code="experiment_not_draft",
        )
    for name, value in cleaned.items():
        setattr(experiment, name, value)
    specs = _arm_specs(experiment.project, arms) if arms is not None else None
    _check_floor(experiment.policy, experiment.min_share, len(specs) if specs else experiment.arms.count())
    experiment.save()
    if specs is not None:
        _write_arms(experiment, specs)
    return experiment


@transaction.atomic
def delete_experiment(*, experiment: Experiment, actor: Any = None, api_key: ApiKey | None = None) -> None:
    experiment = _locked(experiment)
    if experiment.is_running:
        raise Conflict(gettext("Stop the experiment before deleting it."), code="experiment_running")
    record(
        "experiments.deleted", organization=experiment.organization, actor=actor, api_key=api_key,
        target=experiment, name=experiment.name,
    )
    experiment.delete()


# --- lifecycle -----------------------------------------------------------------------------------


@transaction.atomic
def start_experiment(*, experiment: Experiment, actor: Any = None, api_key: ApiKey | None = None) -> Experiment:
    """Draft or stopped -> running. A stopped experiment resumes with its exposures; a concluded one is final."""
    experiment = _locked(experiment)
    if experiment.status not in (Status.DRAFT, Status.STOPPED):
        raise Conflict(
            gettext("A %(status)s experiment cannot start.") % {"status": experiment.get_status_display().lower()},
            code="experiment_not_startable",
        )
    if experiment.arms.count() < limits.MIN_ARMS:
        raise Conflict(gettext("An experiment needs at least two arms."), code="experiment_needs_arms")
    _refuse_beyond_plan(experiment.organization)
    experiment.status = Status.RUNNING
    experiment.started_at = experiment.started_at or timezone.now()
    experiment.ended_at = None
    experiment.save()
    record("experiments.started", organization=experiment.organization, actor=actor, api_key=api_key,
           target=experiment)
    return experiment


def _refuse_beyond_plan(organization: Organization) -> None:
    # The account lock serializes the organization's starts: two at once cannot both take the last place.
    account = lock_account(organization)
    plan = current_plan(organization, subscription=account.read_subscription)
    running = Experiment.objects.filter(organization=organization, status=Status.RUNNING).count()
    refuse_beyond_running_experiments(plan, running)


@transaction.atomic
def stop_experiment(*, experiment: Experiment, actor: Any = None, api_key: ApiKey | None = None) -> Experiment:
    """Running -> stopped: assignment stops (409), outcomes stop counting; it can start again."""
    experiment = _locked(experiment)
    if not experiment.is_running:
        raise Conflict(
            gettext("A %(status)s experiment is not running.") % {"status": experiment.get_status_display().lower()},
            code="experiment_not_running",
        )
    experiment.status = Status.STOPPED
    experiment.ended_at = timezone.now()
    experiment.save()
    record("experiments.stopped", organization=experiment.organization, actor=actor, api_key=api_key,
           target=experiment)
    return experiment


@transaction.atomic
def conclude_experiment(
    *, experiment: Experiment, reason: str = "", actor: Any = None, api_key: ApiKey | None = None
) -> Experiment:
    """Running or stopped -> concluded, with the arm most likely to be best as the winner; final.

    A concluded experiment's ``assign`` serves the winner to everyone and records nothing.
    """
    experiment = _locked(experiment)
    if experiment.status not in (Status.RUNNING, Status.STOPPED):
        raise Conflict(
            gettext("A %(status)s experiment cannot be concluded.")
            % {"status": experiment.get_status_display().lower()},
            code="experiment_not_concludable",
        )
    arms = list(experiment.arms.order_by("position"))
    analysed = stats.analyse(arm_counts(experiment, arms))
    best = max(range(len(arms)), key=lambda i: (analysed[i].prob_best, -i))
    _record_winner(experiment, arms, analysed, best)
    experiment.status = Status.CONCLUDED
    experiment.winner = arms[best]
    experiment.ended_at = timezone.now()
    experiment.concluded_reason = reason or (
        f"Concluded by hand; {arms[best].label} had a {analysed[best].prob_best:.0%} probability to be best."
    )
    experiment.save()
    record(
        "experiments.concluded", organization=experiment.organization, actor=actor, api_key=api_key,
        target=experiment, winner=arms[best].label, reason=experiment.concluded_reason,
    )
    return experiment


def _record_winner(experiment: Experiment, arms: list[Arm], analysed: list[stats.ArmStats], best: int) -> None:
    """A generated variant that won becomes an approved example with its lift; a control text has no variant."""
    winner = arms[best]
    if winner.variant_id is None:
        return
    # The baseline: the control text if one was tested, else the runner-up (next most likely to be best).
    others = [i for i in range(len(arms)) if i != best]
    controls = [i for i in others if arms[i].is_control]
    base = controls[0] if controls else max(others, key=lambda i: (analysed[i].prob_best, -i))
    won, against = analysed[best], analysed[base]
    lift = won.rate / against.rate - 1 if against.rate > 0 else None
    record_outcome_lift(
        variant=winner.variant, experiment_id=experiment.pk, lift=lift, conversions=won.conversions,
        exposures=won.exposures, baseline=arms[base].label,
    )


# --- counts, reweighting and the automatic stop ----------------------------------------------------


def arm_counts(experiment: Experiment, arms: list[Arm]) -> list[tuple[int, int]]:
    """(exposures, converted units) per arm. A unit converts once however often it does the goal event,
    and only within the attribution window (outcomes are recorded only inside it)."""
    rows = Assignment.objects.filter(experiment=experiment).values("arm_id").annotate(
        exposures=Count("id", distinct=True),
        conversions=Count("id", filter=Q(outcomes__event=experiment.goal_event), distinct=True),
    )
    by_arm = {row["arm_id"]: (row["exposures"], row["conversions"]) for row in rows}
    return [by_arm.get(arm.pk, (0, 0)) for arm in arms]


def decision(experiment: Experiment, arms: list[Arm], analysed: list[stats.ArmStats]) -> str:
    """Why the experiment should stop now, or "" while it should run on."""
    return stats.stop_reason(
        analysed, [arm.label for arm in arms], stop_probability=experiment.stop_probability,
        min_exposures=experiment.min_exposures, max_exposures=experiment.max_exposures,
    )


@transaction.atomic
def review_experiment(experiment: Experiment) -> Experiment:
    """Recompute an adaptive experiment's weights and conclude it when its stop rule holds.

    Run by beat for every running experiment (``experiments.review_running``) and when results are
    read; safe to run twice (a second run finds it concluded, or recomputes the same weights).
    """
    experiment = _locked(experiment)
    if not experiment.is_running:
        return experiment
    arms = list(experiment.arms.order_by("position"))
    counts = arm_counts(experiment, arms)
    analysed = stats.analyse(counts)
    reason = decision(experiment, arms, analysed)
    if reason:
        return conclude_experiment(experiment=experiment, reason=f"Stopped automatically: {reason}")
    if experiment.policy == Policy.ADAPTIVE:
        weights = stats.thompson_weights(
            counts, min_share=experiment.min_share, floor_until=experiment.min_exposures
        )
        for arm, weight in zip(arms, weights, strict=True):
            arm.weight = weight
        Arm.objects.bulk_update(arms, ["weight"])
        experiment.reweighted_at = timezone.now()
        experiment.save(update_fields=["reweighted_at", "updated_at"])  # a new allocation cache key
    return experiment


def review_running() -> int:
    """Review every running experiment; how many there were."""
    running = list(Experiment.objects.filter(status=Status.RUNNING).only("pk"))
    for experiment in running:
        review_experiment(experiment)
    return len(running)


# --- outcomes ------------------------------------------------------------------------------------


def _in_window(experiment: Experiment, assigned_at: datetime, occurred_at: datetime) -> bool:
    return assigned_at <= occurred_at <= assigned_at + experiment.attribution_window


def record_tracked(*, assignment: Assignment, kind: str, occurred_at: datetime | None = None) -> bool:
    """A click on a tracking link or an open (pixel); whether it was counted.

    One per assignment and kind (its event id says so): a second click is a duplicate. Only while the
    experiment runs and within the attribution window.
    """
    experiment = assignment.experiment
    occurred_at = occurred_at or timezone.now()
    if not experiment.is_running or not _in_window(experiment, assignment.created_at, occurred_at):
        return False
    _, created = Outcome.objects.get_or_create(
        experiment=experiment, event_id=f"{kind}:{assignment.pk}",
        defaults={"assignment": assignment, "event": kind, "occurred_at": occurred_at},
    )
    return created


@dataclass(frozen=True)
class UnitEvent:
    """Something a unit did, as event ingest or the outcomes API reports it."""

    unit: str
    event: str
    event_id: str
    occurred_at: datetime
    value: float = 1.0


def record_events(*, project: Project, events: Iterable[UnitEvent], experiment: Experiment | None = None) -> int:
    """Outcomes from events of units: each event of a running experiment's goal, by a unit assigned in
    it, inside the attribution window, is recorded once (by event id); how many were new.

    ``recommendations.importing.ingest`` calls this for every ingested event (a customer's external id
    is the unit); the outcomes API for one experiment's custom events.
    """
    events = list(events)
    if not events:
        return 0
    running = Experiment.objects.filter(project=project, status=Status.RUNNING)
    if experiment is not None:
        running = running.filter(pk=experiment.pk)
    experiments = list(running.filter(goal_event__in={e.event for e in events}))
    if not experiments:
        return 0
    units = {e.unit for e in events}
    outcomes = []
    for one in experiments:
        rows = Assignment.objects.filter(experiment=one, unit__in=units).only("id", "unit", "created_at")
        assigned = {a.unit: a for a in rows}
        for e in events:
            assignment = assigned.get(e.unit)
            if e.event != one.goal_event or assignment is None:
                continue
            if not _in_window(one, assignment.created_at, e.occurred_at):
                continue
            outcomes.append(Outcome(
                experiment=one, assignment=assignment, event=e.event, event_id=e.event_id,
                occurred_at=e.occurred_at, value=e.value,
            ))
    if not outcomes:
        return 0
    known = set(
        Outcome.objects.filter(
            experiment__in=experiments, event_id__in={o.event_id for o in outcomes}
        ).values_list("experiment_id", "event_id")
    )
    fresh, seen = [], set()
    for outcome in outcomes:
        key = (outcome.experiment.pk, outcome.event_id)
        if key not in known and key not in seen:  # stored before, or twice in this batch
            seen.add(key)
            fresh.append(outcome)
    # ignore_conflicts: a concurrent ingest of the same event may have stored it since the look above.
    Outcome.objects.bulk_create(fresh, ignore_conflicts=True)
    return len(fresh)


def record_outcome(
    *,
    experiment: Experiment,
    event: str,
    event_id: str,
    unit: str | None = None,
    assignment: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
    value: float = 1.0,
) -> bool:
    """One event of a unit assigned in ``experiment`` (named by its unit or assignment id); whether it
    was recorded now (not before, the goal event, inside the attribution window, while running)."""
    if unit is not None:
        unit = _text(unit, "unit", limits.MAX_UNIT_LENGTH)
    event_id = _text(event_id, "event_id", limits.MAX_EVENT_ID_LENGTH)
    if (unit is None) == (assignment is None):
        raise InvalidInput(
            gettext("Name the unit or the assignment (one of them)."), code="unit_or_assignment",
            fields={"unit": [gettext("unit or assignment")]},
        )
    found = Assignment.objects.filter(experiment=experiment)
    found = found.filter(pk=assignment) if assignment is not None else found.filter(unit=unit)
    exposure = found.only("id", "unit").first()
    if exposure is None:
        raise NotFound(
            gettext("No exposure of this unit in the experiment: call assign first."), code="assignment_not_found"
        )
    name = event_name(event, "event")
    with transaction.atomic():
        return bool(record_events(
            project=experiment.project,
            experiment=experiment,
            events=[UnitEvent(exposure.unit, name, f"api:{event_id}", occurred_at or timezone.now(), value)],
        ))
