"""The audit trail: append-only records of membership, key and billing changes. Imports only ``core``."""
