# Importing this module fails: the config-error test expects the traceback.
import no_such_module_caddysnake_4242  # noqa: F401


def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]
