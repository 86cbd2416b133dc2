"""A one-module Django project: settings, URLconf and views in this file."""

import hashlib
import json

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="caddysnake-tests-not-secret",
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    DATABASES={},
    USE_TZ=True,
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def json_view(request):
    return JsonResponse({"framework": "django", "method": request.method, "path": request.path})


def echo_view(request):
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    body = request.body
    out = {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    if request.content_type == "application/json":
        out["json"] = json.loads(body)
    return JsonResponse(out)


urlpatterns = [
    path("json/", json_view),
    path("echo/", echo_view),
]

application = get_wsgi_application()
