"""How far a group of jobs has come (a bulk batch, a campaign): counts per status, one query.

Both the API (``status_counts`` fields) and the dashboard's live progress card
(``templates/core/_progress_card.html``) read a ``Progress``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet


def status_counts(rows: QuerySet, statuses: Iterable[str], field_name: str = "status") -> dict[str, int]:
    """Rows per status, every status present (0 when none)."""
    counts = dict(rows.order_by().values_list(field_name).annotate(n=Count("pk")))
    return {status: counts.get(status, 0) for status in statuses}


def annotate_status_counts(groups: QuerySet, relation: str, statuses: Iterable[str]) -> QuerySet:
    """Groups annotated ``<relation>_<status>`` with their related rows per status: one query for a page."""
    return groups.annotate(
        **{f"{relation}_{status}": Count(relation, filter=Q(**{f"{relation}__status": status})) for status in statuses}
    )


def annotated_counts(group: object, relation: str, statuses: Iterable[str]) -> dict[str, int] | None:
    """The counts ``annotate_status_counts`` put on ``group``; None when it was not annotated."""
    names = {status: f"{relation}_{status}" for status in statuses}
    if not all(hasattr(group, name) for name in names.values()):
        return None
    return {status: getattr(group, name) for status, name in names.items()}


@dataclass(frozen=True)
class Progress:
    counts: dict[str, int]
    #: The statuses that count as done.
    final: frozenset[str]
    #: Counts shown beside the others but not a share of the total (rows also counted in a status,
    #: e.g. copy being rewritten): while any is non-zero the group is not finished.
    pending: frozenset[str] = frozenset()
    #: (status, words, CSS class) in the order the card lists them.
    labels: tuple[tuple[str, str, str], ...] = field(default=())

    @property
    def total(self) -> int:
        return sum(n for status, n in self.counts.items() if status not in self.pending)

    @property
    def done(self) -> int:
        return sum(self.counts.get(status, 0) for status in self.final)

    @property
    def finished(self) -> bool:
        return self.done == self.total and not any(self.counts.get(status) for status in self.pending)

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 100

    @property
    def parts(self) -> list[tuple[int, str, str]]:
        """(count, words, CSS class) of each non-zero status, for the card's summary line."""
        return [(self.counts[s], words, css) for s, words, css in self.labels if self.counts.get(s)]
