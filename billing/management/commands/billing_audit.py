"""``manage.py billing_audit``: check the ledger against the jobs; exit 1 when anything is wrong."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.integrity import audit_billing
from organizations.models import Organization


class Command(BaseCommand):
    help = (
        "Audit billing integrity: lost or stuck jobs, duplicate ledger lines, negative balances, counters that "
        "drifted from the ledger, and charges that disagree with job states. Exits 1 if anything is found."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--organization", action="append", default=[], metavar="SLUG", help="Only this organization (repeatable)."
        )
        parser.add_argument(
            "--accepted-jobs",
            metavar="FILE",
            help="A file of job ids a client saw accepted (one per line, '-' for stdin); each must exist and be final.",
        )
        parser.add_argument(
            "--stuck-after",
            type=float,
            default=30.0,
            metavar="MINUTES",
            help="An unfinished job older than this is reported as stuck (default 30; 0 once the queue is drained; "
            "negative to skip).",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        organizations = None
        if options["organization"]:
            found = dict(Organization.objects.filter(slug__in=options["organization"]).values_list("slug", "pk"))
            missing = sorted(set(options["organization"]) - set(found))
            if missing:
                raise CommandError(f"No organization with slug: {', '.join(missing)}")
            organizations = list(found.values())
        accepted = _read_ids(options["accepted_jobs"]) if options["accepted_jobs"] else None
        stuck_after = None if options["stuck_after"] < 0 else timedelta(minutes=options["stuck_after"])
        report = audit_billing(organizations=organizations, accepted_job_ids=accepted, stuck_after=stuck_after)
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            for line in report.lines():
                self.stdout.write(line)
        if not report.ok:
            # A non-zero status for cron and CI; SystemExit rather than CommandError keeps the report the last word.
            sys.exit(1)


def _read_ids(source: str) -> list[str]:
    text = sys.stdin.read() if source == "-" else _read_file(source)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc}") from exc
