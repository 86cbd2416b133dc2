"""Echoes each line of the request body back as soon as it is read, with
the write() callable: a client can see line 1 answered before it sends line 2."""


def app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    for line in environ["wsgi.input"]:
        write(b"got: " + line)
    return []
