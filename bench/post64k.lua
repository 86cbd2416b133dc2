-- wrk script of the 64 KiB echo configurations: every request is a POST with
-- the same 65,536-byte body (wrk adds the Content-Length header).
wrk.method = "POST"
wrk.body = string.rep("0123456789abcdef", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
