"""Bulk generation from a CSV file: one job per row.

The file's header names the template's variables (one column each, any order,
case-insensitive). A problem with the file itself (encoding, delimiter, columns,
size) refuses the whole file and writes nothing; a problem with one row is
reported with its line number and never stops the good rows.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext, gettext_lazy, ngettext

from billing.errors import VariantLimitExceeded
from core import progress as progress_counts
from core.csvfiles import decode_csv, file_error, spreadsheet_safe
from core.errors import InvalidInput, NotFound
from core.text import clean_filename, shown
from generation import adapters, registry, services
from generation.limits import BULK_MAX_BYTES, bulk_max_rows
from generation.models import FINAL_STATUSES, BulkBatch, JobStatus, TemplateVersion, Variant

if TYPE_CHECKING:
    from apikeys.models import ApiKey
    from organizations.models import Organization
    from projects.models import Project

#: Delimiters spreadsheets export instead of commas (Excel in many European locales writes ``;``).
_OTHER_DELIMITERS = {";": gettext_lazy("semicolons (;)"), "\t": gettext_lazy("tabs"), "|": gettext_lazy("pipes (|)")}

Row = tuple[int, dict[str, Any]]
RowError = dict[str, Any]


def parse_bulk_csv(version: TemplateVersion, data: bytes) -> tuple[list[Row], list[RowError]]:
    """The file's rows as ``(line, inputs)`` and its bad rows as ``{"line": n, "errors": [...]}``.

    Line numbers are the file's own (the header is line 1), as a spreadsheet shows them.
    Raises ``InvalidInput`` for a problem with the whole file.
    """
    if len(data) > BULK_MAX_BYTES:
        raise file_error(
            gettext("The file is %(size)s MB; at most %(limit)s MB.")
            % {"size": f"{len(data) / 1024 / 1024:.1f}", "limit": BULK_MAX_BYTES // 1024 // 1024},
            "file_too_large",
        )
    text = decode_csv(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise file_error(gettext("The file is empty; its first line must name the columns."), "empty_file")
        columns = _columns(version, header, first_line=text.splitlines()[0] if text else "")
        rows: list[Row] = []
        errors: list[RowError] = []
        line = reader.line_num
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank lines separate nothing
            if len(rows) + len(errors) >= bulk_max_rows():
                raise file_error(
                    gettext("The file has more than %(limit)s rows; split it into several files.")
                    % {"limit": bulk_max_rows()},
                    "too_many_rows",
                )
            inputs, problems = _row_inputs(version, columns, cells, len(header))
            if not problems:
                try:
                    rows.append((start, services.validate_inputs(version, inputs)))
                    continue
                except InvalidInput as exc:
                    problems = _messages(exc)
            errors.append({"line": start, "errors": problems})
    except csv.Error as exc:
        raise file_error(
            gettext("Line %(line)s: the CSV cannot be read (%(error)s).") % {"line": reader.line_num, "error": exc},
            "invalid_csv",
        ) from None
    if not rows and not errors:
        raise file_error(gettext("The file has a header but no rows."), "no_rows")
    return rows, errors


def _columns(version: TemplateVersion, header: list[str], *, first_line: str) -> dict[int, str]:
    """Column index -> variable name. Unnamed columns (trailing commas) are ignored."""
    declared = {spec["name"].casefold(): spec["name"] for spec in version.variables}
    expected = ", ".join(spec["name"] for spec in version.variables)
    names = [cell.strip() for cell in header]
    matched = {i: declared[name.casefold()] for i, name in enumerate(names) if name.casefold() in declared}
    if not matched:
        for delimiter, label in _OTHER_DELIMITERS.items():
            if delimiter in first_line:
                raise file_error(
                    gettext(
                        "The file seems to use %(delimiter)s as its delimiter; this upload needs commas (,). "
                        "Save it comma-separated with the columns: %(expected)s."
                    ) % {"delimiter": label, "expected": expected},
                    "wrong_delimiter",
                )
    unknown = [name for i, name in enumerate(names) if name and i not in matched]
    if unknown:
        raise file_error(
            ngettext(
                "Unknown column: %(names)s. This template's columns are: %(expected)s.",
                "Unknown columns: %(names)s. This template's columns are: %(expected)s.",
                len(unknown),
            ) % {"names": ", ".join(shown(n) for n in unknown), "expected": expected},
            "unknown_columns",
        )
    twice = sorted(name for name, n in Counter(matched.values()).items() if n > 1)
    if twice:
        raise file_error(
            ngettext("Column named twice: %(names)s.", "Columns named twice: %(names)s.", len(twice))
            % {"names": ", ".join(twice)},
            "duplicate_columns",
        )
    required = [
        spec["name"]
        for spec in version.variables
        if spec.get("required", True) and spec.get("default") is None and spec["name"] not in matched.values()
    ]
    if required:
        raise file_error(
            ngettext(
                "Missing required column: %(names)s. This template's columns are: %(expected)s.",
                "Missing required columns: %(names)s. This template's columns are: %(expected)s.",
                len(required),
            ) % {"names": ", ".join(required), "expected": expected},
            "missing_columns",
        )
    return matched


def _row_inputs(
    version: TemplateVersion, columns: dict[int, str], cells: list[str], width: int
) -> tuple[dict[str, Any], list[str]]:
    if len(cells) > width and any(cell.strip() for cell in cells[width:]):
        return {}, [
            gettext("the row has %(cells)s cells but the header has %(columns)s columns (a stray comma?)")
            % {"cells": len(cells), "columns": width}
        ]
    inputs: dict[str, Any] = {}
    for index, name in columns.items():
        value = cells[index].strip() if index < len(cells) else ""
        if not value:
            continue  # the variable's default, or "required"
        spec = version.variable(name) or {}
        inputs[name] = _number(value) if spec.get("type") == "number" else value
    return inputs, []


def _number(value: str) -> Any:
    """A cell of a number variable as a number; text that is none stays text (and is reported)."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def _messages(exc: InvalidInput) -> list[str]:
    if not exc.fields:
        return [exc.detail]
    return [
        f"{field.removeprefix('inputs.')}: {message}" for field, messages in exc.fields.items() for message in messages
    ]


