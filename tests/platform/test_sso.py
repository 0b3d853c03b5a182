"""Single sign-on against a real OpenID Connect provider: django-oauth-toolkit in a process of its own
(tests/support/oidc_idp/), RS256-signed ID tokens, its own login form, consent page and refresh tokens.

The browser test drives Chromium through the whole sign-in; the others walk the provider's pages with
``requests`` (its login form and consent, as a browser would) and hand the callback to Django's test
client, so they run where Chromium is missing.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
import requests
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.conf import settings as django_settings
from django.test import Client

from accounts.models import User
from audit.models import AuditLog
from config.env import SettingsError, oidc_apps
from core.errors import Conflict
from organizations.models import Membership, Organization, Role
from sso import services
from sso.models import EmailDomain, IdentityProvider
from tests.support.browser import SCREENSHOTS
from tests.support.factories import PASSWORD, MembershipFactory, OrganizationFactory, UserFactory
from tests.support.oidc_idp.server import IdentityProviderServer, running_idp

IDP_PASSWORD = "idp-passphrase-7781"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProviderServer]:
    pytest.importorskip("oauth2_provider", reason="django-oauth-toolkit (the dev extras) runs the test IdP")
    with running_idp(django_settings.DATABASE_URL, tmp_path_factory.mktemp("idp")) as server:
        yield server


@dataclass
class SsoOrg:
    org: Organization
    owner: User
    provider: IdentityProvider
    domain: str


def _sso_org(idp: IdentityProviderServer, base_url: str, *, verified: bool = True, name: str = "Acme",
             group_roles: dict[str, str] | None = None, password_login_allowed: bool = True,
             skip_consent: bool = True) -> SsoOrg:
    """An organization with its own provider (a client registered at the IdP) and one email domain."""
    tag = uuid.uuid4().hex[:8]
    org = OrganizationFactory(name=f"{name} {tag}")
    owner = MembershipFactory(organization=org, role=Role.OWNER).user
    client_id, secret = f"loom-{tag}", f"secret-{tag}"
    provider = services.configure_identity_provider(
        actor=owner, organization=org, name=f"{name} SSO", server_url=idp.issuer, client_id=client_id,
        client_secret=secret, group_roles=group_roles or {}, password_login_allowed=password_login_allowed,
    )
    domain = f"{name.lower()}-{tag}.test"
    email_domain = services.add_email_domain(actor=owner, organization=org, domain=domain)
    if verified:
        services.operator_verify_email_domain(actor=None, email_domain=email_domain)  # type: ignore[arg-type]
    callback = f"{base_url}/accounts/oidc/{provider.provider_id}/login/callback/"
    idp.add_client(client_id, secret, [callback], skip_authorization=skip_consent)
    return SsoOrg(org=org, owner=owner, provider=provider, domain=domain)


def _idp_user(idp: IdentityProviderServer, email: str, groups: tuple[str, ...] = ()) -> str:
    username = f"u{uuid.uuid4().hex[:10]}"
    idp.add_user(username, email, IDP_PASSWORD, groups)
    return username


class _FormReader(HTMLParser):
    """The named form's fields, as a browser would submit them."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.fields = form_id, False, {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "form":
            self.inside = attr.get("id") == self.form_id
        elif tag == "input" and self.inside and attr.get("type") == "hidden" and attr.get("name"):
            self.fields[attr["name"]] = attr.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


def _form(html: str, form_id: str) -> dict[str, str]:
    reader = _FormReader(form_id)
    reader.feed(html)
    return reader.fields


def _through_idp(authorize_url: str, username: str, back_to: str) -> str:
    """Sign in at the IdP's login form and accept its consent page; the URL it sends the browser back to."""
    browser = requests.Session()
    response = browser.get(authorize_url, allow_redirects=False, timeout=10)
    for _ in range(10):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(back_to):
                return location
            response = browser.get(location, allow_redirects=False, timeout=10)
        elif 'id="idp-login"' in response.text:
            fields = _form(response.text, "idp-login") | {"username": username, "password": IDP_PASSWORD}
            response = browser.post(response.url, data=fields, allow_redirects=False, timeout=10)
        elif 'id="authorizationForm"' in response.text:
            fields = _form(response.text, "authorizationForm") | {"allow": "Authorize"}
            response = browser.post(response.url, data=fields, allow_redirects=False, timeout=10)
        else:
            raise AssertionError(f"unexpected IdP page {response.status_code}: {response.text[:500]}")
    raise AssertionError("the IdP never sent the browser back")


