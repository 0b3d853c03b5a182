"""The billing API: invoices (invoices.py)."""
