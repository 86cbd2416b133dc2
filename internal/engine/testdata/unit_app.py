# The app faultchain_test.go loads (the Caddy module's tests have their own
# unit_app.py, in the root's testdata/).


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from ", environ["PATH_INFO"].encode("latin-1")]
