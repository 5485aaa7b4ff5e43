"""Settings of the example shop: the recurjobs part is INSTALLED_APPS and RECURJOBS."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "shop.urls"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "recurjobs.django"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

RECURJOBS = {
    "JOBS": ["shop.jobs.RefreshRates", "shop.jobs.NightlyReport"],
    "DATABASE": "default",  # the distributed job's table lives beside Django's
    "DISTRIBUTED": {"delay": "5s"},
    # RECURJOBS_AUTOSTART=false keeps the jobs out of this process (web workers, when the jobs
    # run in `python manage.py recurjobs run`); triggers from views still reach them.
    "AUTOSTART": os.environ.get("RECURJOBS_AUTOSTART", "true"),
}

LOGGING = {  # show recurjobs' one line per run
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"recurjobs": {"handlers": ["console"], "level": "INFO"}},
}
