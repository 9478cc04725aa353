"""End-to-end test harness for ringside (Python 3 standard library only).

A test file imports this module, defines functions named test_*, and ends with

    if __name__ == "__main__":
        ringside_test.main()

Each test starts the real binaries on loopback: an Origin (test/origin/origin.c) and a
Ringside in front of it, configured from an inline YAML template, and talks to them
with raw sockets so that what goes over the wire is exactly what the test says.

Environment (set by ctest): RINGSIDE_BIN, RINGSIDE_ORIGIN, RINGSIDE_IO_BACKEND
(uring|epoll; unset leaves the choice to ringside). A test file run by hand falls back
to build/ringside and build/test/ringside-origin under the source tree.

Exit codes: 0 all passed, 1 a test failed, 77 every test was skipped (ctest's
SKIP_RETURN_CODE), e.g. io_uring requested where the kernel or seccomp refuses it.
"""

import atexit
import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
RINGSIDE_BIN = os.environ.get("RINGSIDE_BIN") or os.path.join(SOURCE_ROOT, "build", "ringside")
ORIGIN_BIN = os.environ.get("RINGSIDE_ORIGIN") or os.path.join(
    SOURCE_ROOT, "build", "test", "ringside-origin")
IO_BACKEND = os.environ.get("RINGSIDE_IO_BACKEND", "").strip()

TEST_TIME_LIMIT = 120  # seconds per test; a hung test fails instead of stalling the suite
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0

# Byte i of every origin pattern body (/bytes, /chunked, /until-close, /close-mid).
_ALPHABET = b"abcdefghijklmnopqrstuvwxyz"


class Skip(Exception):
    """Raised by a test (or the harness) when the test cannot run here."""


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.1 as the parser understands it."""


class NoResponse(Exception):
    """The connection ended before any byte of a response head arrived."""


class IncompleteResponse(Exception):
    """The connection ended inside a response. .response holds what arrived: the head
    and the partial body."""

    def __init__(self, message, response):
        super().__init__(message)
        self.response = response


def pattern(n, offset=0):
    """The origin's deterministic body: byte i is 'a' + (offset + i) % 26."""
    start = offset % 26
    reps = (start + n) // 26 + 1
    return (_ALPHABET * reps)[start:start + n]


_ports_given = set()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago and that this process has not
    handed out before: the kernel may offer a just-closed port again, and two listeners
    of one config must never get the same one."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no fresh free port in 100 tries")


# ---- processes -------------------------------------------------------------------

_processes = set()
_uring_unavailable = None  # the log line that said so, once seen
_diagnostics = []  # printed by the runner after the failing test's traceback


def _die_with_parent():
    # PR_SET_PDEATHSIG: if the test runner is killed (ctest timeout), so are its children.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))
    except (OSError, AttributeError):
        pass


def _spawn(argv, **kwargs):
    if not os.path.isfile(argv[0]) or not os.access(argv[0], os.X_OK):
        raise AssertionError(f"no executable at {argv[0]}: build first or set the environment"
                             " (RINGSIDE_BIN, RINGSIDE_ORIGIN)")
    proc = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kwargs)
    _processes.add(proc)
    return proc


def _terminate(proc, sig=signal.SIGTERM, timeout=5.0):
    """Signal proc by PID and wait; SIGKILL after timeout. Returns (exit code, killed)."""
    killed = False
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed = True
    _processes.discard(proc)
    return proc.returncode, killed


@atexit.register
def _kill_leftovers():
    for proc in list(_processes):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- HTTP/1.1 on raw sockets -----------------------------------------------------

def _header_list(headers):
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers)


def header_value(headers, name, default=None):
    """The first value of field name (case-insensitive) in a [(name, value)] list."""
    lname = name.lower()
    for n, v in headers:
        if n.lower() == lname:
            return v
    return default


def header_values(headers, name):
    lname = name.lower()
    return [v for n, v in headers if n.lower() == lname]


