"""The test origin and the harness's HTTP client, checked against each other without
ringside, so a failure elsewhere points at the proxy and not at the tools."""

import time

import ringside_test as rt
from ringside_test import Client, Origin, http_request, raw_exchange


def test_origin_keep_alive_counts_requests_per_connection():
    with Origin() as origin, Client(origin.port) as c:
        seen = [c.request("GET", "/count").json() for _ in range(3)]
        assert [s["req"] for s in seen] == [1, 2, 3], f"expected req 1,2,3 on one connection, got {seen}"
        assert len({s["conn"] for s in seen}) == 1, f"expected one connection serial, got {seen}"
        other = http_request(origin.port, "GET", "/count").json()
        assert other["conn"] != seen[0]["conn"], f"a new connection got the same serial: {other}"


def test_origin_answers_pipelined_requests_in_order():
    with Origin() as origin, Client(origin.port) as c:
        c.send(b"".join(rt.build_request("GET", t) for t in
                        ["/delay?ms=50", "/bytes?n=3", "/status?code=204", "/echo?i=4"]))
        r1, r2, r3, r4 = (c.read_response() for _ in range(4))
        assert r1.body == b"slept 50\n", f"expected 'slept 50', got {r1.body!r}"
        assert r2.body == b"abc", f"expected 'abc', got {r2.body!r}"
        assert (r3.status, r3.body) == (204, b""), f"expected an empty 204, got {r3!r}"
        assert r4.json()["target"] == "/echo?i=4", f"expected /echo?i=4 last, got {r4.body!r}"


def test_origin_reads_chunked_bodies_and_expect_continue():
    body = bytes(range(256)) * 1000
    with Origin() as origin, Client(origin.port) as c:
        resp = c.request("POST", "/echo-body", [("Transfer-Encoding", "chunked"),
                                                 ("Content-Type", "application/x-test")],
                         rt.encode_chunked(body, (1, 1000, 65536), trailers=[("X-T", "1")]))
        assert resp.body == body, f"expected the {len(body)} bytes back, got {len(resp.body)}"
        assert resp.header("Content-Type") == "application/x-test", f"got {resp.headers}"

        c.send(rt.build_request("POST", "/echo", [("Expect", "100-continue"), ("Content-Length", "5")]))
        interim = c.read_response(stop_at_interim=True)
        assert interim.status == 100, f"expected 100 Continue first, got {interim!r}"
        c.send(b"hello")
        echo = c.read_response().json()
        assert echo["body_length"] == 5, f"expected a 5-byte body, got {echo}"
        assert echo["body_fnv1a64"] == "a430d84680aabd0b", f"FNV-1a of 'hello' differs: {echo}"


def test_origin_response_framings():
    with Origin() as origin:
        port = origin.port
        r = http_request(port, "GET", "/bytes?n=100000")
        assert r.body == rt.pattern(100000), f"/bytes: expected the pattern, got {len(r.body)} bytes"
        r = http_request(port, "GET", "/chunked?chunks=5&size=1000")
        assert r.chunked and r.body == rt.pattern(5000), f"/chunked: got {r!r}"
        r = http_request(port, "GET", "/until-close?n=777")
        assert r.until_close and r.body == rt.pattern(777), f"/until-close: got {r!r}"
        r = http_request(port, "HEAD", "/bytes?n=100")
        assert (r.status, r.header("Content-Length"), r.body) == (200, "100", b""), f"HEAD: got {r!r}"
        r = http_request(port, "GET", "/status?code=503")
        assert (r.status, r.body) == (503, b"status 503\n"), f"/status: got {r!r}"
        r = http_request(port, "GET", "/headers?set=X-Foo:bar&set=Connection:X-Foo")
        assert r.header("X-Foo") == "bar" and r.header("Connection") == "X-Foo", f"/headers: got {r!r}"
        r = http_request(port, "GET", "/nowhere")
        assert r.status == 404, f"expected 404, got {r.status}"

        try:
            http_request(port, "GET", "/close-mid")
            raise AssertionError("expected /close-mid to end early")
        except rt.IncompleteResponse as e:
            assert e.response.body == rt.pattern(10), f"expected 10 bytes, got {e.response.body!r}"
        try:
            http_request(port, "GET", "/close")
            raise AssertionError("expected /close to close without a response")
        except rt.NoResponse:
            pass


def test_origin_stats_record_malformed_requests():
    with Origin() as origin:
        origin.reset()
        http_request(origin.port, "GET", "/count?marker=1")
        reply = raw_exchange(origin.port, b"GET /x?marker=2 HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n")
        assert reply.status == 400 and reply.closed, f"expected 400 and close, got {reply!r}"
        stats = origin.stats()
        assert stats["requests"] == 2, f"expected 2 requests recorded, got {stats}"
        assert stats["targets_tail"][0] == "/count?marker=1", f"got {stats}"
        assert stats["targets_tail"][1].startswith("<malformed> GET /x?marker=2"), f"got {stats}"


def test_origin_idle_timeout_closes_idle_connections():
    with Origin(idle_timeout_ms=200) as origin, Client(origin.port) as c:
        assert c.request("GET", "/count").status == 200
        start = time.monotonic()
        assert c.wait_closed(3.0), "expected the origin to close an idle connection"
        waited = time.monotonic() - start
        assert 0.1 < waited < 2.0, f"expected a close after ~0.2 s, got {waited:.2f} s"


def test_metrics_parser():
    text = ('# HELP x_total A counter.\n# TYPE x_total counter\n'
            'x_total{route="/a",code="200"} 3\nx_total{route="/b\\"q",code="200"} 1\n'
            'y 2.5e-3\nz{le="+Inf"} +Inf\n')
    m = rt.parse_metrics(text)
    assert rt.metric_value(m, "x_total", code="200") == 4, f"got {m}"
    assert rt.metric_value(m, "x_total", route='/b"q') == 1, f"got {m}"
    assert rt.metric_value(m, "y") == 0.0025 and rt.metric_value(m, "nope") is None, f"got {m}"
    for bad in ("x_total{route=\"a\" 1\n", "x_total one\n", "x y 1\n"):
        try:
            rt.parse_metrics(bad)
        except AssertionError:
            continue
        raise AssertionError(f"expected {bad!r} to be refused")


if __name__ == "__main__":
    rt.main()