def _sign_in(client: Client, start: Any, username: str) -> Any:
    """Start at ``start`` (a response redirecting to the IdP), walk the IdP, finish at our callback."""
    assert start.status_code == 302, start.content[:500]
    callback = _through_idp(start["Location"], username, "http://testserver/")
    return client.get(callback)


def _sso_start(client: Client, email: str) -> Any:
    return client.post("/accounts/sso/", {"email": email})


def _signed_in_user(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


# --- sign-in and just-in-time membership -------------------------------------------------------------


@pytest.mark.django_db
def test_sso_sign_in_joins_the_organization_with_the_default_role(idp, client):
    acme = _sso_org(idp, "http://testserver")
    outsider_org = OrganizationFactory(name="Globex")
    email = f"dana@{acme.domain}"
    username = _idp_user(idp, email)

    response = _sign_in(client, _sso_start(client, email), username)

    assert response.status_code == 302 and response["Location"] == "/"
    user = _signed_in_user(client)
    assert user is not None and user.email == email
    membership = Membership.objects.get(user=user)
    assert membership.organization == acme.org and membership.role == Role.VIEWER
    assert not Membership.objects.filter(organization=outsider_org).exists()
    assert user.emailaddress_set.get().verified  # the IdP vouched for it: no confirmation mail
    audit = AuditLog.objects.get(organization=acme.org, action="membership.created", target_id=str(membership.pk))
    assert audit.data == {"role": "viewer", "via": "sso", "groups": []} and audit.actor == user
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_idp_groups_map_to_roles(idp, client):
    acme = _sso_org(idp, "http://testserver", group_roles={"marketing": "editor", "it-admins": "admin"})
    email = f"erin@{acme.domain}"
    username = _idp_user(idp, email, groups=("marketing", "it-admins", "unmapped"))

    _sign_in(client, _sso_start(client, email), username)

    membership = Membership.objects.get(user__email=email)
    assert membership.organization == acme.org and membership.role == Role.ADMIN  # the highest mapped role wins


@pytest.mark.django_db
def test_existing_account_at_the_verified_domain_signs_in_and_keeps_its_data(idp, client):
    acme = _sso_org(idp, "http://testserver", group_roles={"marketing": "editor"})
    existing = MembershipFactory(organization=acme.org, user__email=f"frank@{acme.domain}", role=Role.VIEWER).user
    username = _idp_user(idp, existing.email, groups=("marketing",))

    _sign_in(client, _sso_start(client, existing.email), username)

    assert _signed_in_user(client) == existing
    assert Membership.objects.get(user=existing).role == Role.EDITOR
    change = AuditLog.objects.get(organization=acme.org, action="membership.role_changed")
    assert change.data["old"] == "viewer" and change.data["new"] == "editor" and change.data["via"] == "sso"
    assert SocialAccount.objects.get(user=existing).provider == acme.provider.provider_id


# --- domains that must not route or grant membership -------------------------------------------------


@pytest.mark.django_db
def test_unverified_domain_does_not_route_to_the_provider(idp, client):
    acme = _sso_org(idp, "http://testserver", verified=False)

    response = _sso_start(client, f"gina@{acme.domain}")

    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    page = client.get("/accounts/login/").content.decode()
    assert f"No single sign-on is set up for {acme.domain}" in page


@pytest.mark.django_db
def test_provider_cannot_sign_in_an_address_of_an_unverified_domain(idp, client):
    acme = _sso_org(idp, "http://testserver", verified=False)
    email = f"hank@{acme.domain}"
    username = _idp_user(idp, email)

    # Straight to the organization's provider, past the routing by domain.
    start = client.post(f"/accounts/oidc/{acme.provider.provider_id}/login/")
    response = _sign_in(client, start, username)

    assert response.status_code == 403
    assert "only with an address at one of its verified email domains" in response.content.decode()
    assert _signed_in_user(client) is None
    assert not User.objects.filter(email=email).exists()
    assert not Membership.objects.filter(organization=acme.org).exclude(user=acme.owner).exists()


@pytest.mark.django_db
def test_provider_cannot_sign_in_an_address_of_another_organizations_domain(idp, client):
    acme = _sso_org(idp, "http://testserver", name="Acme")
    globex = _sso_org(idp, "http://testserver", name="Globex")
    victim = MembershipFactory(organization=acme.org, user__email=f"ivy@{acme.domain}", role=Role.ADMIN).user
    # Globex's provider asserts an Acme address.
    username = _idp_user(idp, victim.email)

    start = client.post(f"/accounts/oidc/{globex.provider.provider_id}/login/")
    response = _sign_in(client, start, username)

    assert response.status_code == 403
    assert _signed_in_user(client) is None
    assert not SocialAccount.objects.filter(user=victim).exists()
    assert not Membership.objects.filter(organization=globex.org, user=victim).exists()


@pytest.mark.django_db
def test_a_domain_verified_by_one_organization_cannot_be_verified_by_another(idp):
    acme = _sso_org(idp, "http://testserver", name="Acme")
    globex = _sso_org(idp, "http://testserver", name="Globex")

    claim = services.add_email_domain(actor=globex.owner, organization=globex.org, domain=acme.domain)
    with pytest.raises(Conflict):
        services.operator_verify_email_domain(actor=None, email_domain=claim)  # type: ignore[arg-type]

    assert not EmailDomain.objects.get(pk=claim.pk).is_verified
    assert services.provider_for_email(f"x@{acme.domain}") == acme.provider


# --- password sign-in turned off ---------------------------------------------------------------------


@pytest.mark.django_db
def test_password_sign_in_is_refused_for_an_sso_only_organization(idp, client):
    acme = _sso_org(idp, "http://testserver", password_login_allowed=False)
    member = MembershipFactory(organization=acme.org, user__email="jo@elsewhere.test", role=Role.EDITOR).user
    outsider = MembershipFactory(organization=OrganizationFactory()).user

    for email in (member.email, f"newcomer@{acme.domain}"):
        response = client.post("/accounts/login/", {"login": email, "password": PASSWORD})
        assert response.status_code == 200
        assert "Password sign-in is turned off for its members" in response.content.decode()
        assert _signed_in_user(client) is None

    # Another organization's member is not affected.
    response = client.post("/accounts/login/", {"login": outsider.email, "password": PASSWORD})
    assert response.status_code == 302 and _signed_in_user(client) == outsider


@pytest.mark.django_db
def test_password_sign_up_is_refused_at_an_sso_only_domain(idp, client):
    acme = _sso_org(idp, "http://testserver", password_login_allowed=False)
    email = f"newcomer@{acme.domain}"

    response = client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})

    assert response.status_code == 200 and "Password sign-in is turned off" in response.content.decode()
    assert not User.objects.filter(email=email).exists()


