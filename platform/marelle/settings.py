"""Django settings, read from the environment.

Safe by default: with nothing set, Marelle behaves as production and refuses to start
without a real SECRET_KEY. `./dev run` and `./dev test` set MARELLE_ENV to
"development" / "test", which supplies defaults that just work on a developer machine.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent
REPO_DIR = BASE_DIR.parent.parent

ENVIRONMENTS = ("production", "development", "test")
MARELLE_ENV = os.environ.get("MARELLE_ENV", "production")
if MARELLE_ENV not in ENVIRONMENTS:
    raise ImproperlyConfigured(
        f"MARELLE_ENV={MARELLE_ENV!r} is not one of {', '.join(ENVIRONMENTS)}."
    )
IS_PRODUCTION = MARELLE_ENV == "production"

# Marks every secret that is only fit for a laptop; production refuses to run with it.
DEV_SECRET_PREFIX = "dev-insecure-"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true/false).")


DEBUG = env_bool("DEBUG", MARELLE_ENV == "development")
SECRET_KEY = os.environ.get("SECRET_KEY") or (
    "" if IS_PRODUCTION else DEV_SECRET_PREFIX + "not-for-production"
)
PLATFORM_DOMAIN = os.environ.get(
    "PLATFORM_DOMAIN", "marelle.test" if MARELLE_ENV == "test" else "localhost"
).lower()
DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marelle")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15" if MARELLE_ENV == "test" else "")


def production_settings_errors(*, debug: bool, secret_key: str) -> list[str]:
    """What makes these settings unfit for production (empty list: fit)."""
    errors = []
    if debug:
        errors.append("DEBUG must be off in production.")
    if not secret_key:
        errors.append("SECRET_KEY is not set.")
    elif secret_key.startswith(DEV_SECRET_PREFIX) or len(secret_key) < 40:
        errors.append("SECRET_KEY is a development key or shorter than 40 characters.")
    return errors


if IS_PRODUCTION:
    _errors = production_settings_errors(debug=DEBUG, secret_key=SECRET_KEY)
    if _errors:
        raise ImproperlyConfigured(
            "Refusing to start in production (MARELLE_ENV=production): "
            + " ".join(_errors)
            + " Set MARELLE_ENV=development on a developer machine."
        )

# The tenant middleware is the host allow-list: a Host header that matches no Domain row
# gets a 404 before any view runs. Extra domains come from the communes' YAML at runtime,
# so a static list here could not know them.
ALLOWED_HOSTS = ["*"]

# --- Applications: the split between public and tenant schemas is deliberate and reviewed.
SHARED_APPS = [
    "django_tenants",
    "tenants",
    "django.contrib.contenttypes",
    "marelle.accounts",
    # auth and sessions are in both lists: the public schema holds platform operators,
    # each commune schema holds its own families and staff (one e-mail, two communes:
    # two accounts, two sessions).
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "django.forms",
    "rest_framework",
    "drf_spectacular",
    "marelle.core",
    "marelle.ops",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "marelle.accounts",
    "django.contrib.auth",
    "django.contrib.sessions",
    "rest_framework.authtoken",
    "axes",
    "marelle.audit",
    "marelle.catalog",
    "marelle.portal",
    "marelle.families",
    "marelle.booking",
    "marelle.billing",
    "marelle.recovery",
    "marelle.documents",
    "marelle.backoffice",
    "marelle.api",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Commune"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
PUBLIC_SCHEMA_URLCONF = "marelle.urls_public"
ROOT_URLCONF = "marelle.urls_tenant"
SHOW_PUBLIC_IF_NO_TENANT_FOUND = False
# Seconds a process remembers which commune a host name belongs to (0: ask every time).
TENANT_HOST_CACHE_SECONDS = int(os.environ.get("TENANT_HOST_CACHE_SECONDS", "0" if MARELLE_ENV == "test" else "30"))
# One "SET search_path" per request (the tenant middleware sets the commune) instead of one
# before every query: half the round trips of a booking. Safe since django-tenants 4.0.1,
# which forgets the cached path on rollback *and* savepoint rollback (#1249, #1262; see
# tests/tenancy/test_isolation.py). pyproject.toml requires that version.
TENANT_LIMIT_SET_CALLS = True
# Provider notifications accepted per provider and client address per minute: a forged flood
# only triggers look-ups at the provider, this bounds them (a provider behind one address
# sending more is told 429 and retries).
PAYMENT_NOTIFICATIONS_PER_MINUTE = int(os.environ.get("PAYMENT_NOTIFICATIONS_PER_MINUTE", "600"))

MIDDLEWARE = [
    "marelle.ops.middleware.RequestIdMiddleware",
    # Probes and metrics carry no commune host: answer them before tenant routing.
    "marelle.ops.middleware.MetricsEndpointMiddleware",
    "marelle.core.health.HealthCheckMiddleware",
    "marelle.ops.middleware.RequestMetricsMiddleware",
    "tenants.middleware.CommuneMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "axes.middleware.AxesMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if IS_PRODUCTION:
    # Static files from the app servers themselves (collected at image build time).
    MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
                      "whitenoise.middleware.WhiteNoiseMiddleware")

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "marelle.core.context_processors.commune",
            ],
        },
    },
]

FORM_RENDERER = "marelle.core.forms.MarelleFormRenderer"

WSGI_APPLICATION = "marelle.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=60, conn_health_checks=True
    )
}
# Schema-per-tenant needs the django-tenants backend whatever the URL scheme says.
DATABASES["default"]["ENGINE"] = "django_tenants.postgresql_backend"
# Only the hot paths' hand-written statements are prepared (marelle.core.sql; the ORM's are
# not), and they look rows up by key: their generic plan is the right one from the first
# execution. By default PostgreSQL plans each prepared statement five times with its
# values before settling, per connection and per commune (a statement per schema): 2 ms
# each time for a booking's statements.
_options = DATABASES["default"].setdefault("OPTIONS", {})
_options["options"] = f"{_options.get('options', '')} -c plan_cache_mode=force_generic_plan".strip()
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# Parallel tenant migrations (migrate_schemas --executor=multiprocessing), bounded to spare
# the database's connections.
TENANT_MULTIPROCESSING_MAX_PROCESSES = int(os.environ.get("TENANT_MULTIPROCESSING_MAX_PROCESSES", "2"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Every key carries the schema name: one commune never reads another's cache.
            "KEY_FUNCTION": "django_tenants.cache.make_key",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "KEY_FUNCTION": "django_tenants.cache.make_key",
        }
    }

# Sessions live in each schema's own table; the cookie is host-only (no parent domain), so
# a cookie set by one commune is never sent to, nor valid on, another.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_DOMAIN = None
CSRF_COOKIE_DOMAIN = None
SESSION_COOKIE_SECURE = IS_PRODUCTION
CSRF_COOKIE_SECURE = IS_PRODUCTION
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if IS_PRODUCTION else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

AUTH_USER_MODEL = "accounts.User"
# E-mails are unique case-insensitively through a Lower(email) constraint, which Django's
# check does not see.
SILENCED_SYSTEM_CHECKS = ["auth.W004"]
AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses a locked-out account or address before any password check.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "families:home"
LOGOUT_REDIRECT_URL = "home"

# Throttling of failed logins (django-axes), per account and per address, in each commune's
# schema. Five failures lock for 15 minutes; a success resets the account's counter.
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_FORM_FIELD = "username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_VERBOSE = False
AXES_IPWARE_PROXY_COUNT = int(os.environ.get("AXES_PROXY_COUNT", "1" if IS_PRODUCTION else "0"))

# Links sent by e-mail (sign-up confirmation, invitation, e-mail change) expire after this.
ACCOUNT_LINK_MAX_AGE_SECONDS = 2 * 24 * 3600
PASSWORD_RESET_TIMEOUT = 2 * 3600

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if MARELLE_ENV == "test":
    # Hashing speed is not what tests check; Argon2 is still listed for stored hashes.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "fr"
LANGUAGES = [("fr", "Français")]
TIME_ZONE = "Europe/Paris"
USE_I18N = True
USE_TZ = True
LOCALE_PATHS = [BASE_DIR / "locale"]

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", REPO_DIR / "staticfiles"))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", REPO_DIR / ".data" / "media"))
# Each commune's uploads go under MEDIA_ROOT/<schema_name>/.
MULTITENANT_RELATIVE_MEDIA_ROOT = "%s"
STORAGES = {
    "default": {"BACKEND": "django_tenants.files.storage.TenantFileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if IS_PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if IS_PRODUCTION
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", f"Marelle <ne-pas-repondre@{PLATFORM_DOMAIN}>")

# --- Celery: tenant-schemas-celery puts the caller's schema in each task's headers.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
# Without a broker (the embedded demo) tasks run in the caller's process, same schema.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
# Separate queues so that e-mails and PDFs never delay payment settlement (the Helm chart
# runs one worker pool per group of queues).
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # keep the JSON handler in workers
CELERY_TASK_ROUTES = {
    "marelle.core.send_email": {"queue": "mail"},
    "marelle.ops.fan_out": {"queue": "default"},
    "marelle.billing.invoices_issued": {"queue": "pdf"},
    "marelle.billing.invoices_issued_chunk": {"queue": "pdf"},
    "marelle.billing.invoice_pdf": {"queue": "pdf"},
    "marelle.billing.reconciliation.*": {"queue": "payments"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "marelle.api.authentication.FamilyTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Marelle API",
    "DESCRIPTION": "API du portail famille Marelle (par commune).",
    "VERSION": "0.1.0",
}

# Where `communes sync` reads from by default, and the published JSON Schema.
COMMUNES_CONFIG_DIR = Path(os.environ.get("COMMUNES_CONFIG_DIR", REPO_DIR / "config" / "communes"))

# Plugins come from the "marelle.plugins" entry-point group. Tests switch autoload off and
# name the plugin modules to register instead, so a run does not depend on what else
# happens to be installed in the virtualenv.
MARELLE_PLUGIN_AUTOLOAD = env_bool("MARELLE_PLUGIN_AUTOLOAD", True)
MARELLE_PLUGINS = [m for m in os.environ.get("MARELLE_PLUGINS", "").split(",") if m]

# One JSON object per line in production (tenant, request id, user id; never health data).
from marelle.ops.logging import build_logging  # noqa: E402

LOGGING = build_logging(json_logs=env_bool("LOG_JSON", IS_PRODUCTION), level=os.environ.get("LOG_LEVEL", "INFO"))
# /metrics (Prometheus) answers only with "Authorization: Bearer <METRICS_TOKEN>" when set.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# Periodic work, fanned out per commune with jitter (marelle/ops/schedule.py).
from marelle.ops.schedule import BEAT_SCHEDULE  # noqa: E402

CELERY_BEAT_SCHEDULE = BEAT_SCHEDULE
