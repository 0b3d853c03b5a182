"""Content generation: templates (versioned, with the built-in library), brand voices, generation jobs
and their variants.

Owns the writes (``services``), the limits of a request (``limits``), bulk CSV batches (``bulk``),
output checks (``constraints``, ``moderation``, ``leakage``, ``scoring``), exports, webhooks, the
job's life on the worker (``execution``, ``lifecycle``), how a job is metered (``metering``) and how
its tasks are reached (``dispatch``, by name). May import ``billing``, ``workers``, the platform apps
(``apikeys``, ``projects``, ``organizations``, ``accounts``, ``audit``) and ``core``; never
``recommendations`` or ``config``.
"""
