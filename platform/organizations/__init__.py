"""Organizations, memberships, roles and invitations; and tenancy, the mechanism every app uses:
who is calling for which organization (``tenancy``), the dashboard guard ``tenant_required`` and
the API's ``TenantViewSet`` (``api.tenancy``). Imports ``accounts``, ``audit`` and ``core``.
"""
