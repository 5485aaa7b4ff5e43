"""The WSGI application for gunicorn: ``gunicorn djproj.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproj.settings")
application = get_wsgi_application()
