"""Reading a campaign's per-customer results: progress, the generated copy (or, for an experiment
campaign, the arm's copy and the customer's tracking links), and the CSV export."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy

from core import progress as progress_counts
from core.csvfiles import spreadsheet_safe
from core.progress import Progress
from experiments import tracking
from generation.models import FINAL_STATUSES, JobStatus, Variant
from recommendations.models import Campaign, CampaignRecipient
from recommendations.services import current_variants, needs_rewrite, regeneration_pending

#: A recipient whose job was refused at submission (its ``error`` says why).
NOT_QUEUED = "not_queued"
#: Recipients whose copy is being regenerated (it named none of their items); they are counted in their
#: job's status too.
REGENERATING = "regenerating"
#: A recipient of an experiment campaign: their copy is their arm's text, nothing to write.
ASSIGNED = "assigned"


#: How a campaign's progress card words each status (core/_progress_card.html).
STATUS_LABELS = (
    (JobStatus.SUCCEEDED, gettext_lazy("written"), "text-success"),
    (JobStatus.FAILED, gettext_lazy("failed"), "text-danger"),
    (NOT_QUEUED, gettext_lazy("refused"), "text-danger"),
    (ASSIGNED, gettext_lazy("assigned an arm"), "text-success"),
    (JobStatus.RUNNING, gettext_lazy("running"), ""),
    (JobStatus.QUEUED, gettext_lazy("queued"), ""),
    (REGENERATING, gettext_lazy("being rewritten"), ""),
)


def status_counts(campaign: Campaign) -> dict[str, int]:
    """Recipients per job status, every status present, plus those that got no job (refused, or
    assigned an experiment's arm)."""
    result = progress_counts.status_counts(
        campaign.recipients.filter(job__isnull=False), JobStatus.values, field_name="job__status"
    )
    result[NOT_QUEUED] = campaign.recipients.filter(job__isnull=True, arm_label="").count()
    result[ASSIGNED] = campaign.recipients.filter(job__isnull=True).exclude(arm_label="").count()
    return result


def progress(campaign: Campaign) -> Progress:
    """Counts per status, plus the customers whose copy is (or is about to be) rewritten: a campaign is
    finished only once no copy that names none of the items is waiting for its rewrite."""
    counts = status_counts(campaign)
    now = timezone.now()
    rows = list(campaign.recipients.filter(job__status=JobStatus.SUCCEEDED).select_related("job"))
    variants = current_variants(rows)
    counts[REGENERATING] = sum(
        1
        for r in rows
        if regeneration_pending(r, variants.get(r.job_id), now) or needs_rewrite(r, variants.get(r.job_id))
    )
    return Progress(
        counts,
        final=frozenset([*FINAL_STATUSES, NOT_QUEUED, ASSIGNED]),
        pending=frozenset([REGENERATING]),
        labels=STATUS_LABELS,
    )


@dataclass(frozen=True)
class RecipientResult:
    recipient: CampaignRecipient
    status: str
    text: str
    mentioned: list[str]
    #: The copy's fact check (generation.factcheck): its claims, and how many are supported, unsupported
    #: (numeric: the copy fails its facts check) and flagged (names and statements). Empty before it is written.
    fact_check: dict[str, Any] = field(default_factory=dict)
    #: An experiment campaign's tracking links for this customer (empty otherwise): the click link
    #: records a click and forwards to the campaign's landing URL, the pixel records an open.
    click_url: str = ""
    pixel_url: str = ""

    @property
    def arm(self) -> str:
        return self.recipient.arm_label

    @property
    def facts_supported(self) -> int | None:
        return self.fact_check.get("supported") if self.fact_check else None

    @property
    def facts_unsupported(self) -> int | None:
        return self.fact_check.get("unsupported_hard") if self.fact_check else None

    @property
    def facts_flagged(self) -> int | None:
        return self.fact_check.get("unsupported_soft") if self.fact_check else None

    @property
    def customer(self) -> Any:
        return self.recipient.customer


def tracking_links(recipient: CampaignRecipient, landing_url: str) -> tuple[str, str]:
    """(click link, open pixel) of an experiment campaign's customer, absolute on ``SITE_URL``: an
    email sender puts them in the message, far from any request of ours. Signed tokens, so the
    same links come back on every read (nothing stored)."""
    if recipient.assignment_id is None:
        return "", ""
    site = settings.SITE_URL.rstrip("/")
    pixel = site + reverse("experiments:pixel", args=[tracking.sign(recipient.assignment_id, tracking.OPEN)])
    click = (
        site + reverse("experiments:track", args=[tracking.sign(recipient.assignment_id, tracking.CLICK, landing_url)])
        if landing_url
        else ""
    )
    return click, pixel


def recipients(campaign: Campaign) -> QuerySet[CampaignRecipient]:
    return campaign.recipients.select_related("customer", "job").order_by("customer__external_id")


def results(rows: Any) -> list[RecipientResult]:
    """Each recipient with its job's status, the copy (the current first variant) and the items it names."""
    rows = list(rows)
    texts = dict(
        Variant.objects.filter(job_id__in=[r.job_id for r in rows if r.job_id], index=0, is_current=True).values_list(
            "job_id", "text"
        )
    )
    edited = dict(
        Variant.objects.filter(job_id__in=[r.job_id for r in rows if r.job_id], index=0, is_current=True)
        .exclude(edited_text="")
        .values_list("job_id", "edited_text")
    )
    facts = dict(
        Variant.objects.filter(job_id__in=[r.job_id for r in rows if r.job_id], index=0, is_current=True).values_list(
            "job_id", "fact_check"
        )
    )
    out = []
    for row in rows:
        if row.arm_label:
            # The campaign is the one the rows were read from (the related manager caches it): no query.
            click, pixel = tracking_links(row, row.campaign.landing_url)
            text, status = row.arm_text, ASSIGNED
        else:
            click = pixel = ""
            text = (edited.get(row.job_id) or texts.get(row.job_id, "")) if row.job_id else ""
            status = row.job.status if row.job_id else NOT_QUEUED
        out.append(
            RecipientResult(
                recipient=row, status=status, text=text, mentioned=row.mentioned(text),
                fact_check=(facts.get(row.job_id) or {}) if row.job_id else {},
                click_url=click, pixel_url=pixel,
            )
        )
    return out


def results_csv(campaign: Campaign) -> str:
    """One line per customer: their items, the job's status, the copy and which items it names."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "customer", "country", "recommended_items", "status", "job_id", "error", "copy", "mentioned_items",
            "facts_supported", "facts_unsupported", "facts_flagged", "arm", "assignment_id", "click_url", "pixel_url",
        ]
    )
    for result in results(recipients(campaign)):
        recipient = result.recipient
        error = recipient.error or (recipient.job.failure_reason if recipient.job_id else "")
        cells = [
            recipient.customer.external_id,
            recipient.customer.country,
            "; ".join(recipient.item_titles()),
            result.status,
            str(recipient.job_id or ""),
            error,
            result.text,
            "; ".join(result.mentioned),
            *("" if n is None else n for n in (result.facts_supported, result.facts_unsupported, result.facts_flagged)),
            result.arm,
            str(recipient.assignment_id or ""),
            result.click_url,
            result.pixel_url,
        ]
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
    for skipped in campaign.skipped:
        writer.writerow(
            [spreadsheet_safe(c) for c in (skipped.get("customer", ""), "", "", "skipped", "", skipped.get("reason"))]
        )
    return out.getvalue()
