-- wrk script for the HTTP API benchmark (docs/BENCHMARKS.md, "HTTP API"):
-- the README's hello call, POST with a JSON argument array, keep-alive.
wrk.method = "POST"
wrk.body = '["world"]'
wrk.headers["Content-Type"] = "application/json"
