"""Process lifecycle: bad configs at start, --check-config, SIGHUP reloads (good and
broken), SIGTERM draining in-flight requests."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import ringside_test as rt
from ringside_test import Origin, Ringside, http_request

RELOADS = "ringside_config_reloads_total"
RELOAD_FAILED = [r"config reload failed"]


def routed_config(route, access):
    return (f"workers: 1\nlog: {{ access: {access} }}\n"
            f"routes:\n  - name: {route}\n    match: {{ prefix: / }}\n")


def test_reload_applies_a_new_config():
    with Origin() as origin, Ringside(routed_config("one", "true"), origin) as rs:
        assert http_request(rs.port, "GET", "/count?m=1").status == 200
        line = rs.wait_log(lambda l: l.get("msg") == "access" and l.get("target") == "/count?m=1")
        assert line.get("route") == "one", f"expected route one before the reload, got {line}"

        rs.write_config(routed_config("two", "true"))
        rs.reload()
        rs.wait_metric(RELOADS, 1, result="ok")
        assert http_request(rs.port, "GET", "/count?m=2").status == 200
        line = rs.wait_log(lambda l: l.get("msg") == "access" and l.get("target") == "/count?m=2")
        assert line.get("route") == "two", f"expected route two after the reload, got {line}"
        rs.wait_metric("ringside_http_requests_total", 1, route="two")

        rs.write_config(routed_config("two", "false"))
        rs.reload()
        rs.wait_metric(RELOADS, 2, result="ok")
        assert http_request(rs.port, "GET", "/count?m=3").status == 200
        time.sleep(0.3)  # access lines are written by a log thread; give one a chance to show
        late = [l for l in rs.access_log() if l.get("target") == "/count?m=3"]
        assert not late, f"expected no access log line with log.access false, got {late}"
        assert (rs.metric(RELOADS, result="error") or 0) == 0, "expected no failed reload"


def test_broken_config_on_reload_keeps_the_old_one():
    with Origin() as origin, Ringside("workers: 1\n", origin, allow_log_errors=RELOAD_FAILED) as rs:
        good = rs.config_text
        bad_line = good.count("\n") + 2
        rs.write_config(raw=good + "limits:\n  max_head: lots\n")
        rs.reload()
        rs.wait_metric(RELOADS, 1, result="error")
        where = f"{rs.config_path}:{bad_line}:"
        line = rs.wait_log(lambda l: l.get("level") == "error" and where in str(l),
                           what=f"an error log line naming {where}<column>")
        assert re.search(re.escape(where) + r"\d+", str(line)), f"expected file:line:column, got {line}"
        resp = http_request(rs.port, "GET", "/count")
        assert resp.status == 200, f"expected ringside still serving after a failed reload, got {resp.status}"
        assert (rs.metric(RELOADS, result="ok") or 0) == 0, "expected no successful reload yet"

        rs.write_config(raw=good)
        rs.reload()
        rs.wait_metric(RELOADS, 1, result="ok")


def test_bad_config_at_start_exits_naming_the_position():
    config = "workers: 1\nupstream: { address: 127.0.0.1:9 }\nbogus_key: 1\n"
    with Ringside(config, wait_ready=False, allow_log_errors=True, allow_stderr=[".*"]) as rs:
        rc = rs.wait_exit(5.0)
        assert rc not in (None, 0), f"expected a non-zero exit for an unknown key, got {rc}"
        output = rs.log_tail(100)
        assert f"{rs.config_path}:3:1" in output, (
            f"expected the error to name {rs.config_path}:3:1, got:\n{output}")


def test_check_config():
    with tempfile.TemporaryDirectory(prefix="ringside-e2e-") as tmp:
        good = os.path.join(tmp, "good.yaml")
        bad = os.path.join(tmp, "bad.yaml")
        with open(good, "w") as f:
            f.write("upstream: { address: 127.0.0.1:3000 }\n")
        with open(bad, "w") as f:
            f.write("upstream:\n  address: 127.0.0.1:3000\n  response_timeout: soon\n")
        ok = subprocess.run([rt.RINGSIDE_BIN, "--check-config", good], capture_output=True, timeout=10)
        assert ok.returncode == 0, f"expected exit 0 for a valid config, got {ok.returncode}: {ok.stderr!r}"
        ko = subprocess.run([rt.RINGSIDE_BIN, "--check-config", bad], capture_output=True, timeout=10)
        assert ko.returncode != 0, "expected a non-zero exit for an invalid duration"
        text = (ko.stdout + ko.stderr).decode("utf-8", "replace")
        assert f"{bad}:3:" in text, f"expected the error to name {bad}:3:<column>, got {text!r}"


def test_sigterm_finishes_in_flight_requests():
    config = "workers: 2\ntimeouts: { drain: 10s }\n"
    with Origin() as origin, Ringside(config, origin) as rs:
        in_flight = rt.Parallel(http_request, [(rs.port, "GET", "/delay?ms=1000")] * 20)
        # SIGTERM once all 20 reached the origin, so all are in flight inside ringside.
        rt.wait_for(lambda: origin.stats()["requests"] >= 20, timeout=2.0,
                    message="20 requests to reach the origin")
        signalled = time.monotonic()
        rs.send_signal(signal.SIGTERM)

        time.sleep(0.2)
        refused = _new_connection_refused(rs.port)
        assert refused is True, f"expected new connections refused after SIGTERM, got {refused!r}"

        results = in_flight.results(timeout=15.0)
        bad = [r for r in results if not isinstance(r, rt.Response) or r.status != 200
               or r.body != b"slept 1000\n"]
        assert not bad, f"expected all 20 in-flight requests answered 200, got {bad[:3]}"
        rc = rs.wait_exit(5.0)
        took = time.monotonic() - signalled
        assert rc == 0, f"expected exit code 0 after draining, got {rc}"
        assert took < 4.0, f"expected exit soon after the last response, took {took:.2f} s"
        tail = origin.stats()["targets_tail"]
        assert "/count?m=after-sigterm" not in tail, f"expected the late request not forwarded, got {tail}"


def _new_connection_refused(port):
    """True when a new connection is refused or closed without any response; otherwise
    what was received."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
    except ConnectionRefusedError:
        return True
    with sock:
        try:
            sock.sendall(rt.build_request("GET", "/count?m=after-sigterm"))
            sock.settimeout(2.0)
            data = sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return "no answer and no close within 2 s"
        return True if data == b"" else data[:120]


