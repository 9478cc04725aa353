"""Requests ringside must refuse: each is answered with its status, the connection is
closed, the refusal is counted by reason, and nothing reaches the origin (each request
carries a marker in its target that must never show up in the origin's /stats)."""

import ringside_test as rt
from ringside_test import Origin, Ringside, http_request, raw_exchange

CONFIG = """
workers: 1
limits:
  max_request_line: 1KiB
  max_head: 4KiB
  max_body: 1MiB
  max_chunk_ext: 64
"""

REJECTED = "ringside_rejected_requests_total"


def head(target, *fields, version="HTTP/1.1", method="GET"):
    lines = [f"{method} {target} {version}"] + list(fields)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# (reason label, expected status, request bytes, whether nothing may reach the origin)
CASES = [
    ("cl_te", 400, head("/echo?m=rej-cl_te", "Host: a", "Content-Length: 5",
                        "Transfer-Encoding: chunked", method="POST") + b"0\r\n\r\n", True),
    ("content_length", 400, head("/echo?m=rej-cl-dup", "Host: a", "Content-Length: 5",
                                 "Content-Length: 6", method="POST") + b"hello", True),
    ("content_length", 400, head("/echo?m=rej-cl-bad", "Host: a", "Content-Length: 5x",
                                 method="POST") + b"hello", True),
    ("transfer_encoding", 400, head("/echo?m=rej-te-gzip", "Host: a", "Transfer-Encoding: gzip",
                                    method="POST") + b"0\r\n\r\n", True),
    ("chunk", 400, head("/echo?m=rej-chunk-size", "Host: a", "Transfer-Encoding: chunked",
                        method="POST") + b"zz\r\nhello\r\n0\r\n\r\n", True),
    ("chunk_ext", 400, head("/echo?m=rej-chunk-ext", "Host: a", "Transfer-Encoding: chunked",
                            method="POST") + b"5;a=" + b"b" * 200 + b"\r\nhello\r\n0\r\n\r\n", True),
    ("obs_fold", 400, head("/echo?m=rej-obs-fold", "Host: a", "X-A: 1", "  continued"), True),
    ("header_syntax", 400, head("/echo?m=rej-space-colon", "Host: a", "X-A : 1"), True),
    ("bare_cr", 400, head("/echo?m=rej-bare-cr", "Host: a", "X-A: 1\r2"), True),
    ("request_line", 400, head(" /echo?m=rej-request-line", "Host: a"), True),
    ("uri_too_long", 414, head("/echo?m=rej-long-" + "a" * 2000, "Host: a"), True),
    ("head_too_large", 431, head("/echo?m=rej-big-head", "Host: a", "X-Big: " + "a" * 5000), True),
    ("body_too_large", 413, head("/echo?m=rej-big-body", "Host: a", "Content-Length: 2000000",
                                 method="POST"), True),
    ("version", 505, head("/echo?m=rej-http2", "Host: a", version="HTTP/2.0"), True),
    ("host", 400, head("/echo?m=rej-no-host"), True),
    ("host", 400, head("/echo?m=rej-two-hosts", "Host: a", "Host: b"), True),
]


def marker(data):
    start = data.index(b"m=rej-") + 2
    return data[start:start + 24].split(b" ")[0].split(b"\r")[0].decode("latin-1")


def test_ambiguous_and_malformed_requests_are_refused():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        for reason, status, data, not_forwarded in CASES:
            name = marker(data)
            before = rs.metric(REJECTED, reason=reason) or 0
            reply = raw_exchange(rs.port, data, read_timeout=3.0)
            assert reply.status == status, (
                f"{name}: expected {status}, got {reply.status} ({bytes(reply[:120])!r})")
            assert reply.closed, f"{name}: expected the connection closed after {status}"
            rs.wait_metric(REJECTED, before + 1, reason=reason)
            if not_forwarded:
                tail = origin.stats()["targets_tail"]
                leaked = [t for t in tail if name in t]
                assert not leaked, f"{name}: expected nothing forwarded, the origin received {leaked}"

        # Everything refused so far left no trace at the origin, and ringside still serves.
        resp = http_request(rs.port, "GET", "/count")
        assert resp.status == 200, f"expected 200 after the refusals, got {resp.status}"
        tail = origin.stats()["targets_tail"]
        strays = [t for t in tail if "rej-" in t or t.startswith("<")]
        assert not strays, f"expected no refused request at the origin, got {strays}"


def test_malformed_trailers_are_refused():
    data = (head("/echo?m=rej-trailers", "Host: a", "Transfer-Encoding: chunked", method="POST")
            + b"5\r\nhello\r\n0\r\nBad Trailer: 1\r\n\r\n")
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        reply = raw_exchange(rs.port, data, read_timeout=3.0)
        assert reply.status == 400, f"expected 400 for a malformed trailer, got {reply.status} ({bytes(reply[:120])!r})"
        assert reply.closed, "expected the connection closed after 400"
        rs.wait_metric(REJECTED, 1, reason="trailers")


def test_refusal_ends_a_pipeline():
    """A bad request after a good one on the same connection: the good one is answered,
    then the refusal, then the connection closes; the request behind it is never read."""
    data = (head("/count?m=ok-first", "Host: a") + head("/echo?m=rej-pipe", "Host: a", "X-A : 1")
            + head("/count?m=rej-after", "Host: a"))
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        reply = raw_exchange(rs.port, data, read_timeout=3.0)
        first = rt.parse_response(reply.split(b"HTTP/1.1 400")[0])
        assert first.status == 200, f"expected 200 for the first request, got {bytes(reply[:200])!r}"
        assert b"HTTP/1.1 400" in reply, f"expected a 400 after it, got {bytes(reply[:400])!r}"
        assert reply.closed, "expected the connection closed after the 400"
        tail = origin.stats()["targets_tail"]
        assert "/count?m=ok-first" in tail, f"expected the first request forwarded, got {tail}"
        leaked = [t for t in tail if "rej-" in t]
        assert not leaked, f"expected nothing after the refusal forwarded, got {leaked}"


if __name__ == "__main__":
    rt.main()
