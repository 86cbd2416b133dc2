"""/big: 10 MiB of pseudo-random bytes in 1 MiB chunks; X-SHA256 is their hash."""

import hashlib
import random

SIZE = 10 * 1024 * 1024
DATA = random.Random(3333).randbytes(SIZE)
SHA = hashlib.sha256(DATA).hexdigest()
CHUNK = 1024 * 1024


def app(environ, start_response):
    start_response("200 OK", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(SIZE)),
        ("X-SHA256", SHA),
    ])
    return [DATA[i:i + CHUNK] for i in range(0, SIZE, CHUNK)]
