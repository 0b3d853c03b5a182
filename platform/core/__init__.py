"""The bottom layer: what every app uses and that knows no app.

Domain errors and the API's error format (``errors``, ``api``), API fields (``fields``), dashboard
plumbing and form errors (``web``), error pages, pagination, parsers and the OpenAPI conventions
(``schema``), ids, mail, text and CSV helpers (``text``, ``csvfiles``), the read-only admin base;
the lifecycle every background job shares (``jobs``, on ``models.LeasedJob``), uploads worked
through row by row (``models.Upload``) and group progress (``progress``). Imports no first-party app.
"""
