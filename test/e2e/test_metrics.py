"""The metrics listener: /metrics counts what happened, /healthz and /readyz tell
kubelet the truth."""

import re
import shutil
import subprocess

import ringside_test as rt
from ringside_test import Client, Origin, Ringside, http_request

CONFIG = """
workers: 2
routes:
  - name: count
    match: { prefix: /count }
  - name: rest
    match: { prefix: / }
"""


def test_request_counters_and_durations():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        for _ in range(7):
            assert http_request(rs.port, "GET", "/count").status == 200
        for _ in range(3):
            assert http_request(rs.port, "GET", "/bytes?n=10").status == 200
        assert http_request(rs.port, "GET", "/nowhere").status == 404
        assert http_request(rs.port, "POST", "/echo", body=b"x").status == 200

        rs.wait_metric("ringside_http_requests_total", 7, route="count", method="GET", code="200")
        m = rs.metrics()
        checks = {
            ("ringside_http_requests_total", (("route", "rest"), ("method", "GET"), ("code", "200"))): 3,
            ("ringside_http_requests_total", (("route", "rest"), ("method", "GET"), ("code", "404"))): 1,
            ("ringside_http_requests_total", (("route", "rest"), ("method", "POST"), ("code", "200"))): 1,
            ("ringside_http_request_duration_seconds_count", (("route", "count"),)): 7,
            ("ringside_http_request_duration_seconds_count", (("route", "rest"),)): 5,
            ("ringside_http_request_duration_seconds_bucket", (("route", "count"), ("le", "+Inf"))): 7,
            ("ringside_upstream_requests_total", ()): 12,
        }
        for (name, labels), expected in checks.items():
            got = rt.metric_value(m, name, **dict(labels))
            assert got == expected, f"expected {name}{dict(labels)} == {expected}, got {got}"
        total = rt.metric_value(m, "ringside_http_request_duration_seconds_sum", route="count")
        assert total is not None and 0 < total < 7 * 5, f"expected a plausible duration sum, got {total}"
        _check_buckets_cumulative(m, "ringside_http_request_duration_seconds_bucket")


def _check_buckets_cumulative(m, name):
    series = {}
    for (n, labels), value in m.items():
        if n != name:
            continue
        d = dict(labels)
        le = d.pop("le")
        series.setdefault(frozenset(d.items()), []).append((float(le), value))
    assert series, f"expected {name} series"
    for labels, buckets in series.items():
        values = [v for _, v in sorted(buckets)]
        assert values == sorted(values), f"expected cumulative buckets for {dict(labels)}, got {sorted(buckets)}"


def test_active_connections_gauge():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        clients = [Client(rs.port) for _ in range(3)]
        try:
            for c in clients:
                assert c.request("GET", "/count").status == 200
            rs.wait_metric("ringside_connections_active", 3)
        finally:
            for c in clients:
                c.close()
        rs.wait_metric("ringside_connections_active", 0)


def test_build_info_and_io_backend():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        m = rs.metrics()
        info = [(dict(labels), v) for (n, labels), v in m.items() if n == "ringside_build_info"]
        assert len(info) == 1 and info[0][1] == 1 and info[0][0].get("version"), (
            f"expected one ringside_build_info{{version=...}} 1, got {info}")
        backends = {dict(labels).get("backend"): v for (n, labels), v in m.items() if n == "ringside_io_backend"}
        in_use = [b for b, v in backends.items() if v == 1]
        assert len(in_use) == 1, f"expected exactly one io backend at 1, got {backends}"
        if rt.IO_BACKEND:
            assert in_use == [rt.IO_BACKEND], f"expected ringside_io_backend{{backend=\"{rt.IO_BACKEND}\"}} 1, got {backends}"


def test_exposition_format():
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        assert http_request(rs.port, "GET", "/count").status == 200
        resp = rt.get(rs.metrics_port, "/metrics")
        assert resp.status == 200, f"expected 200 from /metrics, got {resp.status}"
        ctype = resp.header("Content-Type", "")
        assert ctype.startswith("text/plain"), f"expected a text/plain exposition, got {ctype!r}"
        text = resp.body.decode()
        rt.parse_metrics(text)  # every sample line parses
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
        assert types, "expected # TYPE lines"
        for name, kind in types.items():
            assert name.startswith("ringside_"), f"expected the ringside_ prefix, got {name}"
            if kind == "counter":
                assert name.endswith("_total"), f"expected counter {name} to end in _total"
            if kind == "histogram":
                assert re.search(rf"^{name}_bucket\{{", text, re.MULTILINE), f"expected buckets for {name}"
        for line in text.splitlines():
            if line and not line.startswith("#"):
                family = re.sub(r"(_bucket|_sum|_count)$", "", line.split("{")[0].split(" ")[0])
                assert family in types or line.split("{")[0].split(" ")[0] in types, (
                    f"expected a # TYPE line for the series {line!r}")


def test_health_and_readiness():
    origin = Origin().start()
    try:
        with Ringside(CONFIG, origin, allow_log_errors=[r"upstream|backend|origin"]) as rs:
            assert rs.healthz() == 200, "expected /healthz 200"
            rt.wait_for(lambda: rs.readyz() == 200, timeout=5.0, message="/readyz 200 with the origin up")
            origin.stop()
            rt.wait_for(lambda: rs.readyz() == 503, timeout=5.0, message="/readyz 503 with the origin down")
            assert rs.healthz() == 200, "expected /healthz 200 while the origin is down"
            assert http_request(rs.port, "GET", "/count").status == 502, "expected 502 with the origin down"
    finally:
        origin.stop()


def test_promtool_accepts_the_exposition():
    """promtool, Prometheus's own linter, accepts /metrics after real traffic."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise rt.Skip("promtool not installed (Debian package prometheus)")
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        for target in ("/count", "/status?code=404", "/nope"):
            http_request(rs.port, "GET", target)
        rt.raw_exchange(rs.port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n", read_timeout=2.0)
        body = rt.get(rs.metrics_port, "/metrics").body
        check = subprocess.run([promtool, "check", "metrics"], input=body,
                               capture_output=True, timeout=30)
        assert check.returncode == 0, \
            f"promtool check metrics failed: {check.stdout.decode()} {check.stderr.decode()}"


if __name__ == "__main__":
    rt.main()