@pytest.mark.django_db
def test_confirming_an_email_does_not_sign_in_a_member_of_an_sso_only_organization(idp, client, mailoutbox):
    # given: an account made before the organization turned password sign-in off, its address unconfirmed
    response = client.post("/accounts/signup/", {"email": "pat@elsewhere.test", "password1": PASSWORD,
                                                 "password2": PASSWORD})
    assert response.status_code == 302
    acme = _sso_org(idp, "http://testserver", password_login_allowed=False)
    MembershipFactory(organization=acme.org, user=User.objects.get(email="pat@elsewhere.test"))
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mailoutbox[-1].body).group(0)

    response = client.post(link.replace("http://testserver", ""))

    assert _signed_in_user(client) is None
    assert "Password sign-in is turned off" in client.get("/accounts/login/").content.decode()


# --- a removed IdP user cannot get back in --------------------------------------------------------------


@pytest.fixture
def revalidate_every_request(settings: Any) -> None:
    settings.SSO_REVALIDATE_S = 0


@pytest.mark.django_db
@pytest.mark.usefixtures("revalidate_every_request")
def test_session_of_a_removed_idp_user_ends_at_the_next_refresh(idp, client):
    acme = _sso_org(idp, "http://testserver")
    email = f"kim@{acme.domain}"
    username = _idp_user(idp, email)
    _sign_in(client, _sso_start(client, email), username)
    # Each request refreshes at the IdP (rotating the refresh token): still signed in.
    assert client.get("/").status_code == 200
    assert client.get("/").status_code == 200

    idp.remove_user(username)
    response = client.get("/")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert _signed_in_user(client) is None
    assert not SocialToken.objects.filter(account__user__email=email).exists()
    # The old session cookie is worth nothing now.
    assert client.get("/").status_code == 302


@pytest.mark.django_db
@pytest.mark.usefixtures("revalidate_every_request")
def test_session_of_a_deactivated_idp_user_ends_at_the_next_refresh(idp, client):
    acme = _sso_org(idp, "http://testserver")
    email = f"lee@{acme.domain}"
    username = _idp_user(idp, email)
    _sign_in(client, _sso_start(client, email), username)
    assert client.get("/").status_code == 200

    idp.deactivate_user(username)

    assert client.get("/").status_code == 302
    assert _signed_in_user(client) is None


