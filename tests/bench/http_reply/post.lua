-- wrk script of tests/bench/http_reply/run.sh: POST the JSON argument array
-- in $BODY, keep-alive.
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
