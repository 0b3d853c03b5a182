"""Reading a campaign's per-customer results: progress, the generated copy, and the CSV export."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from core import progress as progress_counts
from core.csvfiles import spreadsheet_safe
from core.progress import Progress
from generation.models import FINAL_STATUSES, JobStatus, Variant
from recommendations.models import Campaign, CampaignRecipient
from recommendations.services import current_variants, needs_rewrite, regeneration_pending

#: A recipient whose job was refused at submission (its ``error`` says why).
NOT_QUEUED = "not_queued"
#: Recipients whose copy is being regenerated (it named none of their items); they are counted in their
#: job's status too.
REGENERATING = "regenerating"


#: How a campaign's progress card words each status (core/_progress_card.html).
STATUS_LABELS = (
    (JobStatus.SUCCEEDED, "written", "text-success"),
    (JobStatus.FAILED, "failed", "text-danger"),
    (NOT_QUEUED, "refused", "text-danger"),
    (JobStatus.RUNNING, "running", ""),
    (JobStatus.QUEUED, "queued", ""),
    (REGENERATING, "being rewritten", ""),
)


def status_counts(campaign: Campaign) -> dict[str, int]:
    """Recipients per job status, every status present, plus those that got no job."""
    result = progress_counts.status_counts(
        campaign.recipients.filter(job__isnull=False), JobStatus.values, field_name="job__status"
    )
    result[NOT_QUEUED] = campaign.recipients.filter(job__isnull=True).count()
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
        counts, final=frozenset([*FINAL_STATUSES, NOT_QUEUED]), pending=frozenset([REGENERATING]), labels=STATUS_LABELS
    )


@dataclass(frozen=True)
class RecipientResult:
    recipient: CampaignRecipient
    status: str
    text: str
    mentioned: list[str]

    @property
    def customer(self) -> Any:
        return self.recipient.customer


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
    out = []
    for row in rows:
        text = (edited.get(row.job_id) or texts.get(row.job_id, "")) if row.job_id else ""
        status = row.job.status if row.job_id else NOT_QUEUED
        out.append(RecipientResult(recipient=row, status=status, text=text, mentioned=row.mentioned(text)))
    return out


def results_csv(campaign: Campaign) -> str:
    """One line per customer: their items, the job's status, the copy and which items it names."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["customer", "country", "recommended_items", "status", "job_id", "error", "copy", "mentioned_items"]
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
        ]
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
    for skipped in campaign.skipped:
        writer.writerow(
            [spreadsheet_safe(c) for c in (skipped.get("customer", ""), "", "", "skipped", "", skipped.get("reason"))]
        )
    return out.getvalue()