@pytest.mark.django_db
def test_session_is_not_checked_again_before_the_interval(idp, client, settings):
    settings.SSO_REVALIDATE_S = 3600
    acme = _sso_org(idp, "http://testserver")
    email = f"max@{acme.domain}"
    username = _idp_user(idp, email)
    _sign_in(client, _sso_start(client, email), username)

    idp.remove_user(username)

    assert client.get("/").status_code == 200  # until the next check, an hour away


# --- domain verification by DNS --------------------------------------------------------------------------


@pytest.fixture
def dns_server(settings: Any) -> Iterator[dict[str, list[str]]]:
    """A DNS server on a free UDP port answering TXT queries from the returned dict (dnspython's wire format)."""
    records: dict[str, list[str]] = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                wire, peer = sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            question = query.question[0]
            values = records.get(question.name.to_text().rstrip("."), [])
            if question.rdtype == dns.rdatatype.TXT and values:
                rrset = response.find_rrset(
                    response.answer, question.name, dns.rdataclass.IN, dns.rdatatype.TXT, create=True
                )
                for value in values:
                    rrset.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, f'"{value}"'), ttl=60)
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    settings.SSO_DNS_NAMESERVER = f"127.0.0.1:{sock.getsockname()[1]}"
    settings.SSO_DNS_TIMEOUT_S = 2.0
    yield records
    sock.close()


@pytest.mark.django_db
def test_admin_verifies_a_domain_by_its_txt_record(idp, client, dns_server):
    acme = _sso_org(idp, "http://testserver", verified=False)
    email_domain = EmailDomain.objects.get(organization=acme.org)
    client.force_login(acme.owner)
    verify = f"/settings/sso/domains/{email_domain.pk}/verify/"

    # No record yet, then a record with someone else's token: not verified.
    assert client.post(verify).status_code == 400
    dns_server[email_domain.dns_record_name] = ["loom-verification=not-the-token"]
    response = client.post(verify)
    assert response.status_code == 400 and "No TXT record" in response.content.decode()
    assert not EmailDomain.objects.get(pk=email_domain.pk).is_verified

    dns_server[email_domain.dns_record_name] = ["v=spf1 -all", email_domain.dns_record_value]
    assert client.post(verify).status_code == 302

    email_domain.refresh_from_db()
    assert email_domain.is_verified and email_domain.verified_by == "dns"
    assert services.provider_for_email(f"x@{acme.domain}") == acme.provider


# --- the settings page ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_configures_sso_on_the_settings_page(client):
    owner = MembershipFactory(role=Role.OWNER).user
    org = owner.memberships.get().organization
    client.force_login(owner)
    assert "Set up single sign-on" in client.get("/settings/").content.decode()

    response = client.post("/settings/sso/", {
        "name": "Okta", "server_url": "https://acme.okta.example/", "client_id": "loom", "client_secret": "s3cret",
        "default_role": "editor", "groups_claim": "groups", "group_roles": "leads = admin\n# comment\n",
    })
    assert response.status_code == 302
    provider = IdentityProvider.objects.get(organization=org)
    assert provider.server_url == "https://acme.okta.example" and provider.group_roles == {"leads": "admin"}
    assert provider.encrypted_client_secret and "s3cret" not in provider.encrypted_client_secret
    assert not provider.password_login_allowed  # an unticked box
    page = client.get("/settings/sso/").content.decode()
    assert f"/accounts/oidc/{provider.provider_id}/login/callback/" in page and "s3cret" not in page

    bad = client.post("/settings/sso/", {"name": "Okta", "server_url": "ftp://x", "client_id": "loom",
                                         "default_role": "editor", "groups_claim": "groups", "group_roles": "x = boss"})
    assert bad.status_code == 400

    assert client.post("/settings/sso/domains/", {"domain": "not a domain"}).status_code == 400
    assert client.post("/settings/sso/domains/", {"domain": "Acme.Example"}).status_code == 302
    assert EmailDomain.objects.get(organization=org).domain == "acme.example"


