"""Keel settings. Everything deployment-specific comes from environment variables.

See README "Configuration" for the list. Development defaults (DEBUG on, console email,
project-local PostgreSQL/Redis ports used by `make run`) apply when a variable is absent.
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parents[2]


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", default=True)
TESTING = env_bool("KEEL_TESTING", default=False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-change-me-0123456789abcdefghijklmnop"

# Brands live at <slug>.<BASE_DOMAIN>; the bare BASE_DOMAIN serves the public site.
BASE_DOMAIN = os.environ.get("BASE_DOMAIN", "localhost")
# Port appended to brand URLs we generate (signup redirect, invitation links). Empty in
# production behind a proxy on 443.
PUBLIC_PORT = os.environ.get("PUBLIC_PORT", "8000" if DEBUG else "")
SITE_SCHEME = os.environ.get("SITE_SCHEME", "http" if DEBUG else "https")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [BASE_DOMAIN, f".{BASE_DOMAIN}"])

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get(
            "DATABASE_URL",
            f"postgres://postgres@127.0.0.1:{os.environ.get('KEEL_PG_PORT', '54329')}/keel",
        ),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        engine="django_tenants.postgresql_backend",
    )
}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# How connections reach PostgreSQL: "direct" (default), or through a pooler in "session",
# "transaction" or "statement" mode. Brand isolation relies on a connection's search_path
# (TENANT_LIMIT_SET_CALLS below), so `manage.py check` fails for transaction/statement
# mode (config.checks, README "Connection poolers"): use PgBouncer with pool_mode = session.
KEEL_DB_POOL_MODE = os.environ.get("KEEL_DB_POOL_MODE", "direct").strip().lower()

REDIS_URL = os.environ.get(
    "REDIS_URL", f"redis://127.0.0.1:{os.environ.get('KEEL_REDIS_PORT', '63799')}/0"
)

# --- Tenancy -------------------------------------------------------------------------
# contenttypes/auth/sessions/accounts/audit are in both lists: the public schema holds
# platform staff and their sessions, each brand schema holds its own people and sessions,
# so a brand's session cookie means nothing on another brand's host.
SHARED_APPS = [
    "django_tenants",
    "tenants",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.admin",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "accounts",
    "audit",
    "workers",
    "django.contrib.postgres",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "accounts",
    "audit",
    "idempotency",
    "catalog",
    "inventory",
    "orders",
    "approvals",
    "outbox",
    "webhooks",
    "sync",
    "purchasing",
    "forecasting",
    "replenishment",
    "shipping",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Brand"
TENANT_DOMAIN_MODEL = "tenants.Domain"
# New brands are cloned from this migrated schema (see tenants.services). It is a Brand
# row of kind "template", so `migrate_schemas` keeps it current with every deploy.
TENANT_BASE_SCHEMA = "keel_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
# Set search_path once per schema switch, not before every query (django-tenants).
TENANT_LIMIT_SET_CALLS = True
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ROOT_URLCONF = "config.urls_tenant"
SHOW_PUBLIC_IF_NO_TENANT_FOUND = False

MIDDLEWARE = [
    "django_tenants.middleware.main.TenantMainMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "audit.middleware.RequestContextMiddleware",
    "config.middleware.BrandTimezoneMiddleware",
]

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
                "config.context_processors.shell",
            ],
        },
    }
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("email", "full_name")},
    },
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"
PASSWORD_RESET_TIMEOUT = 60 * 60 * 24

# Cookies are host-only (no SESSION_COOKIE_DOMAIN): a brand's session never reaches
# another brand's subdomain.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_SAMESITE = "Lax"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "platform" / "config" / "static"]
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / ".data" / "media"))
MEDIA_URL = "/media/"
# Files are stored under MEDIA_ROOT/<schema_name>/..., so one brand's upload path never
# collides with, or is served to, another brand.
MULTITENANT_RELATIVE_MEDIA_ROOT = "%s"
# Files (labels, bills of lading, proofs of delivery, PO documents): on the local disk by
# default, or in an S3 bucket with KEEL_FILE_STORAGE=s3 (django-storages; credentials from
# the usual AWS environment or instance role). Both keep each brand under its own prefix.
KEEL_FILE_STORAGE = os.environ.get("KEEL_FILE_STORAGE", "filesystem").strip().lower()
if KEEL_FILE_STORAGE not in ("filesystem", "s3"):
    raise ImproperlyConfigured("KEEL_FILE_STORAGE is 'filesystem' or 's3'.")
_FILES = {"BACKEND": "django_tenants.files.storage.TenantFileSystemStorage"}
if KEEL_FILE_STORAGE == "s3":
    _FILES = {
        "BACKEND": "config.storage.TenantS3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["KEEL_S3_BUCKET"],
            "location": os.environ.get("KEEL_S3_PREFIX", "keel"),
            "region_name": os.environ.get("KEEL_S3_REGION") or None,
            # S3-compatible stores (MinIO, R2…) and local fakes.
            "endpoint_url": os.environ.get("KEEL_S3_ENDPOINT_URL") or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
STORAGES = {
    "default": _FILES,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# The cache gets its own Redis database so clearing it can never drop queued tasks.
CACHE_URL = os.environ.get("CACHE_URL") or urlunsplit(urlsplit(REDIS_URL)._replace(path="/1"))
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        # Prefixes every key with the current schema: cache keys are tenant-scoped.
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}

# --- Email -----------------------------------------------------------------------------
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", f"Keel <no-reply@{BASE_DOMAIN}>")

# --- API -------------------------------------------------------------------------------
API_RATE_LIMIT = os.environ.get("API_RATE_LIMIT", "600/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api_auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.RolePermission"],
    "DEFAULT_PAGINATION_CLASS": "config.api.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["config.api.PrincipalRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"principal": API_RATE_LIMIT},
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Keel API",
    "DESCRIPTION": (
        "Per-brand REST API. Call it on your brand's host (https://<slug>.<domain>/api/v1/) "
        "with `Authorization: Api-Key <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The ApiKeyAuth security scheme comes from config.api.ApiKeyAuthenticationScheme.
    # Several models have a `status` or `kind` with different choices; name each set so
    # the schema's enums are stable and readable (no hash-suffixed names).
    "ENUM_NAME_OVERRIDES": {
        "LifecycleEnum": "catalog.models.Lifecycle",
        "UnmappedStatusEnum": "catalog.models.UnmappedStatus",
        "WarehouseKindEnum": "inventory.models.WarehouseKind",
        "StockStatusEnum": "inventory.models.StockStatus",
        "MovementKindEnum": "inventory.models.MovementKind",
        "MovementRequestKindEnum": "inventory.api.MOVEMENT_REQUEST_KINDS",
        "TransferStatusEnum": "inventory.models.TransferStatus",
        "ReservationKindEnum": "inventory.models.ReservationKind",
        "ReservationStatusEnum": "inventory.models.ReservationStatus",
        "OrderStatusEnum": "orders.models.OrderStatus",
        "ChannelOrderStatusEnum": "orders.api.CHANNEL_STATUSES",
        "FulfillmentStatusEnum": "orders.models.FulfillmentStatus",
        "RuleSetStatusEnum": "orders.models.RuleSetStatus",
        "ConnectionKindEnum": "sync.models.ConnectionKind",
        "ConnectionStatusEnum": "sync.models.ConnectionStatus",
        "SyncRunStatusEnum": "sync.models.RunStatus",
        "SyncRunTriggerEnum": "sync.models.RunTrigger",
        "ApprovalRequestStateEnum": "approvals.models.RequestState",
        "PurchaseOrderStateEnum": "purchasing.models.POState",
        "ForecastRunStateEnum": "forecasting.models.RunState",
        "RecommendationStateEnum": "replenishment.models.State",
    },
}

# --- Workers ---------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES_NAMES = ("sync", "forecast", "monitor", "default")
# Redis redelivers an unacknowledged task after this many seconds; it must exceed the
# longest countdown/ETA plus the hard time limit (see config.celery.check_visibility).
CELERY_BROKER_VISIBILITY_TIMEOUT = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))
CELERY_TASK_TIME_LIMIT = 15 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 14 * 60
CELERY_BEAT_LOCK_TTL = 60

# --- Outbox and partner webhooks (platform/outbox, platform/webhooks) -------------------
# Fernet keys for secrets Keel must use again (webhook signing secrets, connector
# credentials): comma-separated, the first encrypts, every one decrypts (rotation: see
# config.crypto and `manage.py rotate_secrets`). A dedicated key, never SECRET_KEY.
KEEL_FERNET_KEYS = env_list("KEEL_FERNET_KEYS", [])
if not KEEL_FERNET_KEYS:
    if not DEBUG:
        raise RuntimeError("KEEL_FERNET_KEYS must be set when DEBUG is off")
    # Public, development-only key: anything encrypted with it is readable by anyone.
    KEEL_FERNET_KEYS = ["a2VlbC1kZXYtb25seS1pbnNlY3VyZS1mZXJuZXQtayE="]
# How often beat relays every brand's outbox (commits also kick a relay at once).
KEEL_OUTBOX_RELAY_SECONDS = float(os.environ.get("KEEL_OUTBOX_RELAY_SECONDS", "5"))
# A failing handler is retried after 30 s, 1 min, 2 min … (at most 1 h apart); after
# this many failures its message is parked until a person retries it.
KEEL_OUTBOX_MAX_ATTEMPTS = 8
KEEL_OUTBOX_RETRY_BASE_SECONDS = 30
KEEL_OUTBOX_RETRY_MAX_SECONDS = 3600
# A published message whose task has not finished after this long is published again
# (the broker may have lost it); consumers drop the duplicate if both arrive.
KEEL_OUTBOX_REPUBLISH_AFTER_SECONDS = 900
# Stock changes of one SKU × warehouse are sent once quiet for this long (or at the latest
# this long after the first change).
KEEL_OUTBOX_STOCK_DEBOUNCE_SECONDS = 2
KEEL_OUTBOX_STOCK_MAX_WAIT_SECONDS = 30
KEEL_OUTBOX_RETENTION_DAYS = 7
# Allow http:// and private/loopback webhook targets: development and tests only.
KEEL_WEBHOOKS_ALLOW_PRIVATE = env_bool("KEEL_WEBHOOKS_ALLOW_PRIVATE", default=DEBUG)
# Retries after 1 min, doubling up to 8 h apart: 12 attempts span about 24 h.
KEEL_WEBHOOK_MAX_ATTEMPTS = 12
KEEL_WEBHOOK_RETRY_BASE_SECONDS = 60
KEEL_WEBHOOK_RETRY_MAX_SECONDS = 8 * 3600
KEEL_WEBHOOK_RETENTION_DAYS = 30

# --- Connectors and sync (connectors/, platform/sync) ----------------------------------
# Third-party connector plugins to load, by entry point name (comma-separated); unset:
# every installed one. Built-in connectors always load.
KEEL_CONNECTOR_PLUGINS = env_list("KEEL_CONNECTOR_PLUGINS", []) or None
# Let connectors call http:// and private or loopback hosts: local fake servers in tests.
KEEL_CONNECTOR_EGRESS_PERMISSIVE = env_bool("KEEL_CONNECTOR_EGRESS_PERMISSIVE", default=False)

# --- Logging ---------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Pre-cloned schemas kept ready so signup is a rename, not a clone (tenants.services).
KEEL_SCHEMA_POOL_SIZE = int(os.environ.get("KEEL_SCHEMA_POOL_SIZE", "2"))

KEEL_HANDOFF_TTL = timedelta(seconds=60)
KEEL_INVITATION_TTL = timedelta(days=7)
