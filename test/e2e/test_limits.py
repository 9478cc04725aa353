"""Connection limits and client timeouts."""

import time

import ringside_test as rt
from ringside_test import Client, Origin, Ringside, http_request, raw_exchange

REJECTED = "ringside_rejected_requests_total"


def test_connections_over_the_limit_get_503():
    config = "workers: 1\nlimits: { max_connections: 2 }\n"
    with Origin() as origin, Ringside(config, origin) as rs:
        first, second = Client(rs.port), Client(rs.port)
        try:
            for c in (first, second):
                resp = c.request("GET", "/count")
                assert resp.status == 200, f"expected 200 within the limit, got {resp.status}"
            reply = raw_exchange(rs.port, rt.build_request("GET", "/count?m=third"), read_timeout=3.0)
            assert reply.status == 503, f"expected 503 for a third connection, got {bytes(reply[:120])!r}"
            assert reply.closed, "expected the third connection closed after its 503"
            rs.wait_metric(REJECTED, 1, reason="max_connections")
            tail = origin.stats()["targets_tail"]
            assert "/count?m=third" not in tail, f"expected the third connection's request not forwarded, got {tail}"
        finally:
            first.close()
        # A slot is free again once ringside has seen the close.
        rt.wait_for(lambda: _status_or_none(rs.port) == 200, timeout=3.0,
                    message="a new connection to be served after one closed")
        second.close()


def _status_or_none(port):
    try:
        return http_request(port, "GET", "/count", timeout=2.0).status
    except (OSError, rt.NoResponse, rt.IncompleteResponse, rt.ProtocolError):
        return None


def test_incomplete_head_gets_408_after_header_timeout():
    config = "workers: 1\ntimeouts: { header: 500ms }\n"
    with Origin() as origin, Ringside(config, origin) as rs:
        start = time.monotonic()
        reply = raw_exchange(rs.port, b"GET /count?m=slow HTTP/1.1\r\nHost: a\r\nX-Half: ", read_timeout=5.0)
        took = time.monotonic() - start
        assert reply.status == 408, f"expected 408 for a head that never completes, got {bytes(reply[:120])!r}"
        assert reply.closed, "expected the connection closed after 408"
        assert 0.3 <= took <= 3.0, f"expected the 408 about 0.5 s after the first byte, took {took:.2f} s"
        rs.wait_metric(REJECTED, 1, reason="header_timeout")
        tail = origin.stats()["targets_tail"]
        assert not tail, f"expected nothing forwarded, got {tail}"


def test_slow_head_within_the_timeout_is_served():
    config = "workers: 1\ntimeouts: { header: 2s }\n"
    pieces = [b"GET /count HTTP/1.1\r\n", 0.2, b"Host: a\r\n", 0.2, b"X-Slow: 1\r\n", 0.2, b"\r\n"]
    with Origin() as origin, Ringside(config, origin) as rs:
        reply = raw_exchange(rs.port, pieces, read_timeout=1.0)
        assert reply.status == 200, f"expected 200 for a head sent in pieces, got {bytes(reply[:120])!r}"


def test_idle_keep_alive_connection_is_closed():
    config = "workers: 1\ntimeouts: { idle: 500ms }\n"
    with Origin() as origin, Ringside(config, origin) as rs, Client(rs.port) as c:
        assert c.request("GET", "/count").status == 200
        start = time.monotonic()
        c.reader.timeout = 5.0
        # The close may come silently or after a 408; nothing else is acceptable.
        while c.reader.fill():
            pass
        took = time.monotonic() - start
        if c.reader.buf:
            resp = rt.parse_response(bytes(c.reader.buf))
            assert resp.status == 408, f"expected a silent close or 408 on idle, got {resp!r}"
        assert 0.3 <= took <= 3.0, f"expected the idle close about 0.5 s after the response, took {took:.2f} s"


def test_busy_connection_is_not_idle():
    """Requests spaced under the idle timeout keep the connection open."""
    config = "workers: 1\ntimeouts: { idle: 500ms }\n"
    with Origin() as origin, Ringside(config, origin) as rs, Client(rs.port) as c:
        for _ in range(4):
            assert c.request("GET", "/count").status == 200
            time.sleep(0.25)
        resp = c.request("GET", "/delay?ms=800")
        assert resp.status == 200, f"expected a slow response (longer than idle) to complete, got {resp.status}"


def test_tiny_receive_ring_loses_nothing():
    """With 8 receive buffers of 1 KiB, many clients sending at once run the ring dry
    (-ENOBUFS). Receives wait for buffers and resume: every request is answered intact,
    and clients that vanish while waiting leave ringside healthy (under ASan, a
    connection freed while still waiting would show here)."""
    import socket
    import threading
    config = "workers: 1\nlimits: { recv_buffers: 8, recv_buffer_size: 1KiB }\n"
    with Origin() as origin, Ringside(config, origin) as rs:
        body = rt.pattern(20000)
        wire = rt.build_request("POST", "/echo-body", body=body)
        errors = []

        def client(i):
            try:
                s = socket.create_connection(("127.0.0.1", rs.port), timeout=10)
                if i % 2:
                    s.sendall(wire[: len(wire) // 2])
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    s.close()  # reset mid-body, possibly while its receive waits
                    return
                s.sendall(wire)
                resp = rt._read_response(rt._Reader(s, 10), "POST")
                if (resp.status, resp.body) != (200, body):
                    errors.append(f"client {i}: got {resp.status}, {len(resp.body)} bytes")
                s.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"client {i}: {e!r}")

        for _ in range(3):
            threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        assert not errors, f"expected every complete request answered intact: {errors[:5]}"
        resp = http_request(rs.port, "GET", "/count")
        assert resp.status == 200, f"expected ringside healthy afterwards, got {resp.status}"
        waits = rs.metric("ringside_recv_buffer_waits_total")
        assert waits and waits > 0, f"expected the ring to run dry at least once, waits = {waits}"


def test_many_concurrent_connections():
    with Origin() as origin, Ringside("workers: 2\n", origin) as rs:
        results = rt.parallel(lambda: http_request(rs.port, "GET", "/delay?ms=100").status,
                              [()] * 100)
        failures = [r for r in results if r != 200]
        assert not failures, f"expected 100 concurrent requests to succeed, got {failures[:5]}"


if __name__ == "__main__":
    rt.main()
