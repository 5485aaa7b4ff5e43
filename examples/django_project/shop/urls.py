"""GET /status shows the jobs; POST /refresh triggers RefreshRates (in the main instance)."""

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import recurjobs.django
from shop.jobs import RefreshRates, refreshed


def status(request: HttpRequest) -> JsonResponse:
    host = recurjobs.django.get_host()
    jobs = [{"name": s.name, "runs": s.runs} for s in host.status()]
    return JsonResponse({"running": host.running, "refreshed": refreshed["count"], "jobs": jobs})


@csrf_exempt
@require_POST
def refresh(request: HttpRequest) -> JsonResponse:
    accepted = recurjobs.django.get_host().trigger(RefreshRates)
    return JsonResponse({"accepted": accepted}, status=202 if accepted else 503)


urlpatterns = [path("status", status), path("refresh", refresh)]
