"""The dashboard in English and Simplified Chinese: a user's choice is kept and applied on every request
(and so after each sign-in), API errors follow Accept-Language, dates follow the locale, and the committed
catalogue is complete, compiled and covers every string the code and templates mark."""

from __future__ import annotations

import re
import shutil
from datetime import date, datetime
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import get_resolver, reverse
from django.utils import translation
from django.utils.formats import date_format

from accounts.models import User
from projects.models import Project
from srcroot import REPO_ROOT
from tests.api_routes import ACME_DASHBOARD_OBJECTS, NOT_DASHBOARD, _walk_named
from tests.support.factories import PASSWORD, ProjectFactory

pytestmark = pytest.mark.django_db

CATALOGUE = REPO_ROOT / "locale" / "zh_Hans" / "LC_MESSAGES"
#: What extracting strings reads (the same as the README's makemessages command, less the folders it ignores).
SOURCES = [
    "platform", "generation", "recommendations", "billing", "workers", "knowledge", "experiments", "finetune",
    "templates",
]
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sdr]|\{(\w+)\}")
#: Names, codes and examples that stay in Latin letters in Chinese copy; any other Latin word in a
#: translation is English left untranslated.
KEPT_IN_LATIN = {
    "Acme", "Authorization", "Bearer", "Connect", "EMAIL_URL", "France", "Germany", "Idempotency-Key", "JSON", "Loom",
    "NDCG", "NDCG@", "Ollama", "Online", "OpenAI", "OpenID", "REST", "Recall@", "Retail", "SGLang", "Stripe", "Token",
    "UTF-", "audience", "colleague@example.com", "edited_text", "exclude_purchased", "false", "features", "inputs",
    "llama.cpp", "loom_", "params", "personalized-recommendation", "product", "projects", "rating", "transformers",
    "true", "vLLM", "customer_id", "timestamp",
    # brand models: the method's name, its knobs and the API's words for them
    "LoRA", "alpha", "adapter", "base", "null", "config", "insist",
    # identity providers, file formats and the codes people type (event names, roles, fields, examples)
    "Okta", "Microsoft", "Entra", "Google", "Workspace", "Keycloak", "Markdown", "HTML", "html", "Unix", "http",
    "https", "click", "open", "cart", "purchase", "view", "return", "admin", "editor", "viewer", "newsletter_signup",
    "marketing-leads", "shop.example.com", "landing_url",
    # the networks the built-in templates write for (generation/library.py)
    "Meta", "Facebook", "Instagram", "LinkedIn",
}


@pytest.fixture(autouse=True)
def _english_afterwards():
    """The test client runs requests in this thread, whose active language a Chinese request leaves behind
    (a server activates each request's own): later tests must start in the default language."""
    yield
    translation.activate(settings.LANGUAGE_CODE)


def _choose(client: Client, language: str, next_url: str = "/") -> None:
    response = client.post("/language/", {"language": language, "next": next_url})
    assert response.status_code == 302
    assert response["Location"] == next_url


def _signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_user_who_chooses_chinese_sees_the_dashboard_in_chinese(cast):
    client = _signed_in(cast.owner)

    _choose(client, "zh-hans")
    page = client.get("/")

    cast.owner.refresh_from_db()
    assert cast.owner.language == "zh-hans"
    assert page["Content-Language"] == "zh-hans"
    html = page.content.decode()
    assert '<html lang="zh-hans"' in html
    for chinese in ("概览", "项目", "最近更新的项目", "快速上手", "账单", "切换语言"):
        assert chinese in html, chinese
    for english in ("Recently updated projects", "Getting started", "Overview</h1>", "Skip to content"):
        assert english not in html, english


def test_the_choice_follows_the_user_into_a_new_sign_in(cast):
    _choose(_signed_in(cast.editor), "zh-hans")

    # A fresh browser (no language cookie) that signs in with the password form.
    browser = Client()
    login = browser.post("/accounts/login/", {"login": cast.editor.email, "password": PASSWORD})
    assert login.status_code == 302
    page = browser.get("/projects/")

    assert page["Content-Language"] == "zh-hans"
    assert "新建项目" in page.content.decode()
    # Another member who never chose keeps the browser's language.
    assert "New project" in _signed_in(cast.admin).get("/projects/").content.decode()


