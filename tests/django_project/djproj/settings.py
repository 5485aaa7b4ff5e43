"""Settings of the test project, driven by the environment so each test picks its own:

- ``DJTEST_OUT``: the file the jobs append their records to (required);
- ``DJTEST_DB``: a SQLAlchemy-style PostgreSQL URL for ``DATABASES["default"]`` (default: a
  SQLite file beside ``DJTEST_OUT``); ``DJTEST_CONN_MAX_AGE`` (seconds, "none" = forever);
- ``DJTEST_JOBS``: comma-separated names of :mod:`djjobs.jobs` to register (default "PidJob");
- ``DJTEST_MAIN_DOM`` ("true"/"false"), ``DJTEST_LOCKS`` (the main instance lock directory),
  ``DJTEST_PREFIX`` (table prefix), ``DJTEST_CLOSE`` ("false" turns CLOSE_CONNECTIONS off),
  ``DJTEST_RECURJOBS`` (a JSON object merged into RECURJOBS, to test bad settings);
- ``RECURJOBS_AUTOSTART`` ("false" turns AUTOSTART off, as in docs/django.md).
"""

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

OUT = os.environ["DJTEST_OUT"]
SECRET_KEY = "recurjobs-test-project-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "djproj.urls"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "recurjobs.django"]
MIDDLEWARE: list[str] = []


def _database() -> dict[str, object]:
    url = os.environ.get("DJTEST_DB")
    age = os.environ.get("DJTEST_CONN_MAX_AGE", "0")
    max_age = None if age == "none" else int(age)
    if not url:
        name = str(Path(OUT).with_name("django.sqlite3"))
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": max_age,
    }


DATABASES = {"default": _database()}

RECURJOBS: dict[str, object] = {
    "JOBS": [f"djjobs.jobs.{n}" for n in os.environ.get("DJTEST_JOBS", "PidJob").split(",")],
    "DATABASE": "default",
    "MAIN_DOM": os.environ.get("DJTEST_MAIN_DOM", "true") == "true",
    "MAIN_DOM_DIRECTORY": os.environ.get("DJTEST_LOCKS") or None,
    "TABLE_PREFIX": os.environ.get("DJTEST_PREFIX", "recurjobs_"),
    "DISTRIBUTED": {"poll_period": 0.2, "delay": 0},
    "CLOSE_CONNECTIONS": os.environ.get("DJTEST_CLOSE", "true") == "true",
    "EXIT_TIMEOUT": 5,
    # As docs/django.md shows: the gunicorn --preload recipe turns it off from gunicorn.conf.py.
    "AUTOSTART": os.environ.get("RECURJOBS_AUTOSTART", "true"),
}
RECURJOBS.update(json.loads(os.environ.get("DJTEST_RECURJOBS", "{}")))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"recurjobs": {"handlers": ["stderr"], "level": "INFO"}},
}
