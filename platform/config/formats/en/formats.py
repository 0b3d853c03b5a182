"""English dates as the dashboard always wrote them ("4 December 2026"), by name, so that templates ask for
``DATE_FORMAT`` and a Chinese reader gets Django's "2026年12月4日" instead."""

DATE_FORMAT = "j F Y"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i"