def test_switching_back_to_english(cast):
    client = _signed_in(cast.owner)
    _choose(client, "zh-hans")

    _choose(client, "en", next_url="/projects/")

    cast.owner.refresh_from_db()
    assert cast.owner.language == "en"
    assert "New project" in client.get("/projects/").content.decode()


def test_a_visitor_chooses_with_a_cookie(db):
    browser = Client()

    _choose(browser, "zh-hans", next_url="/accounts/login/")
    page = browser.get("/accounts/login/")

    assert browser.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    assert "登录 Loom" in page.content.decode()


def test_an_unknown_language_or_a_foreign_redirect_is_refused(cast):
    client = _signed_in(cast.owner)

    refused = client.post("/language/", {"language": "xx", "next": "/"})
    offsite = client.post("/language/", {"language": "zh-hans", "next": "https://evil.example/"})

    assert refused.status_code == 400
    assert offsite["Location"] == "/"
    cast.owner.refresh_from_db()
    assert cast.owner.language == "zh-hans"
    assert client.get("/language/").status_code == 405


def test_api_error_detail_follows_accept_language(cast, key_for):
    client, _, _ = key_for()
    body = {"name": "Spring again", "slug": "spring"}

    chinese = client.post("/api/v1/projects/", body, format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")
    english = client.post("/api/v1/projects/", body, format="json")
    missing = client.get("/api/v1/no-such-route/", HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert chinese.status_code == english.status_code == 409
    assert chinese.json() == {"code": "slug_taken", "detail": "短标识为 'spring' 的项目已存在。"}
    assert english.json()["detail"] == "A project with the slug 'spring' already exists."
    assert missing.status_code == 404
    assert missing.json() == {"code": "not_found", "detail": "未找到。"}
    assert Project.objects.filter(organization=cast.org, slug="spring").count() == 1


def test_dates_and_numbers_follow_the_locale(cast):
    day = date(2026, 12, 4)
    with translation.override("en"):
        assert date_format(day, "DATE_FORMAT") == "4 December 2026"
    with translation.override("zh-hans"):
        assert date_format(day, "DATE_FORMAT") == "2026年12月4日"
        assert date_format(datetime(2026, 12, 4, 9, 30), "SHORT_DATETIME_FORMAT") == "2026年12月4日 09:30"
    ProjectFactory(organization=cast.org, name="Winter")
    client = _signed_in(cast.owner)
    _choose(client, "zh-hans")

    html = client.get("/projects/").content.decode()

    # naturaltime, from Django's own Chinese catalogue
    assert "更新于" in html or "现在" in html or "之前" in html


def test_an_outsider_sees_nothing_of_acme_in_either_language(cast):
    client = _signed_in(cast.outsider)
    _choose(client, "zh-hans")

    page = client.get("/projects/").content.decode()
    detail = client.get(f"/projects/{cast.project.pk}/")

    assert "Spring" not in page and "Autumn" not in page
    assert detail.status_code == 404
    cast.outsider.refresh_from_db()
    cast.owner.refresh_from_db()
    assert (cast.outsider.language, cast.owner.language) == ("zh-hans", "")


# --- the catalogue ---------------------------------------------------------------------------------


def _latin_words(text: str) -> set[str]:
    prose = re.sub(r"<code>.*?</code>|<[^>]+>|%\(\w+\)\w|\{\w+\}", "", text)  # code stays as it is
    return set(re.findall(r"[A-Za-z][A-Za-z_.@-]{3,}", prose))


def _placeholders(text: str) -> set[str]:
    return {a or b for a, b in _PLACEHOLDER.findall(text)}


def test_every_string_of_the_catalogue_is_translated():
    po = polib.pofile(str(CATALOGUE / "django.po"))

    assert po.metadata["Plural-Forms"] == "nplurals=1; plural=0;"
    assert not po.metadata_is_fuzzy
    assert [e.msgid for e in po.fuzzy_entries()] == []
    assert [e.msgid for e in po.untranslated_entries()] == []
    assert [e.msgid for e in po.obsolete_entries()] == []
    for entry in po.translated_entries():
        text = entry.msgstr_plural[0] if entry.msgid_plural else entry.msgstr
        assert _placeholders(text) == _placeholders(entry.msgid), entry.msgid
        assert not _latin_words(text) - KEPT_IN_LATIN, f"looks untranslated: {entry.msgid!r} -> {text!r}"


def test_the_compiled_catalogue_matches_its_source():
    po = polib.pofile(str(CATALOGUE / "django.po"))
    mo = polib.mofile(str(CATALOGUE / "django.mo"))

    def table(catalogue: polib._BaseFile) -> dict[tuple[str | None, str], object]:
        return {
            (e.msgctxt, e.msgid): (e.msgstr_plural[0] if e.msgid_plural else e.msgstr)
            for e in catalogue
            if not e.obsolete and "fuzzy" not in e.flags
        }

    assert table(mo) == table(po), "locale/*/django.mo is stale: run bin/setup (or compilemessages)"


def test_makemessages_finds_nothing_untranslated(tmp_path, monkeypatch):
    # Extract into a scratch copy, so the committed catalogue is only read.
    for folder in SOURCES:
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    locale = tmp_path / "locale" / "zh_Hans" / "LC_MESSAGES"
    locale.mkdir(parents=True)
    shutil.copy(CATALOGUE / "django.po", locale / "django.po")
    monkeypatch.chdir(tmp_path)

    with override_settings(LOCALE_PATHS=[tmp_path / "locale"]):
        call_command(
            "makemessages", locale=["zh_Hans"], add_location="file", no_obsolete=True, verbosity=0,
            ignore_patterns=["templates/admin/*"],
        )

    extracted = polib.pofile(str(locale / "django.po"))
    assert [e.msgid for e in extracted.untranslated_entries()] == []
    assert [e.msgid for e in extracted.fuzzy_entries()] == []
    assert Path(locale / "django.po").read_text().count('msgid "') >= len(polib.pofile(str(CATALOGUE / "django.po")))


# --- every dashboard page in Chinese -------------------------------------------------------------------

#: Pages whose templates are not marked for translation yet (their own English is not in the catalogue).
NOT_YET_TRANSLATED: tuple[str, ...] = ()
_CODE = re.compile(r"<(script|style|pre|code|textarea)\b.*?</\1>", re.S)


def _catalogue_sentences() -> set[str]:
    """English source strings a Chinese page must not show: whole phrases of three words or more."""
    po = polib.pofile(str(CATALOGUE / "django.po"))
    return {
        entry.msgid
        for entry in po
        if not entry.msgid_plural and not re.search(r"[%{<]", entry.msgid) and len(entry.msgid.split()) >= 3
    }


def _page_text(html: str) -> str:
    text = re.sub(r"<[^>]+>", " ", _CODE.sub(" ", html))
    return " ".join(text.split())


def _dashboard_pages(cast) -> list[tuple[str, str]]:
    pages, made = [], {}  # one object per factory: two routes may share one (a domain's verify and remove)
    for full, namespace, pattern in _walk_named(get_resolver()):
        name = namespace + (pattern.name or "")
        if full.startswith(NOT_DASHBOARD) or not pattern.name or name.startswith(NOT_YET_TRANSLATED):
            continue
        if not pattern.pattern.regex.groupindex:
            pages.append((name, reverse(name)))
        elif name in ACME_DASHBOARD_OBJECTS:
            factory = ACME_DASHBOARD_OBJECTS[name]
            if factory not in made:
                made[factory] = factory(cast)
            pages.append((name, reverse(name, kwargs=made[factory])))
    return pages


def test_no_dashboard_page_shows_a_catalogue_string_in_english(cast):
    sentences = _catalogue_sentences()
    client = _signed_in(cast.owner)
    _choose(client, "zh-hans")
    untranslated, seen = [], 0

    for name, url in _dashboard_pages(cast):
        response = client.get(url)
        if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
            continue
        seen += 1
        text = _page_text(response.content.decode())
        untranslated += [(name, sentence) for sentence in sentences if sentence in text]

    assert seen >= 25
    assert untranslated == []
