from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts import views as account_views
from config import health, metrics_views, views

admin.site.site_header = "Loom administration"
admin.site.site_title = "Loom admin"
# The app sidebar took 290 px of every list: at 1280-1366 px the changelists (jobs, ledger) ran off
# the screen beside the filters. Home and the breadcrumbs lead to every model.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    # The language switcher (every page's footer), for visitors and signed-in users alike.
    path("language/", account_views.set_language, name="set_language"),
    # SSO: "Continue with single sign-on" at accounts/sso/, an organization's settings at settings/sso/.
    path("", include("sso.urls")),
    path("api/v1/", include("config.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("billing/", include("billing.urls")),
    # The server-rendered dashboard. Every page below is scoped to the user's current organization.
    path("", views.dashboard, name="dashboard"),
    path("projects/", include("projects.urls")),
    path("api-keys/", include("apikeys.urls")),
    path("", include("generation.urls")),
    path("recommendations/", include("recommendations.urls")),
    path("knowledge/", include("knowledge.urls")),
    path("brand-model/", include("finetune.urls")),
    # Experiments' pages, and the public tracking links and pixels (/t/<token>) that carry no login.
    path("", include("experiments.urls")),
    path("", include("organizations.urls")),
]

handler400 = "core.views.bad_request"
handler403 = "core.views.permission_denied"
handler404 = "core.views.page_not_found"
handler500 = "core.views.server_error"
