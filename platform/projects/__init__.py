"""Projects, the unit an organization's work is grouped in. Imports ``organizations``, ``accounts`` and ``core``."""
