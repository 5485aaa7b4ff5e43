"""The WSGI application: ``gunicorn -w 3 shop.wsgi``; each worker loads Django, one per
machine runs RefreshRates, and NightlyReport runs once in the cluster."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
application = get_wsgi_application()
