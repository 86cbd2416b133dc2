"""Imported by TestDieByFatalSignals' child process: faults as it loads."""

import ctypes
import os

mode = os.environ.get("CADDYSNAKE_DIE_TEST")
if mode == "segv":
    ctypes.string_at(0)  # SIGSEGV in libc
if mode == "abort":
    os.abort()  # SIGABRT


def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]
