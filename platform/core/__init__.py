"""The bottom layer: what every app uses and that knows no app.

Domain errors and the API's error format (``errors``, ``api``), dashboard plumbing (``web``),
error pages, pagination, parsers and the OpenAPI conventions (``schema``), ids, mail, text
and CSV helpers (``text``, ``csvfiles``), the read-only admin base. Imports no first-party app.
"""