def build_request(method, target, headers=None, body=None, host="localhost", version="HTTP/1.1"):
    """Request bytes. Host is added unless headers has one or host is None; a
    Content-Length is added for a body unless headers frame it already."""
    fields = _header_list(headers)
    names = {n.lower() for n, _ in fields}
    if isinstance(body, str):
        body = body.encode()
    if host is not None and "host" not in names:
        fields.insert(0, ("Host", host))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        fields.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def encode_chunked(data, sizes=(4096,), trailers=None):
    """data in chunked coding, chunk sizes cycling through sizes."""
    out = bytearray()
    pos, i = 0, 0
    while pos < len(data):
        n = min(sizes[i % len(sizes)], len(data) - pos)
        out += b"%x\r\n" % n + data[pos:pos + n] + b"\r\n"
        pos += n
        i += 1
    out += b"0\r\n"
    for name, value in _header_list(trailers):
        out += f"{name}: {value}\r\n".encode("latin-1")
    out += b"\r\n"
    return bytes(out)


class Response:
    """A parsed response. Unpacks as (status, headers, body) for brevity in tests."""

    def __init__(self, status, reason, headers, body, version="HTTP/1.1", trailers=(), interim=()):
        self.status = status
        self.reason = reason
        self.headers = headers      # [(name, value)] in order, as received
        self.body = body            # bytes, decoded from chunked when it was
        self.version = version
        self.trailers = list(trailers)
        self.interim = list(interim)  # 1xx statuses that preceded it
        self.chunked = False
        self.until_close = False

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def header(self, name, default=None):
        return header_value(self.headers, name, default)

    def header_values(self, name):
        return header_values(self.headers, name)

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"expected a JSON body, got {self.body[:200]!r}: {e}") from None

    def __repr__(self):
        return f"<Response {self.status} {len(self.body)} bytes {self.headers!r}>"


