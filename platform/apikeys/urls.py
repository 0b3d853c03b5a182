from __future__ import annotations

from django.urls import path

from apikeys import views

app_name = "apikeys"
urlpatterns = [
    path("", views.apikey_list, name="list"),
    path("<uuid:pk>/revoke/", views.apikey_revoke, name="revoke"),
]
