"""A short, bounded load with wrk: no errors, keep-alive towards the origin holds, and
ringside still answers afterwards. Not a benchmark (see test/bench for those)."""

import re
import shutil
import subprocess

import ringside_test as rt
from ringside_test import Origin, Ringside, http_request

CONFIG = "workers: 1\nlog: { access: false }\n"


def test_wrk_load_without_errors():
    wrk = shutil.which("wrk")
    if not wrk:
        raise rt.Skip("wrk is not installed")
    with Origin() as origin, Ringside(CONFIG, origin) as rs:
        origin.reset()
        run = subprocess.run([wrk, "-t1", "-c16", "-d2s", f"http://127.0.0.1:{rs.port}/count"],
                             capture_output=True, text=True, timeout=30)
        out = run.stdout + run.stderr
        assert run.returncode == 0, f"expected wrk to exit 0, got {run.returncode}:\n{out}"
        assert "Socket errors" not in out, f"expected no socket errors:\n{out}"
        assert "Non-2xx" not in out, f"expected only 2xx responses:\n{out}"
        m = re.search(r"(\d+) requests in", out)
        assert m and int(m.group(1)) > 0, f"expected wrk to complete requests:\n{out}"
        done = int(m.group(1))

        resp = http_request(rs.port, "GET", "/count")
        assert resp.status == 200, f"expected ringside to answer after the load, got {resp.status}"
        served = rs.metric("ringside_http_requests_total", code="200") or 0
        assert served >= done, f"expected at least wrk's {done} requests counted, got {served}"
        conns = origin.stats()["connections"]
        assert conns <= 32, f"expected keep-alive towards the origin under load (<= 32 connections), got {conns}"


if __name__ == "__main__":
    rt.main()