@pytest.mark.django_db
def test_members_below_admin_and_outsiders_cannot_change_sso(client):
    org = OrganizationFactory()
    owner = MembershipFactory(organization=org, role=Role.OWNER).user
    editor = MembershipFactory(organization=org, role=Role.EDITOR).user
    domain = services.add_email_domain(actor=owner, organization=org, domain="acme.example")
    outsider = MembershipFactory(organization=OrganizationFactory(), role=Role.OWNER).user

    client.force_login(editor)
    assert client.get("/settings/sso/").status_code == 403
    client.force_login(outsider)
    assert client.post(f"/settings/sso/domains/{domain.pk}/remove/").status_code == 404
    assert client.post(f"/settings/sso/domains/{domain.pk}/verify/").status_code == 404
    assert EmailDomain.objects.filter(pk=domain.pk).exists()


# --- installation-wide providers from the environment ----------------------------------------------------


def test_installation_wide_providers_are_read_from_json():
    apps = oidc_apps('[{"id": "corp", "name": "Corp", "server_url": "https://login.corp.example/", '
                     '"client_id": "c", "secret": "s"}]')
    assert apps == [{"provider_id": "corp", "name": "Corp", "client_id": "c", "secret": "s",
                     "settings": {"server_url": "https://login.corp.example", "email_authentication": False}}]
    assert oidc_apps("") == []
    for bad in ("{", '{"id": "x"}', '[{"id": "org-x", "server_url": "https://a", "client_id": "c", "secret": "s"}]',
                '[{"id": "x", "server_url": "https://a", "client_id": "c"}]',
                '[{"id": "x", "server_url": "https://a", "client_id": "c", "secret": "s", "colour": 1}]'):
        with pytest.raises(SettingsError):
            oidc_apps(bad)


@pytest.mark.django_db
def test_installation_wide_provider_signs_in_from_its_button(idp, client, settings):
    client_id = f"corp-{uuid.uuid4().hex[:8]}"
    idp.add_client(client_id, "corp-secret", ["http://testserver/accounts/oidc/corp/login/callback/"],
                   skip_authorization=True)
    settings.SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": oidc_apps(json.dumps([
        {"id": "corp", "name": "Corp SSO", "server_url": idp.issuer, "client_id": client_id, "secret": "corp-secret"},
    ]))}}
    acme = _sso_org(idp, "http://testserver")
    login_page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Corp SSO" in login_page
    assert acme.provider.name not in login_page  # an organization's provider is reached by its domain only
    username = _idp_user(idp, "olga@corp.example")

    _sign_in(client, client.post("/accounts/oidc/corp/login/"), username)

    user = _signed_in_user(client)
    assert user is not None and user.email == "olga@corp.example"
    assert not Membership.objects.filter(user=user).exists()  # no organization vouches for corp.example


@pytest.mark.django_db
def test_operator_marks_a_domain_verified_in_the_admin(client):
    org = OrganizationFactory()
    claimed = EmailDomain.objects.create(organization=org, domain="acme.example")
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    response = client.post("/admin/sso/emaildomain/", {"action": "mark_verified", "_selected_action": [claimed.pk]})

    assert response.status_code == 302
    claimed.refresh_from_db()
    assert claimed.is_verified and claimed.verified_by == "operator"
    assert AuditLog.objects.filter(organization=org, action="sso.domain_verified").exists()


# --- the whole sign-in in Chromium ---------------------------------------------------------------------------


@pytest.mark.browser
def test_sso_sign_in_in_chromium_through_the_idp_login_form_and_consent(idp, browser_page, live_server):
    page, base = browser_page, live_server.url
    acme = _sso_org(idp, base, group_roles={"marketing": "editor"}, skip_consent=False)
    email = f"nora@{acme.domain}"
    username = _idp_user(idp, email, groups=("marketing",))

    page.goto(f"{base}/accounts/login/")
    page.screenshot(path=str(SCREENSHOTS / "loom-sso-login.png"))
    page.fill("#id_sso_email", email)
    page.click("button:has-text('Continue with single sign-on')")
    page.wait_for_url(re.compile(re.escape(idp.url) + r"/login/"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", IDP_PASSWORD)
    page.click("button:has-text('Log in to the IdP')")
    page.wait_for_url(re.compile(re.escape(idp.url) + r"/o/authorize/"))
    page.click("input[name=allow]")  # the IdP's consent page
    page.wait_for_url(f"{base}/")

    assert acme.org.name in page.text_content(".switcher")
    page.screenshot(path=str(SCREENSHOTS / "loom-sso-dashboard.png"), full_page=True)
    membership = Membership.objects.get(user__email=email)
    assert membership.organization == acme.org and membership.role == Role.EDITOR