@transaction.atomic
def create_bulk_batch(
    *,
    organization: Organization,
    project: Project,
    version: TemplateVersion,
    data: bytes,
    filename: str,
    params: dict[str, Any],
    actor: Any,
    api_key: ApiKey | None,
) -> BulkBatch:
    """One batch and one queued job per good row, in one transaction; a file-level problem writes nothing."""
    if project.organization_id != organization.pk:
        raise NotFound(gettext("Project not found."), code="project_not_found")
    rows, row_errors = parse_bulk_csv(version, data)
    # A bad parameter (or a model it may not use) is the whole file's problem, not each row's.
    model = registry.model_for_job(
        organization=organization, project=project, template=version.template, requested=params.get("model")
    )
    services.validate_parameters(version, params, model)
    services.job_language(project, params.get("language"))
    adapters.adapter_for_job(project=project, model=model, params=params)
    if not rows:
        raise InvalidInput(
            gettext(
                "No row of the file can be used; %(count)s rows have errors, the first on line %(line)s: %(error)s"
            ) % {"count": len(row_errors), "line": row_errors[0]["line"], "error": row_errors[0]["errors"][0]},
            code="no_valid_rows",
            fields={f"line {e['line']}": e["errors"] for e in row_errors[:100]},
        )
    batch = BulkBatch.objects.create(
        organization=organization,
        project=project,
        template_version=version,
        filename=clean_filename(filename),
        total_rows=len(rows) + len(row_errors),
        row_errors=row_errors,
        created_by=actor if getattr(actor, "pk", None) else None,
        api_key=api_key,
    )
    late_errors = []
    for line, inputs in rows:
        try:
            services.submit_generation(
                organization=organization,
                project=project,
                version=version,
                inputs=inputs,
                params=params,
                actor=actor,
                api_key=api_key,
                batch=batch,
                batch_line=line,
            )
        except VariantLimitExceeded:
            raise  # the plan's limit is the whole file's problem: nothing of the batch is kept
        except InvalidInput as exc:  # validated above; kept so one row can never sink the batch
            late_errors.append({"line": line, "errors": _messages(exc)})
    if late_errors:
        batch.row_errors = sorted(row_errors + late_errors, key=lambda e: e["line"])
        batch.save(update_fields=["row_errors"])
    return batch


