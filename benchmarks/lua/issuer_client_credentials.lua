-- POST /oauth/token, grant_type=client_credentials, HTTP Basic from $ISSUER_BENCH_AUTH.
-- Driven by benchmarks/issuer_bench.py.
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("ISSUER_BENCH_AUTH")
