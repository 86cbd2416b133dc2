"""The ASGI lifespan protocol (lifespan spec 2.0), from the server's side.

One Lifespan runs the app once with a "lifespan" scope for the app's whole
life: startup() sends lifespan.startup and waits for the app's answer,
shutdown() later sends lifespan.shutdown on the same call. Both return
(ok, message), which the server loop (server.py) hands to asgi_ready /
asgi_stopped.

Nothing here talks to the native module: logging goes through the `log`
callable given to the constructor, so this file has no Caddy dependency.
"""

import asyncio
import traceback

from ..bridge import LOG_INFO, LOG_WARNING

_STARTUP = ("lifespan.startup.complete", "lifespan.startup.failed")
_SHUTDOWN = ("lifespan.shutdown.complete", "lifespan.shutdown.failed")

# What _wait() returns when the timeout expired (None: the app returned).
_TIMED_OUT = object()


class Lifespan:
    """Drives one app through startup and shutdown.

    mode is "on" (the app must support lifespan), "off" (never call it) or
    "auto" (use it if the app supports it). state is the dict shared with
    the app as scope["state"]; request scopes get shallow copies of it.
    """

    __slots__ = (
        "app",
        "mode",
        "state",
        "startup_timeout",
        "shutdown_timeout",
        "log",
        "queue",
        "answer",
        "expect",
        "task",
        "started",
        "tb",
        "summary",
    )

    def __init__(self, app, mode, state, startup_timeout, shutdown_timeout, log):
        self.app = app  # an ASGI 3 callable
        self.mode = mode
        self.state = state
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.log = log  # log(level, message)
        self.queue = None  # messages for the app's receive()
        self.answer = None  # future: the app's answer (a message dict) or None if it ended
        self.expect = None  # message types send() accepts now
        self.task = None
        self.started = False  # startup completed: shutdown must run
        self.tb = None  # traceback of the app's exception, if it raised
        self.summary = None  # its last line, for short log messages

    # ------------------------------------------------------------ the app's side

    async def receive(self):
        return await self.queue.get()

    async def send(self, message):
        kind = message.get("type") if isinstance(message, dict) else None
        expect = self.expect
        if expect is None:
            # Between startup and shutdown the app has nothing to say.
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}': no lifespan message is expected "
                f"until 'lifespan.shutdown' has been received."
            )
        if kind not in expect:
            raise RuntimeError(f"Expected ASGI message '{expect[0]}' or '{expect[1]}', but got '{kind}'.")
        self.expect = None
        if not self.answer.done():
            self.answer.set_result(message)

    async def _main(self):
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as exc:  # noqa: B036 - the app's SystemExit must not stop the loop
            self.tb = "".join(traceback.format_exception(exc))
            self.summary = "".join(traceback.format_exception_only(exc)).strip()

    def _ended(self, task):
        # The app returned or raised: whoever waits for an answer gets None.
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(None)

    async def _wait(self, timeout):
        # asyncio.wait, unlike wait_for, never cancels what it waits for.
        done, _ = await asyncio.wait((self.answer,), timeout=timeout)
        if not done:
            self.task.cancel()
            return _TIMED_OUT
        return self.answer.result()

    # ------------------------------------------------------------ the server's side

    async def startup(self):
        """Returns (ok, message); ok True also when lifespan is skipped."""
        if self.mode == "off":
            return True, ""
        loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        self.answer = loop.create_future()
        self.expect = _STARTUP
        self.queue.put_nowait({"type": "lifespan.startup"})
        self.task = loop.create_task(self._main())
        self.task.add_done_callback(self._ended)
        answer = await self._wait(self.startup_timeout)
        if answer is _TIMED_OUT:
            return False, (
                f"ASGI lifespan startup did not complete within {self.startup_timeout:g} seconds (startup_timeout)"
            )
        if answer is None:
            if self.mode == "auto":
                # Lifespan spec: "If an exception is raised when calling the
                # application callable with a lifespan.startup message or a
                # scope with type lifespan, the server must continue but not
                # send any lifespan events." Apps that just return for scope
                # types they do not know are treated alike.
                why = f"it raised {self.summary}" if self.tb else "it returned without answering lifespan.startup"
                self.log(
                    LOG_INFO,
                    f"ASGI lifespan protocol appears unsupported by the app ({why}); "
                    f"continuing without it (set lifespan on to require it)",
                )
                return True, ""
            if self.tb:
                return False, f"ASGI app raised an exception during lifespan startup:\n{self.tb}"
            return False, (
                "ASGI app returned from the lifespan scope without sending lifespan.startup.complete (lifespan is on)"
            )
        if answer["type"] == "lifespan.startup.failed":
            return False, _message(answer, "lifespan.startup.failed")
        self.started = True
        return True, ""

    async def shutdown(self):
        """Returns (ok, message). Only does something if startup completed."""
        if not self.started:
            return True, ""
        self.started = False  # shutdown runs once
        if self.task.done():
            if self.tb:
                return False, f"ASGI app's lifespan call raised an exception after startup:\n{self.tb}"
            return True, ""  # it returned after startup: nothing left to shut down
        self.answer = asyncio.get_running_loop().create_future()
        self.expect = _SHUTDOWN
        self.queue.put_nowait({"type": "lifespan.shutdown"})
        answer = await self._wait(self.shutdown_timeout)
        if answer is _TIMED_OUT:
            return False, (
                f"ASGI lifespan shutdown did not complete within {self.shutdown_timeout:g} seconds (shutdown_timeout)"
            )
        if answer is None:
            if self.tb:
                return False, f"ASGI app raised an exception during lifespan shutdown:\n{self.tb}"
            self.log(
                LOG_WARNING, "ASGI app returned from the lifespan scope without sending lifespan.shutdown.complete"
            )
            return True, ""
        if answer["type"] == "lifespan.shutdown.failed":
            return False, _message(answer, "lifespan.shutdown.failed")
        return True, ""


def _message(answer, kind):
    message = answer.get("message", "")
    if not isinstance(message, str):
        message = str(message)
    # An empty message would make an empty error line in Caddy's output.
    return message or f"the app sent {kind} without a message"