#: How a batch's progress card words each status (core/_progress_card.html).
STATUS_LABELS = (
    (JobStatus.SUCCEEDED, gettext_lazy("succeeded"), "text-success"),
    (JobStatus.FAILED, gettext_lazy("failed"), "text-danger"),
    (JobStatus.CANCELED, gettext_lazy("canceled"), ""),
    (JobStatus.RUNNING, gettext_lazy("running"), ""),
    (JobStatus.QUEUED, gettext_lazy("queued"), ""),
)


def status_counts(batch: BulkBatch) -> dict[str, int]:
    """Jobs of the batch per status, every status present (from ``with_status_counts`` when annotated)."""
    annotated = progress_counts.annotated_counts(batch, "jobs", JobStatus.values)
    return annotated if annotated is not None else progress_counts.status_counts(batch.jobs.all(), JobStatus.values)


def with_status_counts(batches: QuerySet[BulkBatch]) -> QuerySet[BulkBatch]:
    """Batches annotated with their job counts per status: one query for a whole page of batches."""
    return progress_counts.annotate_status_counts(batches, "jobs", JobStatus.values)


def progress(batch: BulkBatch) -> progress_counts.Progress:
    return progress_counts.Progress(status_counts(batch), final=frozenset(FINAL_STATUSES), labels=STATUS_LABELS)


#: The fact check's counts (generation.factcheck) over a row's variants, and their columns.
FACT_COUNTS = ("supported", "unsupported_hard", "unsupported_soft")
FACT_COLUMNS = ["facts_supported", "facts_unsupported", "facts_flagged"]


def batch_results_csv(batch: BulkBatch) -> str:
    """One line per row of the uploaded file: its status, why it failed, and each variant's text."""
    variable_names = [spec["name"] for spec in batch.template_version.variables]
    jobs = list(batch.jobs.order_by("batch_line"))
    current: dict[Any, list[Variant]] = {}
    for variant in Variant.objects.filter(job__batch=batch, is_current=True).order_by("index"):
        current.setdefault(variant.job_id, []).append(variant)
    width = max((job.num_variants for job in jobs), default=0)
    lines: list[tuple[int, list[Any]]] = []
    for job in jobs:
        variants = current.get(job.pk, [])
        # A row with variants is padded to the widest, so its fact counts line up under their columns.
        texts = [v.final_text for v in variants] + [""] * (width - len(variants)) if variants else []
        inputs = [job.inputs.get(name, "") for name in variable_names]
        facts = [sum((v.fact_check or {}).get(key, 0) for v in variants) for key in FACT_COUNTS] if variants else []
        lines.append(
            (
                job.batch_line or 0,
                [job.batch_line, job.status, str(job.pk), *inputs, job.failure_reason, *texts, *facts],
            )
        )
    for error in batch.row_errors:
        blank = [""] * len(variable_names)
        lines.append((error["line"], [error["line"], "rejected", "", *blank, "; ".join(error["errors"])]))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "line", "status", "job_id", *variable_names, "error", *(f"variant_{i + 1}" for i in range(width)),
            *FACT_COLUMNS,
        ]
    )
    for _, cells in sorted(lines, key=lambda item: item[0]):
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
    return out.getvalue()
