"""The dashboard shell: who may open which page, what the navigation offers, and the error page."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.template.loader import render_to_string
from django.test import Client

from organizations.tenancy import SESSION_KEY
from tests.support.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

ROLES = ["owner", "admin", "editor", "viewer"]


@pytest.mark.parametrize("path", ["/", "/projects/", "/members/", "/api-keys/", "/settings/", "/organizations/new/"])
def test_anonymous_is_sent_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/accounts/login/?next={path}")


@pytest.mark.parametrize("path", ["/", "/projects/", "/projects/new/", "/members/", "/api-keys/", "/settings/"])
def test_user_without_organization_is_sent_to_create_one(client, path):
    client.force_login(UserFactory())
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == "/organizations/new/"


def test_dashboard_summarises_current_organization(cast, client_for):
    response = client_for(cast.owner).get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Acme" in body
    assert "Spring" in body and "Autumn" in body
    assert "Secret" not in body  # Globex's project
    assert response.context["project_count"] == 2
    assert response.context["member_count"] == 4


def test_dashboard_follows_the_switcher(cast, client_for):
    # given: the owner also belongs to Globex and picked it in the switcher
    MembershipFactory(organization=cast.outsider_org, user=cast.owner, role="viewer")
    client = client_for(cast.owner)
    session = client.session
    session[SESSION_KEY] = str(cast.outsider_org.pk)
    session.save()
    # when
    body = client.get("/").content.decode()
    # then
    assert "Secret" in body and "Autumn" not in body


@pytest.mark.parametrize("role", ROLES)
def test_every_member_reads_projects_and_members(cast, client_for, role):
    client = client_for(getattr(cast, role))
    for path in ["/", "/projects/", f"/projects/{cast.project.pk}/", "/members/"]:
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize(("role", "status"), [("owner", 200), ("admin", 200), ("editor", 403), ("viewer", 403)])
def test_settings_and_api_keys_are_for_admins(cast, client_for, role, status):
    client = client_for(getattr(cast, role))
    assert client.get("/settings/").status_code == status
    assert client.get("/api-keys/").status_code == status


@pytest.mark.parametrize(("role", "status"), [("owner", 200), ("admin", 200), ("editor", 200), ("viewer", 403)])
def test_project_forms_are_for_editors(cast, client_for, role, status):
    client = client_for(getattr(cast, role))
    assert client.get("/projects/new/").status_code == status
    assert client.get(f"/projects/{cast.project.pk}/edit/").status_code == status


def test_viewer_sees_no_write_buttons(cast, client_for):
    client = client_for(cast.viewer)
    body = client.get(f"/projects/{cast.project.pk}/").content.decode()
    assert f"/projects/{cast.project.pk}/edit/" not in body
    assert f"/projects/{cast.project.pk}/delete/" not in body
    nav = client.get("/projects/").content.decode()
    assert "/projects/new/" not in nav
    assert "/api-keys/" not in nav and "/settings/" not in nav
    members = client.get("/members/").content.decode()
    assert "/members/invite/" not in members and "/role/" not in members and "/remove/" not in members


def test_editor_sees_edit_but_not_delete(cast, client_for):
    body = client_for(cast.editor).get(f"/projects/{cast.project.pk}/").content.decode()
    assert f"/projects/{cast.project.pk}/edit/" in body
    assert f"/projects/{cast.project.pk}/delete/" not in body


def test_admin_sees_admin_navigation_and_controls(cast, client_for):
    client = client_for(cast.admin)
    body = client.get("/").content.decode()
    assert 'href="/api-keys/"' in body and 'href="/settings/"' in body and 'href="/api/docs/"' in body
    members = client.get("/members/").content.decode()
    assert "/members/invite/" in members


def test_staff_see_admin_link(cast, client_for):
    assert 'href="/admin/"' not in client_for(cast.owner).get("/").content.decode()
    cast.owner.is_staff = True
    cast.owner.save(update_fields=["is_staff"])
    assert 'href="/admin/"' in client_for(cast.owner).get("/").content.decode()


def test_switcher_lists_only_own_organizations(cast, client_for):
    body = client_for(cast.owner).get("/").content.decode()
    assert str(cast.org.pk) in body
    assert str(cast.outsider_org.pk) not in body and "Globex" not in body


def test_layout_sends_csrf_token_to_htmx_and_loads_static(cast, client_for):
    body = client_for(cast.owner).get("/").content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in body
    assert "/static/js/htmx.min.js" in body and "/static/css/app.css" in body and "/static/js/app.js" in body


def test_logout_is_a_post_form(cast, client_for):
    body = client_for(cast.owner).get("/").content.decode()
    assert '<form method="post" action="/accounts/logout/">' in body


@pytest.mark.parametrize(
    "path",
    ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/", "/accounts/confirm-email/nope/"],
)
def test_allauth_pages_use_the_layout(client, path):
    response = client.get(path)
    assert response.status_code == 200
    body = response.content.decode()
    assert "/static/css/app.css" in body and 'class="auth-card"' in body


@pytest.mark.parametrize("path", ["/accounts/email/", "/accounts/password/change/", "/accounts/logout/"])
def test_account_management_pages_render(cast, client_for, path):
    response = client_for(cast.viewer).get(path)
    assert response.status_code == 200
    assert "/static/css/app.css" in response.content.decode()


def test_password_reset_pages(client, cast):
    # given: the owner asks for a reset link
    response = client.post("/accounts/password/reset/", {"email": cast.owner.email})
    assert response.status_code == 302
    assert "Check your email" in client.get(response["Location"]).content.decode()
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+/)", mail.outbox[-1].body).group(1)
    # when: they follow it and choose a new password
    page = client.get(link, follow=True)
    assert page.status_code == 200 and "Choose a new password" in page.content.decode()
    done = client.post(
        page.request["PATH_INFO"], {"password1": "an-entirely-new-secret-9", "password2": "an-entirely-new-secret-9"},
        follow=True,
    )
    # then
    assert "Password changed" in done.content.decode()
    cast.owner.refresh_from_db()
    assert cast.owner.check_password("an-entirely-new-secret-9")


def test_unknown_page_is_a_standalone_404_without_queries(django_assert_num_queries):
    client = Client()
    with django_assert_num_queries(0):
        response = client.get("/no-such-page/")
    assert response.status_code == 404
    body = response.content.decode()
    assert "Page not found" in body and "/static/css/app.css" in body
    assert "topbar" not in body  # not the dashboard layout


def test_error_template_renders_without_request_or_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        html = render_to_string("error.html", {"status": 500, "detail": "Something went wrong."})
    assert "Something went wrong" in html
