from __future__ import annotations

from rest_framework import pagination


class Pagination(pagination.LimitOffsetPagination):
    """Its own module: DRF imports the pagination class while ``rest_framework.generics`` loads."""

    default_limit = 50
    max_limit = 200
