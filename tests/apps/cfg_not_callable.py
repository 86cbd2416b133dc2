# `app` is not callable: loading cfg_not_callable:app must fail.
app = 42
