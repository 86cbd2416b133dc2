"""A WSGI app that imports and uses much of the standard library, C
accelerators included: datetime, decimal, json, asyncio, ssl, sqlite3 and
more. On CPython 3.12, importing some of them in two sub-interpreters at
once crashed the process (tests/subinterp_matrix_test.go). Not xml.etree's
parser: pyexpat cannot be loaded in a 3.12 sub-interpreter at all."""

import array
import asyncio
import base64
import bz2
import collections
import csv
import datetime
import decimal
import email.message
import fractions
import hashlib
import io
import json
import lzma
import math
import pickle
import random
import re
import select
import socket
import sqlite3
import ssl
import statistics
import struct
import unicodedata
import urllib.parse
import uuid
import zlib
import zoneinfo


async def _twice(x):
    await asyncio.sleep(0)
    return 2 * x


def _report():
    db = sqlite3.connect(":memory:")
    try:
        db.execute("create table t (n integer)")
        db.executemany("insert into t values (?)", [(i,) for i in range(10)])
        total = db.execute("select sum(n) from t").fetchone()[0]
    finally:
        db.close()
    out = io.StringIO()
    csv.writer(out).writerow(["a", "b"])
    msg = email.message.EmailMessage()
    msg["Subject"] = "hi"
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    return {
        "date": (when + datetime.timedelta(days=1)).isoformat(),
        "decimal": str(decimal.Decimal("1.10") + decimal.Decimal("2.205")),
        "fraction": str(fractions.Fraction(1, 3) + fractions.Fraction(1, 6)),
        "sqlite": total,
        "asyncio": asyncio.run(_twice(21)),
        "ssl": ssl.OPENSSL_VERSION.split()[0],
        "sha256": hashlib.sha256(b"caddy").hexdigest()[:12],
        "zlib": len(zlib.decompress(zlib.compress(b"x" * 1000))),
        "bz2": len(bz2.decompress(bz2.compress(b"y" * 100))),
        "lzma": len(lzma.decompress(lzma.compress(b"z" * 100))),
        "pickle": pickle.loads(pickle.dumps({"k": [1, 2]})),
        "struct": struct.unpack("<I", struct.pack("<I", 7))[0],
        "array": sum(array.array("i", [1, 2, 3])),
        "mean": statistics.mean([1, 2, 3, 4]),
        "sqrt": math.isqrt(144),
        "b64": base64.b64encode(b"ok").decode(),
        "re": re.sub(r"\d+", "#", "a1b22"),
        "uuid": len(str(uuid.uuid4())),
        "url": urllib.parse.quote("a b"),
        "csv": out.getvalue().strip(),
        "email": msg["Subject"],
        "unicode": unicodedata.name("é"),
        "counter": collections.Counter("aab").most_common(1)[0][0],
        "random": 0 <= random.random() < 1,
        "socket": socket.AF_INET == socket.AddressFamily.AF_INET,
        "select": hasattr(select, "poll"),
        "zoneinfo": zoneinfo.ZoneInfo("UTC").key,
    }


def app(environ, start_response):
    body = json.dumps(_report(), sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
