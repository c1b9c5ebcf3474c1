"""Settings of the bundled demo project (also the base of the test settings).

Redis comes from ``REDIS_URL``; without it an embedded ``redis-server`` is started for this
process (see ``cache_tools.testing``).
"""

import os
from pathlib import Path

from cache_tools.testing import shared_redis_url

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-demo-key-only-for-the-testproject")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "cache_tools",  # before the admin: it adds a link to the dashboard on the admin's index
    "django.contrib.admin",
    "testproject.demo",
    "testproject.shop",
]
# What ``django-admin startproject`` writes, after the demo's own.
STARTPROJECT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
MIDDLEWARE = ["testproject.demo.middleware.WorkerPidMiddleware", *STARTPROJECT_MIDDLEWARE]
# DEMO_TOOLBAR=1: django-debug-toolbar with cache_tools's panel, on every request (its data in
# the database, so that any worker can show a request another served).
if os.environ.get("DEMO_TOOLBAR") == "1":
    from debug_toolbar.settings import PANELS_DEFAULTS

    INSTALLED_APPS.append("debug_toolbar")
    MIDDLEWARE.insert(1, "debug_toolbar.middleware.DebugToolbarMiddleware")
    DEBUG_TOOLBAR_PANELS = [*PANELS_DEFAULTS, "cache_tools.contrib.debug_toolbar.CacheToolsPanel"]
    DEBUG_TOOLBAR_CONFIG = {
        "SHOW_TOOLBAR_CALLBACK": lambda request: True,
        "TOOLBAR_STORE_CLASS": "debug_toolbar.store.DatabaseStore",
        "IS_RUNNING_TESTS": False,
        "USE_SHADOW_DOM": False,  # chromium --dump-dom does not serialise shadow roots
    }
# Sessions in signed cookies: the demo's four workers share no session table writes
# (DEMO_SESSIONS=db: startproject's default, the database).
SESSION_ENGINE = {
    "db": "django.contrib.sessions.backends.db",
}.get(os.environ.get("DEMO_SESSIONS", ""), "django.contrib.sessions.backends.signed_cookies")
ROOT_URLCONF = "testproject.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": {"timeout": 20},
    }
}
if os.environ.get("DEMO_POSTGRES_HOST"):  # a PostgreSQL reached through its socket directory
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DEMO_POSTGRES_DB", "postgres"),
        "USER": os.environ.get("DEMO_POSTGRES_USER", "postgres"),
        "HOST": os.environ["DEMO_POSTGRES_HOST"],
    }
# Each request in a transaction, as many sites run (DEMO_ATOMIC_REQUESTS=1).
DATABASES["default"]["ATOMIC_REQUESTS"] = os.environ.get("DEMO_ATOMIC_REQUESTS") == "1"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

REDIS_URL = shared_redis_url()
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "demo"),
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 2,
        },
    },
}


def _demo_cache() -> str:
    """``DEMO_CACHE`` from the environment, else from the uWSGI ini's ``env`` option: the
    ``pyuwsgi`` wheel starts Python before uWSGI applies ``env``, so ``os.environ`` lacks it."""
    if os.environ.get("DEMO_CACHE"):
        return os.environ["DEMO_CACHE"]
    try:
        import uwsgi
    except ImportError:
        return ""
    declared = uwsgi.opt.get("env") or []
    for item in declared if isinstance(declared, list) else [declared]:
        name, _, value = item.decode().partition("=")
        if name == "DEMO_CACHE":
            return value
    return ""


DEMO_CACHE = _demo_cache()
if DEMO_CACHE == "locmem":
    # The per-worker pitfall, on purpose: cache_tools warns at start-up under uWSGI.
    CACHES["default"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
elif DEMO_CACHE == "uwsgi":
    # uWSGI's own shared cache (testproject/uwsgi-cache.ini declares the cache2).
    CACHES["default"] = {
        "BACKEND": "cache_tools.backends.uwsgi.UWSGICache",
        "LOCATION": "default",
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "demo"),
    }
CACHE_TOOLS = {"CACHE": "default", "NAMESPACE": "ct"}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"cache_tools": {"handlers": ["console"], "level": "WARNING"}},
}
