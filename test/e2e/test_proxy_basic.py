"""Proxying that works: bodies, forwarded headers, request ids, hop-by-hop fields,
keep-alive reuse towards the origin, pipelining, large bodies, Expect: 100-continue."""

import random
import re

import ringside_test as rt
from ringside_test import Client, Origin, Ringside, http_request

CONFIG = """
workers: 1
routes:
  - name: count
    match: { prefix: /count }
  - name: rest
    match: { prefix: / }
"""

def echo_headers(resp):
    """The request fields the origin's /echo saw, as [(name, value)]."""
    assert resp.status == 200, f"expected 200 from /echo, got {resp.status}: {resp.body[:200]!r}"
    return [tuple(pair) for pair in resp.json()["headers"]]


def list_tokens(value):
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


def test_get_returns_the_origin_body():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        resp = http_request(rs.port, "GET", "/bytes?n=1000")
        assert resp.status == 200, f"expected 200, got {resp.status}"
        assert resp.body == rt.pattern(1000), f"expected the 1000-byte pattern, got {resp.body[:60]!r}..."
        count = http_request(rs.port, "GET", "/count").json()
        assert set(count) == {"conn", "req", "conns"}, f"expected /count JSON, got {count}"


def test_forwarding_headers_are_added():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        resp = http_request(rs.port, "GET", "/echo", [("Host", "example.test:8080")])
        seen = echo_headers(resp)
        assert rt.header_values(seen, "Host") == ["example.test:8080"], f"expected the client's Host kept, got {seen}"
        assert rt.header_value(seen, "X-Forwarded-For") == "127.0.0.1", f"expected X-Forwarded-For 127.0.0.1, got {seen}"
        assert rt.header_value(seen, "X-Forwarded-Proto") == "http", f"expected X-Forwarded-Proto http, got {seen}"
        assert rt.header_value(seen, "X-Forwarded-Host") == "example.test:8080", f"expected X-Forwarded-Host, got {seen}"
        assert "1.1 ringside" in list_tokens(rt.header_value(seen, "Via")), f"expected Via: 1.1 ringside upstream, got {seen}"
        assert "1.1 ringside" in list_tokens(resp.header("Via")), f"expected Via: 1.1 ringside on the response, got {resp.headers}"


def test_x_forwarded_for_is_appended():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        seen = echo_headers(http_request(rs.port, "GET", "/echo", [("X-Forwarded-For", "10.0.0.1")]))
        values = rt.header_values(seen, "X-Forwarded-For")
        hops = [h.strip() for v in values for h in v.split(",")]
        assert hops == ["10.0.0.1", "127.0.0.1"], f"expected 10.0.0.1 then 127.0.0.1, got {values}"


def test_request_id_is_generated_when_absent():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        ids = []
        for _ in range(2):
            resp = http_request(rs.port, "GET", "/echo")
            upstream_id = rt.header_value(echo_headers(resp), "X-Request-Id")
            assert upstream_id and re.fullmatch(r"[0-9a-f]{32}", upstream_id), (
                f"expected a 32-hex-digit X-Request-Id upstream, got {upstream_id!r}")
            assert resp.header("X-Request-Id") == upstream_id, (
                f"expected the response X-Request-Id {upstream_id}, got {resp.header('X-Request-Id')!r}")
            ids.append(upstream_id)
        assert ids[0] != ids[1], f"expected a fresh id per request, got {ids}"
        rs.wait_log(lambda l: l.get("msg") == "access" and l.get("request_id") == ids[1],
                    what=f"an access log line with request_id {ids[1]}")


def test_client_request_id_is_kept_and_logged():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        resp = http_request(rs.port, "GET", "/count?x=1", [("X-Request-Id", "client-id-42")])
        assert resp.status == 200, f"expected 200, got {resp.status}"
        assert resp.header("X-Request-Id") == "client-id-42", f"expected the client's id echoed, got {resp.headers}"
        seen = echo_headers(http_request(rs.port, "GET", "/echo", [("X-Request-Id", "client-id-43")]))
        assert rt.header_values(seen, "X-Request-Id") == ["client-id-43"], f"expected exactly the client's id upstream, got {seen}"

        line = rs.wait_log(lambda l: l.get("msg") == "access" and l.get("request_id") == "client-id-42",
                           what="the access log line of client-id-42")
        expected = {"method": "GET", "target": "/count?x=1", "status": 200, "route": "count"}
        got = {k: line.get(k) for k in expected}
        assert got == expected, f"expected access log fields {expected}, got {line}"
        for field in ("bytes", "duration_ms", "upstream_ms"):
            assert isinstance(line.get(field), (int, float)) and line[field] >= 0, (
                f"expected a non-negative number in access log field {field}, got {line}")
        assert line["bytes"] > 0, f"expected response bytes > 0 in the access log, got {line}"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", str(line.get("ts"))), (
            f"expected an RFC 3339 UTC ts, got {line.get('ts')!r}")


