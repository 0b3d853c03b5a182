"""Plans, usage metering, quotas and invoices (filled by the billing issue)."""
