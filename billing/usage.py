"""Usage reads for the API and the dashboard: the ledger's charges grouped, and the allowance against the plan.

Usage is the ledger's ``charge`` lines (tokens in/out, compute seconds, money),
net of ``refund`` lines: what was billed, not what was held. Reservations are
holds and appear only as ``reserved_tokens`` in the allowance.

Callers pass the ledger queryset already scoped to the caller (organization, and
project for a project-restricted key); nothing here widens it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils.translation import gettext, gettext_lazy

from accounts.models import User
from apikeys.models import ApiKey
from billing.admission import remaining_tokens
from billing.ledger import AMOUNT_QUANTUM, COMPUTE_SECONDS_QUANTUM
from billing.models import BillingAccount, LedgerEntry, LedgerKind, Plan, Subscription
from billing.plans import current_period, current_plan
from core.errors import InvalidInput
from projects.models import Project

if TYPE_CHECKING:
    from organizations.models import Organization

#: How usage can be grouped (``?group_by=``).
GROUPINGS = ("day", "project", "api_key", "user")
#: Longest range one query may cover: a year of daily rows.
MAX_RANGE_DAYS = 366
USAGE_KINDS = (LedgerKind.CHARGE, LedgerKind.REFUND)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Range:
    """``[start, end)`` in UTC; ``first_day``/``last_day`` are the inclusive dates it covers."""

    start: datetime
    end: datetime

    @property
    def first_day(self) -> date:
        return self.start.astimezone(UTC).date()

    @property
    def last_day(self) -> date:
        return (self.end.astimezone(UTC) - timedelta(microseconds=1)).date()

    def days(self) -> list[date]:
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=n) for n in range(count)]


# --- input -----------------------------------------------------------------------------------------


def parse_range(organization: Organization, *, start: str | None, end: str | None) -> Range:
    """``?start=&end=``: inclusive ISO dates (UTC days). Either left out: the current billing period's.

    Raises ``InvalidInput`` (400) for a malformed date, ``end`` before ``start``,
    or a range longer than ``MAX_RANGE_DAYS``.
    """
    period_start, period_end = current_period(organization)
    first = _date(start, "start") if start else None
    last = _date(end, "end") if end else None
    range_start = _midnight(first) if first else period_start
    try:
        range_end = _midnight(last + timedelta(days=1)) if last else period_end
    except OverflowError:  # end=9999-12-31: the range runs to the end of time (and is too long, unless start is near)
        range_end = datetime.max.replace(tzinfo=UTC)
    if range_end <= range_start:
        raise InvalidInput(
            "The end date is before the start date.",
            code="invalid_range",
            fields={"end": ["Must not be before start."]},
        )
    if range_end - range_start > timedelta(days=MAX_RANGE_DAYS):
        raise InvalidInput(
            f"A usage query covers at most {MAX_RANGE_DAYS} days.",
            code="invalid_range",
            fields={"end": [f"At most {MAX_RANGE_DAYS} days after start."]},
        )
    return Range(range_start, range_end)


def parse_grouping(value: str | None) -> str:
    group_by = value or "day"
    if group_by not in GROUPINGS:
        raise InvalidInput(
            gettext("%(name)s must be one of %(choices)s.") % {"name": "group_by", "choices": ", ".join(GROUPINGS)},
            code="invalid_group_by",
            fields={"group_by": [gettext("Choose one of: %(choices)s.") % {"choices": ", ".join(GROUPINGS)}]},
        )
    return group_by


def _date(value: str, field: str) -> date:
    # date.fromisoformat alone would also take "20260131" and week dates; the API promises YYYY-MM-DD.
    try:
        if not _ISO_DATE.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        message = gettext("%(field)s must be a date like 2026-01-31.") % {"field": field}
        raise InvalidInput(message, code="invalid_date", fields={field: [message]}) from None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- grouped usage ---------------------------------------------------------------------------------


_SUMS = {
    "tokens_in": Coalesce(Sum("tokens_in"), 0),
    "tokens_out": Coalesce(Sum("tokens_out"), 0),
    "tokens": Coalesce(Sum("tokens"), 0),
    "compute_seconds": Coalesce(Sum("compute_seconds"), Decimal("0")),
    "amount": Coalesce(Sum("amount"), Decimal("0")),
    "jobs": Count("job", distinct=True, filter=Q(kind=LedgerKind.CHARGE)),
}
_GROUP_FIELDS: dict[str, Any] = {
    "day": TruncDate("created_at", tzinfo=UTC),
    "project": F("project_id"),
    "api_key": F("api_key_id"),
    "user": F("user_id"),
}


def usage_lines(entries: QuerySet[LedgerEntry], period: Range) -> QuerySet[LedgerEntry]:
    """The usage lines (charges and refunds) of ``entries`` inside ``period``."""
    return entries.filter(kind__in=USAGE_KINDS, created_at__gte=period.start, created_at__lt=period.end)


def grouped(
    organization: Organization, entries: QuerySet[LedgerEntry], period: Range, group_by: str
) -> list[dict[str, Any]]:
    """One row per day (every day of the range, zeros included), project, key or user, largest first
    for the last three. ``group`` is the date or id (None: no project / no key / no user), ``label``
    what to show for it."""
    rows = (
        usage_lines(entries, period)
        .annotate(group=_GROUP_FIELDS[group_by])
        .values("group")
        .annotate(**_SUMS)
        .order_by("group")
    )
    by_group = {row["group"]: _row(row) for row in rows}
    if group_by == "day":
        return [by_group.get(day) or _row({"group": day}) for day in period.days()]
    labels = _labels(organization, group_by, [g for g in by_group if g is not None])
    result = []
    for key, row in by_group.items():
        row["label"] = labels.get(key, gettext("Deleted")) if key is not None else str(_NO_GROUP_LABEL[group_by])
        result.append(row)
    return sorted(result, key=lambda r: (-r["tokens"], r["label"]))


def totals(entries: QuerySet[LedgerEntry], period: Range) -> dict[str, Any]:
    row = _row({"group": None, **usage_lines(entries, period).aggregate(**_SUMS)})
    del row["group"], row["label"]
    return row


_NO_GROUP_LABEL = {
    "project": gettext_lazy("No project"),
    "api_key": gettext_lazy("No API key (signed-in members)"),
    "user": gettext_lazy("API keys (no user)"),
}


def _labels(organization: Organization, group_by: str, ids: list[Any]) -> dict[Any, str]:
    """Names for the grouped ids. Projects and keys are looked up within the organization; users
    by id alone, since someone who has left still made the organization's past calls."""
    if not ids:
        return {}
    if group_by == "project":
        return dict(Project.objects.filter(pk__in=ids, organization=organization).values_list("pk", "name"))
    if group_by == "api_key":
        keys = ApiKey.objects.filter(pk__in=ids, organization=organization)
        return {key.pk: f"{key.name} ({key.masked})" for key in keys}
    return dict(User.objects.filter(pk__in=ids).values_list("pk", "email"))


