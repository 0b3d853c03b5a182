"""The built-in template library, shared by every organization.

``sync_builtin_templates`` stores each entry as a built-in Template and adds a
new version whenever an entry here changes, so jobs that pinned an older
version keep it.
"""

from __future__ import annotations

from typing import Any

# Marked, not translated: the stored name and description stay English; Template.display_name
# and display_description translate the built-in ones where they are shown.
from django.utils.translation import gettext_noop

COPYWRITER = (
    "You are an expert marketing copywriter. Write only the requested copy: no preamble, "
    "no explanations, no quotation marks around the whole text, no placeholders."
)


def _v(
    name: str,
    label: str,
    *,
    kind: str = "text",
    required: bool = True,
    max_length: int = 300,
    choices: list[str] | None = None,
    default: str | None = None,
    hint: str = "",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "label": label, "type": kind, "required": required, "max_length": max_length}
    if choices:
        spec["choices"] = choices
    if default is not None:
        spec["default"] = default
    if hint:
        spec["help"] = hint
    return spec


PRODUCT = _v("product", "Product name", max_length=120)
FEATURES = _v("features", "Key features", kind="textarea", required=False, max_length=1000)
AUDIENCE = _v("audience", "Target audience", required=False, max_length=200)

BUILTIN_TEMPLATES: list[dict[str, Any]] = [
    {
        "slug": "product-description",
        "name": gettext_noop("Product description"),
        "category": "ecommerce",
        "description": gettext_noop("A persuasive product page description."),
        "variables": [PRODUCT, FEATURES, AUDIENCE],
        "prompt": "Write a product description for {product}.\nKey features: {features}\nAudience: {audience}\n"
        "Two short paragraphs, benefits first.",
        "constraints": {"min_words": 25, "max_words": 180, "required_phrases": [], "banned_phrases": []},
        "max_new_tokens": 220,
    },
    {
        "slug": "google-ads",
        "name": gettext_noop("Google Ads responsive search ad"),
        "category": "ads",
        "description": gettext_noop(
            "Responsive search ad: three headlines of up to 30 characters, two descriptions of up to 90."
        ),
        "variables": [PRODUCT, FEATURES, _v("offer", "Offer", required=False, max_length=100)],
        # Google's limits for responsive search ads (it mixes 3-15 headlines and 2-4 descriptions).
        # Each line is a field (generation.constraints) and, while decoding, a line of the grammar
        # (generation.grammar): the labels, the line count and each line's limit hold by construction.
        "prompt": "Write a Google responsive search ad for {product}. Features: {features}. Offer: {offer}.\n"
        "Answer with exactly five lines, each starting with its label:\n"
        "Headline 1: <at most 30 characters>\nHeadline 2: <at most 30 characters>\n"
        "Headline 3: <at most 30 characters>\nDescription 1: <at most 90 characters>\n"
        "Description 2: <at most 90 characters>",
        "constraints": {
            "min_words": 4,
            "fields": [
                {"label": "Headline 1", "max_chars": 30},
                {"label": "Headline 2", "max_chars": 30},
                {"label": "Headline 3", "max_chars": 30},
                {"label": "Description 1", "max_chars": 90},
                {"label": "Description 2", "max_chars": 90},
            ],
        },
        # Room to finish the lines whatever they hold: a constrained ad that runs out of tokens is cut off
        # and fails. SmolLM2 spends up to ~0.7 tokens a character (digits are a token each), and the ad
        # is at most 340 characters; most take ~80 tokens.
        "max_new_tokens": 240,
    },
    {
        "slug": "meta-ad",
        "name": gettext_noop("Meta (Facebook/Instagram) ad"),
        "category": "ads",
        "description": gettext_noop(
            "Primary text up to 125 characters, a headline up to 40 and a description up to 30."
        ),
        "variables": [PRODUCT, FEATURES, AUDIENCE],
        # Meta's recommended lengths, past which feeds cut the text off with "... See more".
        "prompt": "Write a Facebook/Instagram ad for {product} aimed at {audience}. Features: {features}.\n"
        "Answer with exactly three lines, each starting with its label:\n"
        "Primary text: <at most 125 characters>\nHeadline: <at most 40 characters>\n"
        "Description: <at most 30 characters>",
        "constraints": {
            "min_words": 5,
            "fields": [
                {"label": "Primary text", "max_chars": 125},
                {"label": "Headline", "max_chars": 40},
                {"label": "Description", "max_chars": 30},
            ],
        },
        "max_new_tokens": 170,  # at most 234 characters, as Google Ads' above
    },
    {
        "slug": "email-subject-lines",
        "name": gettext_noop("Email subject line"),
        "category": "email",
        "description": gettext_noop("A subject line under 60 characters."),
        "variables": [_v("topic", "Email topic", max_length=200), AUDIENCE],
        "prompt": "Write one email subject line about: {topic}. Audience: {audience}. At most 60 characters.",
        "constraints": {"max_chars": 60, "min_words": 2},
        "max_new_tokens": 45,  # ~0.7 tokens a character at most (see Google Ads)
    },
    {
        "slug": "marketing-email",
        "name": gettext_noop("Marketing email"),
        "category": "email",
        "description": gettext_noop("A complete promotional email with a call to action."),
        "variables": [
            _v("topic", "Topic or offer", max_length=300),
            PRODUCT,
            AUDIENCE,
            _v("call_to_action", "Call to action", required=False, max_length=80, default="Shop now"),
        ],
        "prompt": "Write a marketing email about {topic} for {product}, for {audience}. "
        "Greeting, two short paragraphs, and end with the call to action: {call_to_action}.",
        "constraints": {"min_words": 50, "max_words": 300},
        "max_new_tokens": 380,
    },
    {
        "slug": "social-x",
        "name": gettext_noop("Post for X"),
        "category": "social",
        "description": gettext_noop("A post of at most 280 characters."),
        "variables": [_v("topic", "Topic", max_length=300), _v("hashtags", "Hashtags", required=False, max_length=100)],
        "prompt": "Write a post for X (Twitter) about {topic}. At most 280 characters. Hashtags: {hashtags}.",
        "constraints": {"max_chars": 280, "min_words": 4},
        "max_new_tokens": 200,  # as the subject line
    },
    {
        "slug": "social-linkedin",
        "name": gettext_noop("LinkedIn post"),
        "category": "social",
        "description": gettext_noop("A professional post of up to 1,300 characters."),
        "variables": [_v("topic", "Topic", max_length=400), AUDIENCE],
        "prompt": "Write a LinkedIn post about {topic} for {audience}. Professional, concrete, up to 1,300 characters.",
        "constraints": {"max_chars": 1300, "min_words": 30},
        "max_new_tokens": 350,
    },
    {
        "slug": "social-instagram",
        "name": gettext_noop("Instagram caption"),
        "category": "social",
        "description": gettext_noop("A caption of up to 2,200 characters with hashtags."),
        "variables": [
            _v("topic", "What the picture shows", max_length=300),
            _v("hashtags", "Hashtags", required=False, max_length=150),
        ],
        "prompt": "Write an Instagram caption for a picture of {topic}. Friendly, with emojis if fitting. "
        "End with hashtags: {hashtags}.",
        "constraints": {"max_chars": 2200, "min_words": 8},
        "max_new_tokens": 150,
    },
    {
        "slug": "blog-outline",
        "name": gettext_noop("Blog outline"),
        "category": "blog",
        "description": gettext_noop("A structured outline with headings."),
        "variables": [_v("topic", "Topic", max_length=300), _v("keywords", "Keywords", required=False, max_length=300)],
        "prompt": "Write a blog post outline about {topic} using the keywords {keywords}. "
        "A title, then 4-6 section headings each with 2 bullet points.",
        "constraints": {"min_words": 30, "max_words": 400},
        "max_new_tokens": 350,
    },
    {
        "slug": "blog-post",
        "name": gettext_noop("Blog post from keywords"),
        "category": "blog",
        "description": gettext_noop("A short blog post on a topic, using given keywords."),
        "variables": [
            _v("topic", "Topic", max_length=300),
            _v("keywords", "Keywords", max_length=300),
            _v("length", "Length", kind="choice", required=False, choices=["short", "medium"], default="short"),
        ],
        "prompt": "Write a {length} blog post about {topic}. Use these keywords naturally: {keywords}.",
        "constraints": {"min_words": 80, "max_words": 900},
        "max_new_tokens": 700,
    },
    {
        "slug": "seo-meta",
        "name": gettext_noop("SEO title + meta description"),
        "category": "seo",
        "description": gettext_noop("A title up to 60 characters and a meta description up to 155."),
        "variables": [_v("page", "Page topic", max_length=200), _v("keyword", "Main keyword", max_length=80)],
        "prompt": "Write an SEO title and a meta description for a page about {page}, with the keyword {keyword}.\n"
        "Answer with exactly two lines:\nTitle: <at most 60 characters>\nMeta description: <at most 155 characters>",
        "constraints": {
            "required_phrases": ["{keyword}"],
            "fields": [{"label": "Title", "max_chars": 60}, {"label": "Meta description", "max_chars": 155}],
        },
        "max_new_tokens": 170,  # at most 241 characters, as Google Ads' above
    },
    {
        "slug": "press-release",
        "name": gettext_noop("Press release"),
        "category": "pr",
        "description": gettext_noop("An announcement in press-release form."),
        "variables": [
            _v("company", "Company", max_length=120),
            _v("announcement", "Announcement", kind="textarea", max_length=1000),
            _v("quote_by", "Quote attributed to", required=False, max_length=120),
        ],
        "prompt": "Write a press release: {company} announces {announcement}. Include a quote from {quote_by}.",
        "constraints": {"min_words": 80, "max_words": 600, "required_phrases": ["{company}"]},
        "max_new_tokens": 600,
    },
    {
        "slug": "customer-service-reply",
        "name": gettext_noop("Customer service reply"),
        "category": "support",
        "description": gettext_noop("A helpful, polite reply to a customer's message."),
        "variables": [
            _v("customer_message", "Customer's message", kind="textarea", max_length=2000),
            _v("resolution", "What we can offer", required=False, max_length=500),
        ],
        "prompt": "Reply to this customer message politely and helpfully.\nCustomer: {customer_message}\n"
        "What we can offer: {resolution}",
        "constraints": {"min_words": 20, "max_words": 250, "banned_phrases": ["as an AI"]},
        "max_new_tokens": 300,
    },
    {
        # Filled per customer by personalized campaigns (recommendations/) with their top recommended
        # item. Worded for small models: told to open with the exact product name, SmolLM2-135M (at the
        # campaigns' temperature 0.2) names it in 38 of 40 random Online Retail titles, against 41 of 48
        # when asked to begin with "<product> is" and 13 of 20 for a free-form email about three
        # products. Campaigns rewrite the misses.
        "slug": "personalized-recommendation",
        "name": gettext_noop("Personalized product recommendation"),
        "category": "email",
        "description": gettext_noop("A sentence that recommends one product to one customer, naming it first."),
        "variables": [_v("product", "Recommended product", max_length=200)],
        "prompt": 'Product name: "{product}"\nWrite one sentence about this product for a customer. '
        "Start the sentence with the exact product name.",
        "constraints": {"max_words": 60, "required_phrases": ["{product}"]},
        "max_new_tokens": 60,
    },
]
