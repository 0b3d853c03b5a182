"""``bin/screenshots``' path in headless Chromium: the seeded demo at 1280 px, in Chinese and English.

The Chinese billing and job pages show none of the English that once slipped through (the plan
selector, the billing period's month, a built-in template's name), CJK text is drawn with a CJK
font, and a staff owner's twelve-label nav stays one row in both languages.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support import screenshots

pytestmark = pytest.mark.browser

#: English a Chinese page once showed: the plan selector, the period's month, the job's template name.
UNTRANSLATED = ["/month", "(current)", " tokens", "Product description", "Billing", "Resets"]
_ENGLISH_MONTH = re.compile(r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b")
#: "2026年12月1日" to "31日" with an en dash between (across months "12月14日" ends it).
_CHINESE_PERIOD = re.compile(r"\d{4}年\d{1,2}月\d{1,2}日–(\d{4}年)?(\d{1,2}月)?\d{1,2}日")  # noqa: RUF001
#: Whether a Chinese character is drawn differently from a code point no font has: the same pixels
#: mean both are the missing-glyph box.
_CJK_GLYPHS_JS = r"""() => {
  const canvas = document.createElement("canvas");
  canvas.width = 40; canvas.height = 24;
  const context = canvas.getContext("2d");
  const draw = (text) => {
    context.clearRect(0, 0, 40, 24); context.font = "16px sans-serif"; context.fillText(text, 0, 18);
    return canvas.toDataURL();
  };
  return draw("账") !== draw("\u{10FFFD}");
}"""


@pytest.fixture
def demo(settings: Any, tmp_path: Any) -> screenshots.Demo:
    settings.VAR_DIR = tmp_path  # seed_demo keeps the demo password there
    demo = screenshots.prepare_demo()
    # A staff owner has the longest nav: Experiments and Admin too.
    demo.user.is_staff = True
    demo.user.save(update_fields=["is_staff"])
    return demo


def _assert_one_row(shot: screenshots.Shot) -> None:
    nav = shot.nav
    assert nav["rows"] == 1, f"the nav of {shot.name} ({shot.language}) wraps onto {nav['rows']} rows: {nav}"
    assert nav["navHeight"] < 2 * nav["linkHeight"], nav
    assert shot.overflow <= 0, f"{shot.name} ({shot.language}) scrolls sideways"


def test_chinese_billing_and_job_pages_are_translated_and_the_nav_is_one_row(
    browser_page: Any, live_server: Any, demo: screenshots.Demo, tmp_path: Any
) -> None:
    page, base = browser_page, live_server.url
    page.set_viewport_size({"width": screenshots.WIDTH, "height": screenshots.HEIGHT})
    screenshots.sign_in(page, base, demo.user)
    pages = dict(demo.pages())

    with screenshots.language_of(demo.user, "zh-hans"):
        billing = screenshots.shoot(page, base, "billing", pages["billing"], "zh-hans", tmp_path)
        cjk_glyphs = page.evaluate(_CJK_GLYPHS_JS)
        job = screenshots.shoot(page, base, "job", pages["job"], "zh-hans", tmp_path)
    with screenshots.language_of(demo.user, "en"):
        english = screenshots.shoot(page, base, "dashboard", pages["dashboard"], "en", tmp_path)

    assert billing.path.stat().st_size > 10_000
    assert "账单" in billing.text and "套餐" in billing.text
    for shot in (billing, job):
        left = [word for word in UNTRANSLATED if word in shot.text]
        assert left == [], f"English on the Chinese {shot.name} page: {left}"
        assert not _ENGLISH_MONTH.search(shot.text), _ENGLISH_MONTH.search(shot.text)
    assert "商品描述" in job.text
    assert _CHINESE_PERIOD.search(billing.text), "the billing period is not written the Chinese way"
    assert cjk_glyphs, "no font with CJK glyphs: run bin/install-browser (fonts-noto-cjk)"
    for shot in (billing, job, english):
        _assert_one_row(shot)
    assert "Admin" in english.text and "Experiments" in english.text