def _row(values: dict[str, Any]) -> dict[str, Any]:
    group = values.get("group")
    return {
        "group": group,
        "label": group.isoformat() if isinstance(group, date) else "",
        "tokens_in": int(values.get("tokens_in") or 0),
        "tokens_out": int(values.get("tokens_out") or 0),
        "tokens": int(values.get("tokens") or 0),
        "compute_seconds": Decimal(values.get("compute_seconds") or 0).quantize(COMPUTE_SECONDS_QUANTUM),
        "amount": Decimal(values.get("amount") or 0).quantize(AMOUNT_QUANTUM),
        "jobs": int(values.get("jobs") or 0),
    }


# --- the allowance -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowance:
    """The organization's current period against its plan. Read without locking or writing anything."""

    plan: Plan
    period_start: datetime
    period_end: datetime
    included_tokens: int
    credit_tokens: int
    used_tokens: int
    reserved_tokens: int
    remaining_tokens: int  # never below zero; overage_tokens says by how much it was overshot
    overage_tokens: int
    overage_amount: Decimal  # money of this period's usage lines so far (token overage and compute)
    pending_plan: Plan | None
    status: str

    @property
    def percent_used(self) -> int:
        """Used and reserved tokens as a share of the allowance (0-100, for a progress bar)."""
        allowance = self.included_tokens + self.credit_tokens
        if allowance <= 0:
            return 100 if self.used_tokens + self.reserved_tokens else 0
        return min(round(100 * (self.used_tokens + self.reserved_tokens) / allowance), 100)


