"""ASGI 2 apps (ASGI spec, "Legacy Applications") served as ASGI 3."""

import inspect


def _binds(sig, n):
    try:
        sig.bind(*range(n))
        return True
    except TypeError:
        return False


def as_asgi3(app):
    """Returns app as an ASGI 3 callable (ASGI spec, "Legacy Applications").

    An ASGI 2 app is a double callable: app(scope) returns an instance that is
    awaited with instance(receive, send). Classes are always ASGI 2 (calling
    one with a scope constructs the instance). Coroutine functions, and
    objects whose __call__ is one, are ASGI 3. For other callables the
    signature decides: one that takes exactly three arguments is a plain
    function returning an awaitable (an undecorated wrapper around an ASGI 3
    app), anything else is taken as ASGI 2.
    """
    if not inspect.isclass(app):
        # Not a callable check: is the object's __call__ a coroutine function?
        if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(getattr(app, "__call__", None)):  # noqa: B004
            return app
        try:
            sig = inspect.signature(app)
        except (TypeError, ValueError):
            sig = None
        if sig is not None and _binds(sig, 3) and not _binds(sig, 1):
            return app

    async def asgi2(scope, receive, send):
        instance = app(scope)
        return await instance(receive, send)

    asgi2.__wrapped_asgi2__ = app
    return asgi2
