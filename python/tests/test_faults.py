"""caddysnake.faults: os._exit() is logged with the app and request."""

import os

import pytest

from caddysnake import bridge, faults


class Log:
    def __init__(self):
        self.lines = []

    def log(self, handle, level, message):
        self.lines.append((handle, level, message))


@pytest.fixture
def exits(monkeypatch):
    """The statuses os._exit was really called with (it is not, here)."""
    calls = []
    log = Log()
    monkeypatch.setattr(bridge, "native", log)
    monkeypatch.setattr(faults, "_pid", os.getpid())
    monkeypatch.setattr(faults, "targets", {})
    monkeypatch.setattr(faults._exit, "__defaults__", (calls.append,))
    return calls, log


def test_exit_in_a_request_is_logged_with_its_handle_and_app(exits, run, native):
    # run's fake native module replaces exits' log (both are bridge.native).
    calls, _ = exits

    def app(environ, start_response):
        faults._exit(3)
        start_response("200 OK", [])
        return [b""]

    faults.targets[id(app)] = "mod:app"
    run(app)
    assert calls == [3]
    [(handle, level, message)] = native.logs
    assert handle == 1 and level == faults.LOG_ERROR
    assert "python app mod:app called os._exit(3) while serving this request" in message
    assert "test_faults.py" in message  # the stack it was called from


def test_exit_outside_a_request(exits):
    calls, log = exits
    faults.targets[1] = "only:app"
    faults._exit(0)
    assert calls == [0]
    [(handle, _, message)] = log.lines
    assert handle == 0 and "python app only:app called os._exit(0) outside any request" in message


def test_a_forked_child_exits_without_logging(exits, monkeypatch):
    calls, log = exits
    monkeypatch.setattr(faults, "_pid", -1)
    faults._exit(5)
    assert calls == [5] and log.lines == []