def allowance(organization: Organization) -> Allowance:
    """What the plan includes this period, what is used, held and left, and the money so far.

    Mirrors the rollover ``billing.admission.lock_account`` applies on its next write: an account
    still on a finished period counts as a fresh period here.
    """
    plan = current_plan(organization)
    start, end = current_period(organization)
    account = BillingAccount.objects.filter(organization=organization).first()
    if account is None:
        account = BillingAccount(organization=organization, period_start=start)
    elif account.period_start < start:
        spent_credits = max(account.tokens_used_in_period - plan.included_tokens, 0)
        account.credit_tokens -= min(spent_credits, account.credit_tokens)
        account.tokens_used_in_period = 0
    left = remaining_tokens(account, plan)
    money = LedgerEntry.objects.filter(
        organization=organization, kind__in=USAGE_KINDS, created_at__gte=start, created_at__lt=end
    ).aggregate(total=Coalesce(Sum("amount"), Decimal("0")))["total"]
    subscription = Subscription.objects.select_related("pending_plan").filter(organization=organization).first()
    return Allowance(
        plan=plan,
        period_start=start,
        period_end=end,
        included_tokens=plan.included_tokens,
        credit_tokens=account.credit_tokens,
        used_tokens=account.tokens_used_in_period,
        reserved_tokens=account.tokens_reserved,
        remaining_tokens=max(left, 0),
        overage_tokens=max(account.tokens_used_in_period - plan.included_tokens - account.credit_tokens, 0),
        overage_amount=Decimal(money).quantize(AMOUNT_QUANTUM),
        pending_plan=subscription.pending_plan if subscription is not None else None,
        status=subscription.status if subscription is not None else "active",
    )


def plan_limits(plan: Plan) -> dict[str, Any]:
    """A plan as the API shows it: prices as decimal strings, limits as numbers."""
    return {
        "code": plan.code,
        "name": plan.name,
        "monthly_price": str(plan.monthly_price),
        "included_tokens": plan.included_tokens,
        "price_per_1k_tokens": str(plan.price_per_1k_tokens),
        "price_per_gpu_second": str(plan.price_per_gpu_second),
        "overage_allowed": plan.overage_allowed,
        "max_concurrent_jobs": plan.max_concurrent_jobs,
        "max_variants_per_job": plan.max_variants_per_job,
        "max_members": plan.max_members,
        "max_running_experiments": plan.max_running_experiments,
        "api_rate_limit_per_minute": plan.api_rate_limit_per_minute,
        "org_rate_limit_per_minute": plan.org_rate_limit_per_minute,
    }


# --- daily series for charts -----------------------------------------------------------------------

#: Series a chart draws before folding the smaller ones into "Other" (more colours stop being readable).
CHART_SERIES = 6


@dataclass(frozen=True)
class Series:
    label: str
    per_day: list[int]  # tokens, aligned with the range's days; refunds never drive a day below zero
    total: int
    other: bool = False  # the folded tail, drawn grey (its label is translated, so not recognisable by text)


def daily_breakdown(
    organization: Organization, entries: QuerySet[LedgerEntry], period: Range, group_by: str
) -> list[Series]:
    """Tokens per day of ``period`` for each project / key / user, largest first, the tail as "Other"."""
    days = period.days()
    index = {day: n for n, day in enumerate(days)}
    rows = (
        usage_lines(entries, period)
        .annotate(day=_GROUP_FIELDS["day"], group=_GROUP_FIELDS[group_by])
        .values("day", "group")
        .annotate(tokens=Coalesce(Sum("tokens"), 0))
        .order_by()
    )
    per_group: dict[Any, list[int]] = {}
    for row in rows:
        series = per_group.setdefault(row["group"], [0] * len(days))
        series[index[row["day"]]] += int(row["tokens"])
    ranked = sorted(per_group.items(), key=lambda item: -sum(item[1]))
    labels = _labels(organization, group_by, [key for key, _ in ranked if key is not None])
    shown, rest = ranked[: CHART_SERIES - 1], ranked[CHART_SERIES - 1 :]
    if len(rest) == 1:
        shown, rest = ranked, []
    result = [
        Series(
            label=labels.get(key, gettext("Deleted")) if key is not None else str(_NO_GROUP_LABEL[group_by]),
            per_day=[max(v, 0) for v in values],
            total=sum(values),
        )
        for key, values in shown
    ]
    if rest:
        other = [sum(values[n] for _, values in rest) for n in range(len(days))]
        result.append(Series(
            label=gettext("Other (%(count)s)") % {"count": len(rest)},
            per_day=[max(v, 0) for v in other], total=sum(other), other=True,
        ))
    return result