def test_hop_by_hop_request_fields_are_removed():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        seen = echo_headers(http_request(rs.port, "GET", "/echo", [
            ("Connection", "keep-alive, X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "x"), ("TE", "trailers"), ("Upgrade", "foo/1"), ("X-Kept", "yes")]))
        names = {n.lower() for n, _ in seen}
        leaked = names & {"x-secret", "keep-alive", "proxy-connection", "te", "upgrade"}
        assert not leaked, f"expected no hop-by-hop fields upstream, got {sorted(leaked)} in {seen}"
        for value in rt.header_values(seen, "Connection"):
            assert set(list_tokens(value)) <= {"keep-alive", "close"}, (
                f"expected ringside's own Connection upstream, got Connection: {value}")
        assert rt.header_value(seen, "X-Kept") == "yes", f"expected X-Kept forwarded, got {seen}"


def test_hop_by_hop_response_fields_are_removed():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        resp = http_request(rs.port, "GET", "/headers?set=Connection:X-Foo&set=X-Foo:bar"
                            "&set=Keep-Alive:timeout%3D5&set=X-Kept:yes")
        assert resp.status == 200, f"expected 200, got {resp.status}"
        names = {n.lower() for n, _ in resp.headers}
        assert "x-foo" not in names, f"expected X-Foo (named by Connection) removed, got {resp.headers}"
        assert "keep-alive" not in names, f"expected Keep-Alive removed, got {resp.headers}"
        for value in resp.header_values("Connection"):
            assert "x-foo" not in list_tokens(value), f"expected the origin's Connection not forwarded, got {value}"
        assert resp.header("X-Kept") == "yes", f"expected X-Kept forwarded, got {resp.headers}"


def test_upstream_connection_is_reused_on_one_client_connection():
    with Origin() as origin, Ringside(CONFIG, origin) as rs, Client(rs.port) as c:
        seen = [c.request("GET", "/count").json() for _ in range(20)]
        conns = {s["conn"] for s in seen}
        assert len(conns) == 1, f"expected 20 requests on 1 origin connection, got connections {sorted(conns)}"


def test_upstream_connection_is_reused_across_client_connections():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        seen = [http_request(rs.port, "GET", "/count").json() for _ in range(20)]
        conns = {s["conn"] for s in seen}
        assert len(conns) == 1, f"expected 20 client connections served over 1 origin connection, got {sorted(conns)}"
        assert seen[-1]["req"] >= 20, f"expected the origin connection to carry all 20 requests, got {seen[-1]}"


def test_pipelined_requests_are_answered_in_order():
    targets = ["/delay?ms=50", "/count", "/bytes?n=100", "/echo?i=3", "/bytes?n=70000", "/count",
               "/status?code=204", "/chunked?chunks=3&size=1000", "/echo?i=8", "/count"]
    with Origin() as origin, Ringside(CONFIG, origin) as rs, Client(rs.port) as c:
        c.send(b"".join(rt.build_request("GET", t) for t in targets))
        responses = [c.read_response() for _ in targets]
        for i, (target, resp) in enumerate(zip(targets, responses)):
            status = 204 if "code=204" in target else 200
            assert resp.status == status, f"response {i} ({target}): expected {status}, got {resp.status}"
            if target.startswith("/delay"):
                expected = b"slept 50\n"
            elif target.startswith("/bytes"):
                expected = rt.pattern(int(target.split("=")[1]))
            elif target.startswith("/chunked"):
                expected = rt.pattern(3000)
            elif target.startswith("/echo"):
                got = resp.json()["target"]
                assert got == target, f"response {i}: expected the echo of {target}, got {got}"
                continue
            elif target.startswith("/count"):
                assert "conn" in resp.json(), f"response {i}: expected /count JSON, got {resp.body!r}"
                continue
            else:
                expected = b""
            assert resp.body == expected, (
                f"response {i} ({target}): expected {len(expected)} bytes, got {len(resp.body)}: {resp.body[:60]!r}")


def test_large_request_body_with_content_length():
    body = random.Random(1).randbytes(8 << 20)
    with Origin() as origin, Ringside(CONFIG, origin) as rs, Client(rs.port, timeout=30) as c:
        resp = c.request("POST", "/echo-body", [("Content-Type", "application/x-test")], body)
        assert resp.status == 200, f"expected 200, got {resp.status}"
        assert len(resp.body) == len(body) and resp.body == body, (
            f"expected the 8 MiB body back intact, got {len(resp.body)} bytes"
            f"{'' if len(resp.body) != len(body) else ' that differ'}")
        assert resp.header("Content-Type") == "application/x-test", f"expected Content-Type kept, got {resp.headers}"


def test_large_request_body_chunked():
    body = random.Random(2).randbytes(8 << 20)
    wire = rt.encode_chunked(body, sizes=(1, 100, 65536, 1000003, 17))
    with Origin() as origin, Ringside(CONFIG, origin) as rs, Client(rs.port, timeout=30) as c:
        resp = c.request("POST", "/echo-body", [("Transfer-Encoding", "chunked")], wire)
        assert resp.status == 200, f"expected 200, got {resp.status}"
        assert resp.body == body, f"expected the 8 MiB chunked body back intact, got {len(resp.body)} bytes"
        after = c.request("GET", "/count")
        assert after.status == 200, f"expected the connection usable after a chunked body, got {after.status}"


def test_large_response_bodies():
    with Origin() as origin, Ringside(CONFIG, origin) as rs, Client(rs.port, timeout=30) as c:
        resp = c.request("GET", "/bytes?n=16777216")
        assert resp.status == 200 and resp.body == rt.pattern(16777216), (
            f"expected 16 MiB of pattern, got status {resp.status} and {len(resp.body)} bytes")
        resp = c.request("GET", "/chunked?chunks=300&size=65536")
        assert resp.status == 200 and resp.body == rt.pattern(300 * 65536), (
            f"expected 300 chunks of 64 KiB, got status {resp.status} and {len(resp.body)} bytes")


def test_response_until_close_is_delivered():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        resp = http_request(rs.port, "GET", "/until-close?n=5000")
        assert resp.status == 200 and resp.body == rt.pattern(5000), (
            f"expected the 5000 bytes of a close-delimited body, got {resp.status} and {len(resp.body)} bytes")


def test_bodiless_responses():
    with Origin() as origin, Ringside(CONFIG, origin) as rs, Client(rs.port) as c:
        resp = c.request("HEAD", "/bytes?n=5000")
        assert (resp.status, resp.body) == (200, b""), f"expected a 200 HEAD without body, got {resp!r}"
        assert resp.header("Content-Length") == "5000", f"expected HEAD to keep Content-Length: 5000, got {resp.headers}"
        resp = c.request("HEAD", "/chunked?chunks=2&size=10")
        assert (resp.status, resp.body) == (200, b""), f"expected HEAD on a chunked resource without body, got {resp!r}"
        for code in (204, 304):
            resp = c.request("GET", f"/status?code={code}")
            assert (resp.status, resp.body) == (code, b""), f"expected {code} without body, got {resp!r}"
        # Any stray body byte would now be read as the start of this response.
        resp = c.request("GET", "/count")
        assert resp.status == 200 and "conn" in resp.json(), f"expected /count intact afterwards, got {resp!r}"


def test_expect_100_continue():
    body = b"hello world"
    with Origin() as origin, Ringside(CONFIG, origin) as rs, Client(rs.port, timeout=5) as c:
        c.send(rt.build_request("POST", "/echo-body", [("Expect", "100-continue"),
                                                       ("Content-Length", str(len(body)))]))
        try:
            interim = c.read_response(stop_at_interim=True)
        except TimeoutError:
            raise AssertionError("expected 100 Continue before sending the body, got nothing in 5 s") from None
        assert interim.status == 100, f"expected 100 Continue first, got {interim!r}"
        c.send(body)
        resp = c.read_response()
        assert (resp.status, resp.body) == (200, body), f"expected the body echoed, got {resp!r}"


def test_http10_client_gets_no_chunked_coding():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        reply = rt.raw_exchange(rs.port, rt.build_request("GET", "/chunked?chunks=3&size=10",
                                                          version="HTTP/1.0"), read_timeout=3.0)
        assert reply.closed, "expected ringside to close an HTTP/1.0 connection without keep-alive"
        head, _, body = bytes(reply).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], f"expected 200, got {head!r}"
        assert b"transfer-encoding" not in head.lower(), f"expected no Transfer-Encoding towards HTTP/1.0, got {head!r}"
        resp = rt.parse_response(bytes(reply))
        assert resp.body == rt.pattern(30), f"expected the 30 pattern bytes, got {resp.body!r}"


def test_http10_keep_alive_is_confirmed_and_honoured():
    """An HTTP/1.0 client that asks for keep-alive is told so (RFC 9112 §9.3) and can
    send its next request on the same connection."""
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        c = rt.Client(rs.port)
        for i in range(2):
            c.send(rt.build_request("GET", "/bytes?n=10", [("Connection", "keep-alive")],
                                    version="HTTP/1.0"))
            resp = c.read_response()
            assert (resp.status, resp.body) == (200, rt.pattern(10)), f"request {i}: got {resp!r}"
            assert (resp.header("connection") or "").lower() == "keep-alive", \
                f"request {i}: expected Connection: keep-alive, got {resp.header('connection')!r}"


if __name__ == "__main__":
    rt.main()
