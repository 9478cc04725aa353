"""The origin fails: refuses, stalls, closes early, answers nonsense. Ringside answers
502/504 (never a fake complete response), counts each failure by reason, and retries an
idempotent request once when a pooled connection turns out to be closed."""

import time

import ringside_test as rt
from ringside_test import Origin, Ringside, http_request

ERRORS = "ringside_upstream_errors_total"
# Failing upstreams may be logged at error level; anything else may not.
UPSTREAM_LOG = [r"upstream|backend|origin"]


def test_refused_connection_gets_502():
    config = "workers: 1\nupstream: { address: 127.0.0.1:{{dead_port}} }\n"
    with Ringside(config, dead_port=rt.free_port(), allow_log_errors=UPSTREAM_LOG) as rs:
        resp = http_request(rs.port, "GET", "/count")
        assert resp.status == 502, f"expected 502 with no origin listening, got {resp.status}"
        assert b"connect" in resp.body.lower(), f"expected the 502 body to mention connect, got {resp.body!r}"
        rs.wait_metric(ERRORS, 1, reason="connect")
        assert http_request(rs.port, "GET", "/count").status == 502, "expected 502 again"
        rs.wait_metric(ERRORS, 2, reason="connect")


def test_slow_origin_gets_504_and_its_connection_is_not_reused():
    config = "workers: 1\nupstream: { address: {{origin}}, response_timeout: 500ms }\n"
    with Origin() as origin, Ringside(config, origin, allow_log_errors=UPSTREAM_LOG) as rs:
        start = time.monotonic()
        resp = http_request(rs.port, "GET", "/delay?ms=1500")
        took = time.monotonic() - start
        assert resp.status == 504, f"expected 504 after the response timeout, got {resp.status}"
        assert 0.3 <= took <= 1.4, f"expected the 504 about 0.5 s after the request, took {took:.2f} s"
        rs.wait_metric(ERRORS, 1, reason="timeout")
        # The late "slept 1500" must never be taken as the answer to a later request.
        time.sleep(max(0.0, 1.7 - (time.monotonic() - start)))
        for _ in range(3):
            resp = http_request(rs.port, "GET", "/count")
            assert resp.status == 200 and b"conn" in resp.body, (
                f"expected a fresh /count answer after the timeout, got {resp.status} {resp.body!r}")


def test_origin_closing_mid_body_truncates_the_response():
    with Origin() as origin, Ringside("workers: 1\n", origin, allow_log_errors=UPSTREAM_LOG) as rs:
        try:
            resp = http_request(rs.port, "GET", "/close-mid")
        except rt.IncompleteResponse as e:
            got = e.response
            assert got.status in (0, 200), f"expected the origin's 200 head or nothing, got {got!r}"
            assert len(got.body) < 1000, f"expected fewer than 1000 body bytes, got {len(got.body)}"
        except rt.NoResponse:
            pass  # closed before anything: also honest
        else:
            # A complete response is acceptable only as an error, never as a fake 200.
            assert resp.status == 502, (
                f"expected a truncated response or 502, got a complete {resp.status} with {len(resp.body)} bytes")
        errors = rt.wait_for(lambda: rs.metric(ERRORS), timeout=3.0, message=f"{ERRORS} > 0")
        assert errors >= 1, f"expected the failure counted in {ERRORS}, got {errors}"
        assert http_request(rs.port, "GET", "/count").status == 200, "expected ringside to serve afterwards"


def test_origin_closing_without_answer_gets_502():
    with Origin() as origin, Ringside("workers: 1\n", origin, allow_log_errors=UPSTREAM_LOG) as rs:
        resp = http_request(rs.port, "GET", "/close")
        assert resp.status == 502, f"expected 502 when the origin closes without answering, got {resp.status}"
        rs.wait_metric(ERRORS, 1, reason="closed")
        tail = origin.stats()["targets_tail"]
        assert tail.count("/close") in (1, 2), f"expected /close tried at most twice, got {tail}"


def test_malformed_origin_response_gets_502():
    with Origin() as origin, Ringside("workers: 1\n", origin, allow_log_errors=UPSTREAM_LOG) as rs:
        # The origin's own Content-Length: 3 plus this one: an ambiguous response.
        resp = http_request(rs.port, "GET", "/headers?set=Content-Length:5")
        assert resp.status == 502, f"expected 502 for differing Content-Length values, got {resp.status}"
        rs.wait_metric(ERRORS, 1, reason="bad_response")


def test_idempotent_request_survives_a_closed_pooled_connection():
    with Origin(idle_timeout_ms=300) as origin, Ringside("workers: 1\n", origin,
                                                         allow_log_errors=UPSTREAM_LOG) as rs:
        first = http_request(rs.port, "GET", "/count").json()
        for _ in range(3):
            time.sleep(0.5)  # the origin closes the pooled connection after 0.3 s
            resp = http_request(rs.port, "GET", "/count")
            assert resp.status == 200, f"expected 200 after the origin closed the idle connection, got {resp.status}"
            again = resp.json()
            assert again["conn"] != first["conn"], f"expected a new origin connection, got {again} after {first}"
            first = again


def test_origin_restart_is_survived():
    origin = Origin().start()
    try:
        with Ringside("workers: 1\n", origin, allow_log_errors=UPSTREAM_LOG) as rs:
            assert http_request(rs.port, "GET", "/count").status == 200
            origin.stop()
            resp = http_request(rs.port, "GET", "/count")
            assert resp.status == 502, f"expected 502 while the origin is down, got {resp.status}"
            rt.wait_for(lambda: (rs.metric(ERRORS, reason="connect") or 0) >= 1, timeout=3.0,
                        message=f'{ERRORS}{{reason="connect"}} >= 1')
            origin = Origin(port=origin.port).start()
            resp = http_request(rs.port, "GET", "/count")
            assert resp.status == 200, f"expected 200 once the origin is back, got {resp.status}"
    finally:
        origin.stop()


if __name__ == "__main__":
    rt.main()
