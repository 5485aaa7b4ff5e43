#!/usr/bin/env python
"""A small Django project whose recurjobs host refreshes rates and sends a nightly report.

To run:  cd examples/django_project
         python manage.py migrate              # Django's tables (the nightly report counts users)
         python manage.py runserver            # the jobs run in the serving process
         curl localhost:8000/status ; curl -X POST localhost:8000/refresh
         python manage.py recurjobs status
         gunicorn -w 3 shop.wsgi               # one worker per machine runs RefreshRates
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
