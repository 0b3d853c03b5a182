"""Dashboard pages for invoices: the list, one invoice as printable HTML, and its PDF.

Invoices are for the organization's admins and owner, as billing is in most
SaaS: editors and viewers get 403. Every lookup goes through ``_invoices``,
scoped to the current organization, so another organization's invoice is a 404.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from billing import payments
from billing.models import Invoice
from billing.pdf import render_invoice_pdf
from organizations.models import Role
from organizations.tenancy import scoped, scoped_or_404, tenant_required

#: Invoices per page: two years of monthly invoices.
INVOICES_PAGE_SIZE = 24


def _invoice(request: HttpRequest, pk: Any) -> Invoice:
    return scoped_or_404(request, Invoice.objects.prefetch_related("lines"), pk=pk)


@tenant_required(Role.ADMIN)
def invoice_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(scoped(request, Invoice).order_by("-issued_at", "-number"), INVOICES_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(request, "billing/invoice_list.html", {"page": page, "stripe_enabled": payments.enabled()})


@tenant_required(Role.ADMIN)
def invoice_detail(request: HttpRequest, pk: Any) -> HttpResponse:
    return render(request, "billing/invoice_detail.html", {"invoice": _invoice(request, pk)})


@tenant_required(Role.ADMIN)
def invoice_pdf(request: HttpRequest, pk: Any) -> HttpResponse:
    invoice = _invoice(request, pk)
    return pdf_response(invoice)


def pdf_response(invoice: Invoice) -> HttpResponse:
    """The invoice's PDF as a download named after its number (shared with the API)."""
    response = HttpResponse(render_invoice_pdf(invoice), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{invoice.pdf_filename}"'
    response["Cache-Control"] = "private, no-store"
    return response
