from django.shortcuts import render


def home(request):
    # "wsgi" or "asgi": the same view serves both sites of the Caddyfile.
    interface = "asgi" if hasattr(request, "scope") else "wsgi"
    return render(request, "home.html", {"interface": interface})
