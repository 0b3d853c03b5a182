"""People: the ``User`` model (signed in by email), its admin and API serializer. May import only ``core``."""