class _Reader:
    """Buffered reads from a socket with a deadline per operation."""

    def __init__(self, sock, timeout):
        self.sock = sock
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def fill(self):
        """Read once more; False at EOF (or reset)."""
        if self.eof:
            return False
        self.sock.settimeout(self.timeout)
        try:
            data = self.sock.recv(256 * 1024)
        except ConnectionResetError:
            self.reset = True
            data = b""
        except socket.timeout:
            raise TimeoutError(f"no data from the server for {self.timeout} s") from None
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def until(self, delim, limit=1 << 20):
        """Bytes up to and including delim; None at EOF (partial bytes stay in buf)."""
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                return self.take(i + len(delim))
            if len(self.buf) > limit:
                raise ProtocolError(f"no {delim!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(delim) + 1)
            if not self.fill():
                return None

    def exact(self, n):
        while len(self.buf) < n:
            if not self.fill():
                return None
        return self.take(n)

    def rest(self):
        while self.fill():
            pass
        return self.take(len(self.buf))


_STATUS_LINE = re.compile(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$")


def _parse_head(raw):
    lines = raw[:-4].split(b"\r\n")
    m = _STATUS_LINE.match(lines[0])
    if not m:
        raise ProtocolError(f"bad status line {lines[0][:200]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise ProtocolError(f"bad header line {line[:200]!r}")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1"), headers


def _read_response(reader, method="GET", stop_at_interim=False):
    interim = []
    while True:
        raw = reader.until(b"\r\n\r\n")
        if raw is None:
            if reader.buf:
                raise IncompleteResponse(f"connection closed inside a response head: "
                                         f"{bytes(reader.buf[:200])!r}",
                                         Response(0, "", [], bytes(reader.buf)))
            raise NoResponse("connection closed before a response" +
                             (" (reset)" if reader.reset else ""))
        version, status, reason, headers = _parse_head(raw)
        if 100 <= status < 200 and status != 101:
            interim.append(status)
            if stop_at_interim:
                return Response(status, reason, headers, b"", version)
            continue
        break
    resp = Response(status, reason, headers, b"", version, interim=interim)
    if method == "HEAD" or status in (204, 304) or status == 101:
        return resp
    te = [t.strip().lower() for v in resp.header_values("Transfer-Encoding") for t in v.split(",")]
    lengths = set(resp.header_values("Content-Length"))
    if te:
        if te[-1] != "chunked":
            raise ProtocolError(f"response Transfer-Encoding {te!r} does not end in chunked")
        if lengths:
            raise ProtocolError("response has both Content-Length and Transfer-Encoding")
        resp.chunked = True
        body = bytearray()
        while True:
            line = reader.until(b"\r\n", limit=4096)
            if line is None:
                resp.body = bytes(body)
                raise IncompleteResponse("connection closed inside a chunked body", resp)
            size_text = line[:-2].split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line {line!r}") from None
            if size == 0:
                break
            data = reader.exact(size + 2)
            if data is None:
                body += reader.take(len(reader.buf))
                resp.body = bytes(body)
                raise IncompleteResponse("connection closed inside a chunk", resp)
            if data[-2:] != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF")
            body += data[:-2]
        while True:
            line = reader.until(b"\r\n", limit=65536)
            if line is None:
                resp.body = bytes(body)
                raise IncompleteResponse("connection closed inside the trailer section", resp)
            if line == b"\r\n":
                break
            name, _, value = line[:-2].partition(b":")
            resp.trailers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        resp.body = bytes(body)
    elif lengths:
        if len(lengths) > 1:
            raise ProtocolError(f"differing Content-Length values {sorted(lengths)}")
        n = int(lengths.pop())
        data = reader.exact(n)
        if data is None:
            resp.body = reader.take(len(reader.buf))
            raise IncompleteResponse(
                f"connection closed after {len(resp.body)} of {n} body bytes", resp)
        resp.body = data
    else:
        resp.until_close = True
        resp.body = reader.rest()
    return resp


def parse_response(data, method="GET"):
    """Parse one complete response from bytes (e.g. a raw_exchange reply)."""
    reader = _Reader(None, 0)
    reader.buf += data
    reader.eof = True
    return _read_response(reader, method)


def connect(port, timeout=10.0):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def http_request(port, method, target, headers=None, body=None, host="localhost", timeout=10.0):
    """One request on a new connection; returns a Response, which unpacks as
    (status, headers, body). Raises IncompleteResponse / NoResponse when the server
    closes early."""
    with connect(port, timeout) as sock:
        sock.sendall(build_request(method, target, headers, body, host))
        return _read_response(_Reader(sock, timeout), method)


def get(port, target, timeout=5.0):
    return http_request(port, "GET", target, timeout=timeout)


class RawReply(bytes):
    """What a server sent; .closed says whether it closed (FIN or reset) before the
    timeout, .reset whether it was a reset."""
    closed = False
    reset = False

    @property
    def status(self):
        m = _STATUS_LINE.match(self.split(b"\r\n", 1)[0])
        return int(m.group(2)) if m else None


def raw_exchange(port, data, read_timeout=2.0):
    """Send data (bytes, or a list of bytes and float pauses in seconds) on a new
    connection, then return everything the server sends until it closes or read_timeout
    passes with the connection still open (see RawReply)."""
    pieces = [data] if isinstance(data, (bytes, bytearray)) else data
    received = bytearray()
    closed = reset = False
    with connect(port) as sock:
        for piece in pieces:
            if isinstance(piece, (int, float)):
                time.sleep(piece)
                continue
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server gave up on us early; read what it said
        deadline = time.monotonic() + read_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = reset = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    reply = RawReply(bytes(received))
    reply.closed, reply.reset = closed, reset
    return reply


class Client:
    """One persistent client connection, for keep-alive and pipelining tests."""

    def __init__(self, port, host="localhost", timeout=10.0):
        self.host = host
        self.sock = connect(port, timeout)
        self.reader = _Reader(self.sock, timeout)

    def send(self, data):
        self.sock.sendall(data)

    def send_request(self, method, target, headers=None, body=None):
        self.send(build_request(method, target, headers, body, self.host))

    def read_response(self, method="GET", stop_at_interim=False):
        return _read_response(self.reader, method, stop_at_interim)

    def request(self, method, target, headers=None, body=None):
        self.send_request(method, target, headers, body)
        return self.read_response(method)

    def wait_closed(self, timeout):
        """True when the server closes within timeout; bytes it sends meanwhile are an
        error (AssertionError)."""
        saved = self.reader.timeout
        self.reader.timeout = timeout
        try:
            if self.reader.buf or self.reader.fill():
                raise AssertionError(f"expected the server to close, got {bytes(self.reader.buf[:200])!r}")
            return True
        except TimeoutError:
            return False
        finally:
            self.reader.timeout = saved

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Parallel:
    """fn(*args) for each args in args_list, each on its own thread, started at once."""

    def __init__(self, fn, args_list):
        self._results = [None] * len(args_list)
        self._threads = [threading.Thread(target=self._run, args=(i, fn, args), daemon=True)
                         for i, args in enumerate(args_list)]
        for t in self._threads:
            t.start()

    def _run(self, i, fn, args):
        try:
            self._results[i] = fn(*args)
        except BaseException as e:  # handed to the caller, not lost in the thread
            self._results[i] = e

    def results(self, timeout=30.0):
        """Wait for every call; results in order, an exception object in place of the
        result of a call that raised. AssertionError if calls still run after timeout."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            raise AssertionError(f"parallel calls still running after {timeout} s")
        return list(self._results)


def parallel(fn, args_list, timeout=30.0):
    """Run fn(*args) for each args concurrently and wait: see Parallel.results."""
    return Parallel(fn, args_list).results(timeout)


def wait_for(predicate, timeout=5.0, interval=0.02, message="condition"):
    """Poll predicate until it returns a true value (returned); AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}; last value {last!r}")
        time.sleep(interval)


# ---- the origin ------------------------------------------------------------------

class Origin:
    """ringside-origin on 127.0.0.1:<port> (0: a free one). Stopped by PID in every case."""

    def __init__(self, idle_timeout_ms=None, demo=False, port=0):
        self.args = [ORIGIN_BIN, "--listen", f"127.0.0.1:{port}"]
        if idle_timeout_ms is not None:
            self.args += ["--idle-timeout-ms", str(idle_timeout_ms)]
        if demo:
            self.args.append("--demo")
        self.proc = None
        self.port = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self.proc = _spawn(self.args, stdout=subprocess.PIPE)
        line = b""
        deadline = time.monotonic() + 5.0
        fd = self.proc.stdout.fileno()
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.stop()
                raise AssertionError("ringside-origin printed no 'listening' line within 5 s")
            byte = os.read(fd, 1)
            if not byte:
                rc = self.proc.wait()
                raise AssertionError(f"ringside-origin exited with {rc} before listening")
            line += byte
        m = re.fullmatch(rb"listening 127\.0\.0\.1:(\d+)\n", line)
        if not m:
            self.stop()
            raise AssertionError(f"unexpected first line from ringside-origin: {line!r}")
        self.port = int(m.group(1))
        return self

    def stop(self):
        """SIGTERM, SIGKILL after 5 s. Returns the exit code."""
        if self.proc is None:
            return None
        rc, killed = _terminate(self.proc, signal.SIGTERM, 5.0)
        if self.proc.stdout:
            self.proc.stdout.close()
        if killed:
            raise AssertionError("ringside-origin ignored SIGTERM for 5 s")
        return rc

    def stats(self):
        """{"requests", "connections", "targets_tail"}: what reached the origin since the
        last reset (the /stats requests themselves are not counted)."""
        return get(self.port, "/stats").json()

    def reset(self):
        status = http_request(self.port, "POST", "/stats/reset").status
        assert status == 200, f"expected 200 from POST /stats/reset, got {status}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---- ringside --------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_LOG_ERROR_LEVELS = ("error", "fatal", "critical")


def _has_top_level_key(yaml_text, key):
    return re.search(rf"^{re.escape(key)}\s*:", yaml_text, re.MULTILINE) is not None


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def parse_metrics(text):
    """Prometheus text exposition -> {(name, frozenset(labels.items())): value}.
    A line that is not valid exposition syntax is an AssertionError."""
    sample = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?$")
    label = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(,|$)')
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = sample.match(line)
        if not m:
            raise AssertionError(f"not a Prometheus sample line: {line!r}")
        name, label_text, value_text = m.groups()
        labels = {}
        pos = 0
        label_text = label_text or ""
        while pos < len(label_text):
            lm = label.match(label_text, pos)
            if not lm or lm.end() == pos:
                raise AssertionError(f"bad labels in metrics line: {line!r}")
            labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1),
                                         lm.group(2))
            pos = lm.end()
        try:
            value = float(value_text)
        except ValueError:
            raise AssertionError(f"bad value in metrics line: {line!r}") from None
        key = (name, frozenset(labels.items()))
        if key in out:
            raise AssertionError(f"duplicate metrics series: {line!r}")
        out[key] = value
    return out


