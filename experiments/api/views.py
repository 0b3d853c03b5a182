"""The experiments API: experiments and their arms (editable while draft), start/stop/conclude, the
assignment a website or email sender asks for per unit, custom outcome events, and the results.

A ``TenantViewSet`` scoped by project: another organization's experiment is a 404.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import no_content, validated
from core.errors import Conflict, InvalidInput
from core.schema import error_response
from core.text import storable_text
from experiments import results, services, serving, tracking
from experiments.api.serializers import (
    AssignmentSerializer,
    AssignQuerySerializer,
    BulkAssignInputSerializer,
    BulkAssignmentSerializer,
    ExperimentCreateSerializer,
    ExperimentFilterSerializer,
    ExperimentSerializer,
    ExperimentSettingsSerializer,
    OutcomeInputSerializer,
    OutcomeResultSerializer,
    ResultsSerializer,
)
from experiments.models import Experiment, Status
from organizations.api.tenancy import TenantViewSet
from organizations.models import Role
from projects.api.scoping import ProjectScopedCreate

_CONFLICT = error_response("The experiment's status does not allow this (e.g. editing a running experiment).")


class ExperimentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedCreate, TenantViewSet
):
    """Copy experiments of a project: arms, policy (fixed or adaptive), goal event, stop rule."""

    queryset = Experiment.objects.select_related("winner").prefetch_related("arms")
    serializer_class = ExperimentSerializer
    project_field = "project"
    #: Serving a list is what serving one unit is (``assign`` is a GET): a read key embedded in a sender may do it.
    action_roles = {"assign_many": Role.VIEWER}

    @extend_schema(parameters=[ExperimentFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def filter_queryset(self, queryset: QuerySet[Experiment]) -> QuerySet[Experiment]:
        if self.action == "list":
            wanted = dict(validated(ExperimentFilterSerializer, self.request.query_params).validated_data)
            if "project" in wanted:
                queryset = queryset.filter(project_id=wanted["project"])
            if "status" in wanted:
                queryset = queryset.filter(status=wanted["status"])
        return queryset

    def get_base_queryset(self) -> QuerySet[Experiment]:
        if self.action in ("assign", "assign_many"):
            # The hot path reads the experiment row only: its arms come from the allocation cache.
            return Experiment.objects.only(
                "id", "organization_id", "project_id", "status", "policy", "updated_at", "winner_id",
                "target_url", "allowed_hosts",
            )
        return super().get_base_queryset()

    def _shown(self, experiment: Experiment) -> dict[str, Any]:
        return ExperimentSerializer(self.get_queryset().get(pk=experiment.pk)).data

    @extend_schema(request=ExperimentCreateSerializer, responses={201: ExperimentSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = dict(validated(ExperimentCreateSerializer, request.data).validated_data)
        project = self.project_in_scope(data.pop("project"))
        experiment = services.create_experiment(
            organization=self.tenant.organization, project=project, actor=self.actor, api_key=self.tenant.api_key,
            **data,
        )
        return Response(self._shown(experiment), status=status.HTTP_201_CREATED)

    @extend_schema(request=ExperimentSettingsSerializer, responses={200: ExperimentSerializer, 409: _CONFLICT})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._save(request, partial=False)

    @extend_schema(request=ExperimentSettingsSerializer, responses={200: ExperimentSerializer, 409: _CONFLICT})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._save(request, partial=True)

    def _save(self, request: Request, *, partial: bool) -> Response:
        experiment = self.get_object()
        data = dict(validated(ExperimentSettingsSerializer, request.data, partial=partial).validated_data)
        experiment = services.update_experiment(experiment=experiment, actor=self.actor, **data)
        return Response(self._shown(experiment))

    @extend_schema(responses={204: None, 409: _CONFLICT})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_experiment(experiment=self.get_object(), actor=self.actor, api_key=self.tenant.api_key)
        return no_content()

    # --- lifecycle --------------------------------------------------------------------------------

    @extend_schema(request=None, responses={200: ExperimentSerializer, 409: _CONFLICT})
    @action(detail=True, methods=["post"])
    def start(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Draft or stopped -> running: assign starts handing out arms."""
        experiment = services.start_experiment(
            experiment=self.get_object(), actor=self.actor, api_key=self.tenant.api_key
        )
        return Response(self._shown(experiment))

    @extend_schema(request=None, responses={200: ExperimentSerializer, 409: _CONFLICT})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Running -> stopped: no new exposures or outcomes; it can start again."""
        experiment = services.stop_experiment(
            experiment=self.get_object(), actor=self.actor, api_key=self.tenant.api_key
        )
        return Response(self._shown(experiment))

    @extend_schema(request=None, responses={200: ExperimentSerializer, 409: _CONFLICT})
    @action(detail=True, methods=["post"])
    def conclude(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Running or stopped -> concluded: the arm most likely to be best wins and is served to everyone."""
        experiment = services.conclude_experiment(
            experiment=self.get_object(), actor=self.actor, api_key=self.tenant.api_key
        )
        return Response(self._shown(experiment))

    # --- serving ----------------------------------------------------------------------------------

    @extend_schema(
        parameters=[AssignQuerySerializer],
        responses={200: AssignmentSerializer, 409: error_response("The experiment is a draft or stopped.")},
    )
    @action(detail=True, methods=["get"])
    def assign(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The unit's arm: the same one on every call while the experiment runs, recorded once as an exposure.

        A concluded experiment answers its winner to every unit and records nothing.
        """
        experiment = self.get_object()
        query = validated(AssignQuerySerializer, request.query_params).validated_data
        unit = query["unit"].strip()
        if not unit or not storable_text(unit):
            raise InvalidInput(
                gettext("%(field)s: must be a non-empty id without control characters.") % {"field": "unit"},
                code="invalid_unit", fields={"unit": ["invalid"]},
            )
        target = serving.click_target(experiment, query.get("target", ""))
        if experiment.status == Status.CONCLUDED:
            winner = serving.winner_of(experiment)
            if winner is not None:
                return Response(_assignment_body(request, experiment, winner, None, False, target))
        if not experiment.is_running:
            raise Conflict(
                gettext("The experiment is %(status)s, not running.")
                % {"status": experiment.get_status_display().lower()},
                code="experiment_not_running",
            )
        served = serving.assign(experiment, unit)
        return Response(_assignment_body(request, experiment, served.arm, served.assignment_id, served.created, target))

    @extend_schema(
        request=BulkAssignInputSerializer,
        responses={200: BulkAssignmentSerializer, 409: error_response("The experiment is a draft or stopped.")},
    )
    @action(detail=True, methods=["post"], url_path="assignments")
    def assign_many(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Assign a list of units at once (an email sender's recipients): per unit what ``assign`` answers
        for it (the same arm, the same assignment id, sticky across both), in one transaction.

        Counted as one API call under the rate limits, as one event ingest request of up to 10,000
        events is: the limits count requests, and ``units`` is capped so a request stays cheap.
        """
        experiment = self.get_object()
        data = validated(BulkAssignInputSerializer, request.data).validated_data
        units, target = _units(data["units"]), serving.click_target(experiment, data.get("target", ""))
        links = request if data["links"] else None
        if experiment.status == Status.CONCLUDED:
            winner = serving.winner_of(experiment)
            if winner is not None:
                rows = [_unit_row(links, unit, winner, None, False, target) for unit in units]
                return Response(_bulk_body(experiment, [winner], rows))
        if not experiment.is_running:
            raise Conflict(
                gettext("The experiment is %(status)s, not running.")
                % {"status": experiment.get_status_display().lower()},
                code="experiment_not_running",
            )
        served = serving.assign_many(experiment, units)
        rows = [
            _unit_row(links, unit, s.arm, s.assignment_id, s.created, target)
            for unit, s in ((unit, served[unit]) for unit in units)
        ]
        arms = list({s.arm.id: s.arm for s in served.values()}.values())
        return Response(_bulk_body(experiment, arms, rows))

    @extend_schema(
        request=OutcomeInputSerializer,
        responses={200: OutcomeResultSerializer, 404: OpenApiResponse(description="No such unit or assignment.")},
    )
    @action(detail=True, methods=["post"])
    def outcomes(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Record one event of an assigned unit (a custom goal such as ``signup``); idempotent by ``event_id``."""
        experiment = self.get_object()
        data = validated(OutcomeInputSerializer, request.data).validated_data
        recorded = services.record_outcome(experiment=experiment, **data)
        return Response(OutcomeResultSerializer({"recorded": recorded}).data)

    @extend_schema(responses=ResultsSerializer)
    @action(detail=True, methods=["get"])
    def results(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Per arm: exposures, conversions, rate with a 95% credible interval, probability to be best,
        expected loss; and what to do. Reading them also applies the automatic stop."""
        experiment = services.review_experiment(self.get_object())
        return Response(ResultsSerializer(results.summary(experiment).as_dict()).data)


def _units(units: list[str]) -> list[str]:
    """Trimmed unit ids; a blank one, or one with a NUL or a lone surrogate, is the 400 assign gives its unit."""
    cleaned = [unit.strip() for unit in units]
    for index, unit in enumerate(cleaned):
        if not unit or not storable_text(unit):  # the rule of assign's unit, so both paths take the same ids
            raise InvalidInput(
                gettext("%(field)s[%(index)s]: must be a non-empty id without a NUL character.")
                % {"field": "units", "index": index},
                code="invalid_unit", fields={"units": [f"[{index}]: invalid"]},
            )
    return cleaned


def _links(request: Request, assignment_id: Any, target: str) -> tuple[str | None, str | None]:
    """(click URL, pixel URL): signed tracking links of an exposure; without one (concluded) the plain target."""
    if assignment_id is None:
        return (target or None), None
    pixel_url = request.build_absolute_uri(
        reverse("experiments:pixel", args=[tracking.sign(assignment_id, tracking.OPEN)])
    )
    click_url = None
    if target:
        click_url = request.build_absolute_uri(
            reverse("experiments:track", args=[tracking.sign(assignment_id, tracking.CLICK, target)])
        )
    return click_url, pixel_url


def _unit_row(
    request: Request | None, unit: str, arm: serving.ServedArm, assignment_id: Any, new: bool, target: str
) -> dict[str, Any]:
    """One unit's answer; without ``request`` (the caller asked for no links) without tracking links."""
    click_url, pixel_url = _links(request, assignment_id, target) if request is not None else (None, None)
    return {
        "unit": unit, "assignment": assignment_id, "arm": arm.label, "arm_id": arm.id, "new": new,
        "click_url": click_url, "pixel_url": pixel_url,
    }


def _bulk_body(experiment: Experiment, arms: list[serving.ServedArm], rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "experiment": experiment.pk,
        "arms": [{"id": arm.id, "label": arm.label, "text": arm.text} for arm in arms],
        "assignments": rows,
    }


def _assignment_body(
    request: Request, experiment: Experiment, arm: serving.ServedArm, assignment_id: Any, new: bool, target: str
) -> dict[str, Any]:
    click_url, pixel_url = _links(request, assignment_id, target)
    return {
        "experiment": experiment.pk,
        "assignment": assignment_id,
        "arm": arm.label,
        "arm_id": arm.id,
        "text": arm.text,
        "new": new,
        "click_url": click_url,
        "pixel_url": pixel_url,
    }
