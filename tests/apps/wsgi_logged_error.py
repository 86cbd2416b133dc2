"""A WSGI app whose errors are logged as frameworks log them.

/logged  logs a caught exception with logging to wsgi.errors (as Flask's
         default handler does during a request), then answers 500
/raise   raises: the server logs the traceback
"""

import logging


def _fail():
    return 1 / 0  # logged-error-marker-7731


def app(environ, start_response):
    if environ["PATH_INFO"] == "/raise":
        _fail()
    log = logging.getLogger("wsgi_logged_error")
    handler = logging.StreamHandler(environ["wsgi.errors"])
    handler.setFormatter(logging.Formatter("ERROR in app: %(message)s"))
    log.addHandler(handler)
    try:
        _fail()
    except ZeroDivisionError:
        log.exception("Exception on %s [GET]", environ["PATH_INFO"])
    finally:
        log.removeHandler(handler)
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [b"logged"]