def metric_value(metrics, name, **labels):
    """Sum of the series of name whose labels include the given ones; None if none."""
    want = set(labels.items())
    found = [v for (n, ls), v in metrics.items() if n == name and want <= ls]
    return sum(found) if found else None


class Ringside:
    """The ringside binary under test.

    config is a YAML template. {{name}} placeholders are filled from: origin (host:port
    of the Origin given), origin_port, port, metrics_port, control_port and any extra
    keyword arguments. Top-level keys the template leaves out are added: listen,
    metrics and control on free loopback ports, upstream pointing at the origin, and
    io_backend from RINGSIDE_IO_BACKEND.

    On leaving the with-block it stops ringside (SIGTERM, expecting exit code 0) and
    checks the logs like nginx-tests check the error log: no stdout line with level
    error (unless a pattern in allow_log_errors matches the line, or it is True), every
    stdout line JSON, and nothing on stderr but lines matching allow_stderr."""

    def __init__(self, config, origin=None, *, port=None, metrics_port=None, control_port=None,
                 io_backend=None, allow_log_errors=(), allow_stderr=(), wait_ready=True,
                 args=(), **variables):
        if _uring_unavailable and (io_backend or IO_BACKEND) == "uring":
            raise Skip(f"io_uring unavailable here: {_uring_unavailable}")
        self.origin = origin
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.control_port = control_port or free_port()
        self.io_backend = io_backend if io_backend is not None else IO_BACKEND
        self.allow_log_errors = allow_log_errors if allow_log_errors is True else list(allow_log_errors)
        self.allow_stderr = list(allow_stderr)
        self.wait_ready = wait_ready
        self.args = list(args)
        self.variables = dict(variables)
        self.tmpdir = tempfile.mkdtemp(prefix="ringside-e2e-")
        self.config_path = os.path.join(self.tmpdir, "ringside.yaml")
        self.stdout_path = os.path.join(self.tmpdir, "stdout.log")
        self.stderr_path = os.path.join(self.tmpdir, "stderr.log")
        self.config_text = None
        self.proc = None
        self.exit_code = None
        self._exit_expected = not wait_ready  # set once the test signals or waits for exit
        self.write_config(config)

    # -- configuration --

    def render(self, template):
        values = {"port": self.port, "metrics_port": self.metrics_port,
                  "control_port": self.control_port}
        if self.origin is not None:
            values["origin"] = self.origin.address
            values["origin_port"] = self.origin.port
        values.update(self.variables)

        def fill(m):
            if m.group(1) not in values:
                raise KeyError(f"config placeholder {{{{{m.group(1)}}}}} has no value")
            return str(values[m.group(1)])

        text = _PLACEHOLDER.sub(fill, template)
        if not text.endswith("\n"):
            text += "\n"
        extra = []
        if not _has_top_level_key(text, "listen"):
            extra.append(f"listen: 127.0.0.1:{self.port}")
        if not _has_top_level_key(text, "metrics"):
            extra.append(f"metrics: {{ listen: 127.0.0.1:{self.metrics_port} }}")
        if not _has_top_level_key(text, "control"):
            extra.append(f"control: {{ listen: 127.0.0.1:{self.control_port} }}")
        if not _has_top_level_key(text, "upstream") and self.origin is not None:
            extra.append(f"upstream: {{ address: {self.origin.address} }}")
        if self.io_backend and not _has_top_level_key(text, "io_backend"):
            extra.append(f"io_backend: {self.io_backend}")
        return text + "".join(line + "\n" for line in extra)

    def write_config(self, template=None, raw=None):
        """Render template (or write raw text as is) to the config file, atomically."""
        text = raw if raw is not None else self.render(template)
        tmp = self.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)
        self.config_text = text

    # -- process --

    def start(self):
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = _spawn([RINGSIDE_BIN, "--config", self.config_path] + self.args,
                               stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        if self.wait_ready:
            self._wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def _wait_ready(self):
        global _uring_unavailable
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self.exit_code = self.proc.returncode
                _processes.discard(self.proc)
                out = _tail(self.stdout_path) + "\n" + _tail(self.stderr_path)
                if self.io_backend == "uring" and "io_uring unavailable" in out:
                    _uring_unavailable = next(l for l in out.splitlines() if "io_uring unavailable" in l)
                    raise Skip(f"io_uring unavailable here: {_uring_unavailable}")
                raise AssertionError(f"ringside exited with {self.exit_code} while starting; "
                                     f"config:\n{self.config_text}\nlog:\n{out}")
            try:
                if get(self.metrics_port, "/healthz", timeout=1.0).status == 200:
                    break
            except (OSError, NoResponse, IncompleteResponse, ProtocolError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"ringside: no 200 from /healthz within {READY_TIMEOUT} s; "
                                     f"log:\n{self.log_tail()}")
            time.sleep(0.02)
        # Logged once every worker listens: /healthz alone may answer before that.
        line = self.wait_log(lambda l: l.get("msg") == "io backend", timeout=READY_TIMEOUT,
                             what='a log line with "msg":"io backend"')
        if self.io_backend in ("uring", "epoll"):
            assert line.get("backend") == self.io_backend, (
                f"expected io backend {self.io_backend!r}, ringside logged {line!r}")

    def reload(self):
        """SIGHUP: reread the config file."""
        os.kill(self.proc.pid, signal.SIGHUP)

    def send_signal(self, sig):
        if sig != signal.SIGHUP:
            self._exit_expected = True
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout):
        """The exit code, or None if still running after timeout."""
        self._exit_expected = True
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        _processes.discard(self.proc)
        return self.exit_code

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signal ringside and wait for it; SIGKILL (and AssertionError) after timeout.
        Returns the exit code."""
        self._exit_expected = True
        if self.proc.poll() is not None:
            _processes.discard(self.proc)
            self.exit_code = self.proc.returncode
            return self.exit_code
        rc, killed = _terminate(self.proc, sig, timeout)
        self.exit_code = rc
        if killed:
            raise AssertionError(f"ringside did not exit within {timeout} s of signal {sig}; "
                                 f"log:\n{self.log_tail()}")
        return rc

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- logs --

    def stdout_lines(self):
        with open(self.stdout_path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
        # The last line may still be being written; only complete lines count.
        return data.split("\n")[:-1]

    def log_lines(self):
        """Every complete stdout line parsed as JSON (lines that are not JSON are left
        out here and reported by the exit check)."""
        out = []
        for line in self.stdout_lines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def access_log(self):
        return [l for l in self.log_lines() if l.get("msg") == "access"]

    def wait_log(self, predicate, timeout=3.0, what="a matching log line"):
        """The first log line for which predicate is true, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines():
                if predicate(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {what} within {timeout} s; log:\n{self.log_tail()}")
            time.sleep(0.02)

    def log_tail(self, lines=40):
        err = _tail(self.stderr_path, lines)
        return _tail(self.stdout_path, lines) + ("\n--- stderr ---\n" + err if err else "")

    def allow_log_error(self, pattern):
        if self.allow_log_errors is not True:
            self.allow_log_errors.append(pattern)

    def _log_problems(self):
        problems = []
        for line in self.stdout_lines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                problems.append(f"stdout line is not a JSON object: {line!r}")
                continue
            if str(obj.get("level", "")).lower() in _LOG_ERROR_LEVELS:
                if self.allow_log_errors is True:
                    continue
                if not any(re.search(p, line) for p in self.allow_log_errors):
                    problems.append(f"error logged: {line}")
        with open(self.stderr_path, "rb") as f:
            for line in f.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not any(re.search(p, line) for p in self.allow_stderr):
                    problems.append(f"stderr: {line}")
        return problems

    # -- metrics and health --

    def metrics(self):
        """GET /metrics -> {(name, frozenset(labels.items())): value}."""
        resp = get(self.metrics_port, "/metrics")
        assert resp.status == 200, f"expected 200 from /metrics, got {resp.status}: {resp.body[:200]!r}"
        return parse_metrics(resp.body.decode("utf-8"))

    def metric(self, name, **labels):
        """Sum of the current series of name whose labels include labels; None if none."""
        return metric_value(self.metrics(), name, **labels)

    def wait_metric(self, name, expected, timeout=3.0, **labels):
        """Wait until metric(name, **labels) == expected; AssertionError with the last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.metric(name, **labels)
            if value == expected:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {name}{labels} == {expected} within {timeout} s, got {value}")
            time.sleep(0.02)

    def healthz(self):
        return get(self.metrics_port, "/healthz").status

    def readyz(self):
        return get(self.metrics_port, "/readyz").status

    # -- context --

    def __enter__(self):
        try:
            return self.start()
        except Skip:
            self._cleanup(failed=False)
            raise
        except BaseException:
            self._cleanup(failed=True)
            raise

    def __exit__(self, exc_type, exc, tb):
        failed = exc_type is not None
        try:
            if not failed and self.proc is not None and self.proc.poll() is not None \
                    and not self._exit_expected:
                raise AssertionError(f"ringside exited on its own with {self.proc.returncode}; "
                                     f"log:\n{self.log_tail()}")
            if self.proc is not None and self.proc.poll() is None:
                rc = self.stop()
                if not failed:
                    assert rc == 0, f"expected exit code 0 after SIGTERM, got {rc}; log:\n{self.log_tail()}"
            if not failed and self.proc is not None:
                problems = self._log_problems()
                assert not problems, "ringside log check failed:\n" + "\n".join(problems[:20])
        except BaseException:
            failed = True
            raise
        finally:
            self._cleanup(failed)

    def _cleanup(self, failed):
        if self.proc is not None and self.proc.poll() is None:
            _terminate(self.proc, signal.SIGKILL)
        if failed:
            _diagnostics.append(f"--- ringside config ---\n{self.config_text}"
                                f"--- ringside log (tail) ---\n{self.log_tail()}")
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# ---- cache tests: the origin's /resp/ endpoint, the control port, Redis ------------

def resp_target(path, *, status=None, h=(), body=None, size=None, chunked=False, delay_ms=None,
                etag=None, lm=None, echo=(), **extra):
    """A target on the origin's programmable /resp/ endpoint: path (starting /resp/) and
    a query that makes the response (h: "Name: value" fields, echo: request field names
    whose values make the body). extra adds query parameters the origin ignores, e.g. to
    tell keys apart."""
    params = []
    if status is not None:
        params.append(("status", str(status)))
    params += [("h", field) for field in ([h] if isinstance(h, str) else h)]
    if body is not None:
        params.append(("body", body))
    if size is not None:
        params.append(("size", str(size)))
    if chunked:
        params.append(("chunked", "1"))
    if delay_ms is not None:
        params.append(("delay_ms", str(delay_ms)))
    if etag is not None:
        params.append(("etag", etag))
    if lm is not None:
        params.append(("lm", lm))
    params += [("echo", name) for name in ([echo] if isinstance(echo, str) else echo)]
    params += [(k, str(v)) for k, v in extra.items()]
    if not params:
        return path
    return path + "?" + "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in params)


def resp_count(origin, path):
    """What reached the origin's /resp/ path: {"count", "methods", "last_headers"}."""
    resp = get(origin.port, "/resp-count?path=" + path)
    assert resp.status == 200, f"expected 200 from /resp-count, got {resp.status}: {resp.body[:200]!r}"
    return resp.json()


def resp_reset(origin):
    status = http_request(origin.port, "POST", "/resp-count/reset").status
    assert status == 200, f"expected 200 from POST /resp-count/reset, got {status}"


def http_date(t):
    """An IMF-fixdate (RFC 9110 §5.6.7) for Unix time t."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))


def control_request(ringside, method, path, json_body=None, timeout=10.0):
    """A request to ringside's control port. json_body (not str or bytes) is sent as
    JSON; str or bytes are sent as they are (to send broken JSON)."""
    body = None
    headers = []
    if json_body is not None:
        body = json_body if isinstance(json_body, (str, bytes)) else json.dumps(json_body)
        headers.append(("Content-Type", "application/json"))
    return http_request(ringside.control_port, method, path, headers, body, timeout=timeout)


class RedisError(Exception):
    """An error reply (-ERR ...) from Redis."""


def _resp_encode(args):
    out = bytearray(b"*%d\r\n" % len(args))
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return bytes(out)


def _resp_read(reader):
    line = reader.until(b"\r\n", limit=1 << 20)
    if line is None:
        raise NoResponse("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = reader.exact(n + 2)
        if data is None:
            raise NoResponse("redis closed the connection inside a reply")
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(reader) for _ in range(n)]
    raise ProtocolError(f"not a RESP reply: {line[:100]!r}")


class Redis:
    """redis-server on 127.0.0.1:<port> without persistence, stopped by PID. kill() and
    start() again keep the port, for outage tests. Raises Skip when redis-server is not
    installed."""

    def __init__(self, port=None):
        self.binary = shutil.which("redis-server")
        self.port = port or free_port()
        self.proc = None
        self.tmpdir = tempfile.mkdtemp(prefix="ringside-e2e-redis-")
        self.log_path = os.path.join(self.tmpdir, "redis.log")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout=5.0):
        if self.binary is None:
            raise Skip("redis-server is not installed")
        with open(self.log_path, "ab") as log:
            self.proc = _spawn([self.binary, "--save", "", "--appendonly", "no",
                                "--bind", "127.0.0.1", "--port", str(self.port),
                                "--dir", self.tmpdir, "--daemonize", "no"],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                _processes.discard(self.proc)
                raise AssertionError(f"redis-server exited with {self.proc.returncode}; log:\n"
                                     f"{_tail(self.log_path)}")
            try:
                if self.cli("PING") == "PONG":
                    return self
            except (OSError, NoResponse, ProtocolError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not answer PING within {timeout} s; log:\n"
                                     f"{_tail(self.log_path)}")
            time.sleep(0.02)

    def stop(self):
        """SIGTERM (SIGKILL after 5 s)."""
        if self.proc is not None:
            _terminate(self.proc, signal.SIGTERM, 5.0)
            self.proc = None

    def kill(self):
        """SIGKILL: Redis vanishes as in a crash."""
        if self.proc is not None:
            _terminate(self.proc, signal.SIGKILL, 5.0)
            self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def pause(self):
        """SIGSTOP: connections stay open but nothing is answered (a hung Redis)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def cli(self, *args, timeout=5.0):
        """One command over a new connection; the reply as str (status), int, bytes (bulk),
        list or None. An error reply raises RedisError."""
        with connect(self.port, timeout) as sock:
            sock.sendall(_resp_encode(args))
            reply = _resp_read(_Reader(sock, timeout))
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def keys(self, pattern="*"):
        """The names of the keys matching pattern, as str, sorted."""
        return sorted(k.decode("latin-1") for k in self.cli("KEYS", pattern))

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# ---- runner ----------------------------------------------------------------------

class TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout(f"test exceeded {TEST_TIME_LIMIT} s")


def main():
    """Run every test_* function of the __main__ module in file order (or only those
    whose names contain one of the command-line arguments)."""
    module = sys.modules["__main__"]
    tests = sorted((fn.__code__.co_firstlineno, name, fn) for name, fn in vars(module).items()
                   if name.startswith("test_") and callable(fn) and hasattr(fn, "__code__"))
    wanted = sys.argv[1:]
    if wanted:
        tests = [t for t in tests if any(w in t[1] for w in wanted)]
    signal.signal(signal.SIGALRM, _on_alarm)
    passed = failed = skipped = 0
    for _, name, fn in tests:
        _diagnostics.clear()
        start = time.monotonic()
        signal.alarm(TEST_TIME_LIMIT)
        try:
            fn()
        except Skip as e:
            signal.alarm(0)
            skipped += 1
            print(f"skip {name}: {e}", flush=True)
        except BaseException as e:
            signal.alarm(0)
            if isinstance(e, KeyboardInterrupt):
                raise
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - start:.2f} s)", flush=True)
            traceback.print_exc(file=sys.stdout)
            for text in _diagnostics:
                print(text)
            sys.stdout.flush()
        else:
            signal.alarm(0)
            passed += 1
            print(f"ok {name} ({time.monotonic() - start:.2f} s)", flush=True)
    if skipped:
        print(f"{skipped} skipped")
    print(f"{passed} passed, {failed} failed", flush=True)
    if failed:
        sys.exit(1)
    if skipped and not passed:
        sys.exit(77)
    sys.exit(0)