def test_sigterm_when_idle_exits_at_once():
    with Origin() as origin, Ringside("workers: 2\n", origin) as rs:
        assert http_request(rs.port, "GET", "/count").status == 200
        start = time.monotonic()
        rc = rs.stop(signal.SIGTERM)
        took = time.monotonic() - start
        assert rc == 0, f"expected exit code 0, got {rc}"
        assert took < 2.0, f"expected an idle ringside to exit at once, took {took:.2f} s"
        assert any(l.get("msg") == "access" for l in rs.access_log()), "expected the access line flushed at exit"
        # Written after every worker has stopped: proves stdout survived the shutdown.
        assert any(l.get("msg") == "ringside stopped" for l in rs.log_lines()), \
            "expected the last log line, 'ringside stopped', on stdout"


def test_drain_timeout_cuts_a_client_that_never_reads():
    """A client that stops reading a large response cannot hold ringside past
    timeouts.drain: after it, remaining connections are closed and ringside exits 0."""
    with Origin() as origin:
        with Ringside("workers: 1\ntimeouts: { drain: 1s, send: 60s }\n", origin) as rs:
            s = socket.create_connection(("127.0.0.1", rs.port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /bytes?n=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)
            started = time.monotonic()
            code = rs.stop(signal.SIGTERM)
            took = time.monotonic() - started
            s.close()
            assert code == 0, f"expected exit code 0, got {code}"
            assert 0.8 < took < 3.0, f"expected an exit about 1 s after SIGTERM, took {took:.2f} s"


def test_sigint_exits_cleanly():
    with Origin() as origin, Ringside("workers: 1\n", origin) as rs:
        rc = rs.stop(signal.SIGINT)
        assert rc == 0, f"expected exit code 0 on SIGINT, got {rc}"


if __name__ == "__main__":
    rt.main()
