"""``/pid`` answers the serving process's pid; ``/trigger`` triggers PidJob from a view."""

import os

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from djjobs.jobs import PidJob

import recurjobs.django


def pid(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(os.getpid()))


def trigger(request: HttpRequest) -> JsonResponse:
    accepted = recurjobs.django.get_host().trigger(PidJob)
    return JsonResponse({"accepted": accepted, "pid": os.getpid()})


urlpatterns = [path("pid", pid), path("trigger", trigger)]
