"""``/api/v1/invoices/``: an organization's invoices, read-only, with each one's PDF.

Billing is for admins and the owner, as on the dashboard; API keys (at most
editors) cannot read invoices. Money is a decimal string, never a float.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.request import Request

from billing.invoice_views import pdf_response
from billing.models import Invoice, InvoiceLine
from core.api import download_negotiation
from organizations.api.tenancy import TenantViewSet
from organizations.models import Role


class InvoiceLineSerializer(serializers.ModelSerializer[InvoiceLine]):
    class Meta:
        model = InvoiceLine
        fields = ["position", "kind", "description", "quantity", "unit", "amount"]
        read_only_fields = fields


class InvoiceSerializer(serializers.ModelSerializer[Invoice]):
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "status",
            "currency",
            "total",
            "period_start",
            "period_end",
            "issued_at",
            "due_at",
            "paid_at",
            "voided_at",
            "organization_name",
            "plan_name",
            "lines",
        ]
        read_only_fields = fields


class InvoiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Invoices of the caller's organization, newest first; ``/{id}/pdf/`` downloads one as PDF."""

    queryset = Invoice.objects.prefetch_related("lines").order_by("-issued_at", "-number")
    serializer_class = InvoiceSerializer
    read_role = Role.ADMIN

    @extend_schema(
        responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="The invoice as PDF.")}
    )
    @action(detail=True, methods=["get"], content_negotiation_class=download_negotiation("application/pdf"))
    def pdf(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        return pdf_response(self.get_object())
