"""Django with Channels: a JSON view over HTTP and a WebSocket consumer."""

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="caddysnake-tests",
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["channels"],
    MIDDLEWARE=[],
)
django.setup()

from channels.generic.websocket import WebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def hello(request):
    return JsonResponse({"framework": "django", "method": request.method})


urlpatterns = [path("hello", hello)]


class Echo(WebsocketConsumer):
    def connect(self):
        self.accept()

    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data="channels: " + (text_data or ""))


app = ProtocolTypeRouter({
    "http": get_asgi_application(),
    "websocket": URLRouter([path("ws", Echo.as_asgi())]),
})
