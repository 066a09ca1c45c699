"""Black-box integration tests of the real `nexus` binary.

Run with:  NEXUS_BIN=build/nexus NEXUS_BUILD=build /usr/bin/python3 -m pytest -q tests/integration

Every server is started on a free 127.0.0.1 port with the bundled plugins and the testkit
test plugin (tests/plugins/testkit), its stdout and stderr captured to files; a failing test
shows the tail of the logs of every server involved. Stopping a server asserts that SIGTERM
makes it exit 0 and that no worker outlives the master.

The helpers below (RawConn, KeepAliveClient, assert_problem, ...) are imported by the test
modules with `from conftest import ...`.
"""

import email.utils
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _abs(path):
    return path if os.path.isabs(path) else os.path.join(ROOT, path)


NEXUS_BIN = _abs(os.environ.get("NEXUS_BIN", "build/nexus"))
NEXUS_BUILD = _abs(os.environ.get("NEXUS_BUILD", "build"))
PLUGINS_DIR = f"{NEXUS_BUILD}/plugins:{NEXUS_BUILD}/test-plugins"
# What a deployment's /app/plugins holds: the bundled plugins, as the Dockerfile installs them.
# Deployment tests that replay a container's configuration point --plugins-dir here.
IMAGE_PLUGINS_DIR = f"{NEXUS_BUILD}/plugins"

# sysexits.h EX_CONFIG: what nexus exits with on any configuration error.
EX_CONFIG = 78

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

# Environment variables that would change the server's behaviour behind a test's back.
_SCRUB_ENV_PREFIXES = ("NEXUS_",)
_SCRUB_ENV = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid):
    """Pids of the live (non-zombie) direct children of pid, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        rest = stat[stat.rfind(")") + 2 :].split()
        state, ppid = rest[0], int(rest[1])
        if ppid == pid and state not in ("Z", "X"):
            out.append(int(entry))
    return sorted(out)


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def wait_for(pred, timeout, interval=0.05):
    """Polls pred() until it returns a truthy value (returned) or timeout passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# ---- server management ----------------------------------------------------------------

_SERVERS = []
_ITEM_STARTED = [0.0]


class Server:
    """One `nexus serve` master started in its own process group."""

    def __init__(self, workdir, workers=1, args=(), env=None, port=None, flags=True,
                 access_log="off", name="nexus"):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.workers = workers
        self.name = name
        self.stderr_path = os.path.join(self.workdir, f"{name}.stderr.log")
        self.stdout_path = os.path.join(self.workdir, f"{name}.stdout.log")
        self.not_ready_file = os.path.join(self.workdir, "not-ready")
        self.proc = None
        self.stopped_at = None
        self.returncode = None
        cmd = [NEXUS_BIN, "serve"]
        if flags:
            cmd += ["--host", self.host, "--port", str(self.port), "--workers", str(workers)]
        cmd += ["--plugins-dir", PLUGINS_DIR]
        if access_log is not None:
            cmd += ["--access-log", access_log]
        cmd += [str(a) for a in args]
        self.cmd = cmd
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(_SCRUB_ENV_PREFIXES) and k not in _SCRUB_ENV}
        e["NEXUS_TEST_NOT_READY_FILE"] = self.not_ready_file
        if env:
            e.update(env)
        self.env = e

    # -- lifecycle --

    def start(self, wait=True, timeout=10.0):
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, start_new_session=True)
        self.pgid = self.proc.pid
        _SERVERS.append(self)
        if wait:
            self.wait_healthy(timeout)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"nexus exited with {self.proc.returncode} before /health answered\n"
                    f"cmd: {' '.join(self.cmd)}\n{self.log_tail()}")
            try:
                c = http.client.HTTPConnection(self.host, self.port, timeout=0.5)
                c.request("GET", "/health")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
                last = f"status {r.status}"
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        raise AssertionError(f"/health not 200 within {timeout}s (last: {last})\n"
                             f"cmd: {' '.join(self.cmd)}\n{self.log_tail()}")

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout):
        """The master's exit code, or None if it is still running after timeout."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._closed()
        return rc

    def _closed(self):
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
            self.returncode = self.proc.returncode
            self._out.close()
            self._err.close()

    def wait_group_gone(self, timeout=5.0):
        return wait_for(lambda: not group_alive(self.pgid), timeout) is not None

    def kill_all(self):
        """Last resort cleanup: SIGKILL this server's process group (ours, by id)."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._closed()

    def stop(self, timeout=15.0):
        """SIGTERM; asserts exit code 0 within timeout and that no worker is left behind."""
        if self.proc is None:
            return
        if self.stopped_at is not None or self.proc.poll() is not None:
            self._closed()
            rc = self.proc.returncode
            orphans = group_alive(self.pgid) and not self.wait_group_gone(5)
            self.kill_all()
            assert not orphans, f"processes of nexus outlived the master\n{self.log_tail()}"
            return rc
        self.signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.kill_all()
            raise AssertionError(f"nexus did not exit within {timeout}s of SIGTERM\n"
                                 f"{self.log_tail()}")
        orphans = not self.wait_group_gone(5)
        self.kill_all()
        assert not orphans, f"workers outlived the master\n{self.log_tail()}"
        assert rc == 0, f"nexus exited {rc} after SIGTERM\n{self.log_tail()}"
        return rc

    # -- observation --

    def worker_pids(self):
        return children_of(self.proc.pid)

    def wait_workers(self, n, timeout=5.0):
        """The worker pids once exactly n are running (workers fork in parallel with the
        first /health answer); asserts on timeout."""
        pids = wait_for(lambda: (lambda p: p if len(p) == n else None)(self.worker_pids()),
                        timeout)
        assert pids, f"expected {n} workers, have {self.worker_pids()}\n{self.log_tail()}"
        return pids

    def log(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=80):
        err = self.log().splitlines()[-lines:]
        out = self.stdout().splitlines()[-20:]
        return ("---- stderr (tail) ----\n" + "\n".join(err) +
                "\n---- stdout (tail) ----\n" + "\n".join(out))

    # -- clients --

    def url(self, path):
        return f"http://{self.host}:{self.port}{path}"

    def session(self):
        s = requests.Session()
        s.trust_env = False
        return s

    def get(self, path, **kw):
        kw.setdefault("timeout", 10)
        with self.session() as s:
            return s.get(self.url(path), **kw)

    def request(self, method, path, **kw):
        kw.setdefault("timeout", 10)
        with self.session() as s:
            return s.request(method, self.url(path), **kw)

    def raw(self, timeout=5.0):
        return RawConn(self.host, self.port, timeout)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _ITEM_STARTED[0] = time.monotonic()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for s in _SERVERS:
        if s.stopped_at is None or s.stopped_at >= _ITEM_STARTED[0]:
            rep.sections.append((f"nexus {s.name} port {s.port} pid {s.proc.pid}",
                                 f"cmd: {' '.join(s.cmd)}\n{s.log_tail()}"))


_SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                      "SUMMARY: UndefinedBehaviorSanitizer", "WARNING: ThreadSanitizer")


def sanitizer_report(log):
    """The first sanitizer report in a server log (under `make SANITIZE=...`), or ""."""
    for marker in _SANITIZER_MARKERS:
        i = log.find(marker)
        if i >= 0:
            return log[max(0, i - 200):i + 4000]
    return ""


class _Spawner:
    def __init__(self, base):
        self.base = base
        self.servers = []

    def __call__(self, workers=1, args=(), env=None, wait=True, **kw):
        n = len(self.servers)
        s = Server(os.path.join(self.base, f"srv{n}"), workers=workers, args=args, env=env,
                   name=kw.pop("name", f"nexus{n}"), **kw)
        self.servers.append(s)
        s.start(wait=wait)
        return s

    def finish(self):
        errors = []
        for s in self.servers:
            try:
                s.stop()
            except AssertionError as e:
                errors.append(str(e))
            finally:
                if s.proc is not None and s.proc.poll() is None:
                    s.kill_all()
            report = sanitizer_report(s.log())
            if report:
                errors.append(f"sanitizer report in the log of {s.name}:\n{report}")
        self.servers.clear()
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def spawn(tmp_path):
    """Factory: spawn(workers=1, args=[...], env={...}) -> a started Server, stopped after."""
    sp = _Spawner(str(tmp_path))
    yield sp
    sp.finish()


@pytest.fixture(scope="module")
def spawn_module(tmp_path_factory):
    """Module-scoped spawn: servers shared by the tests of one module."""
    sp = _Spawner(str(tmp_path_factory.mktemp("nexus")))
    yield sp
    sp.finish()


@pytest.fixture(scope="module")
def server(spawn_module):
    """A default server: 2 workers, default limits."""
    return spawn_module(workers=2, name="default")


# ---- raw HTTP/1.1 client ----------------------------------------------------------------

class RawResponse:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version
        self.status = status
        self.reason = reason
        self.header_list = headers          # [(name, value)] as received
        self.headers = {}                   # lowercased name -> last value
        for k, v in headers:
            self.headers[k.lower()] = v
        self.body = body
        self.raw = raw

    def header_values(self, name):
        return [v for k, v in self.header_list if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<RawResponse {self.status} {self.headers} body={self.body[:200]!r}>"


class ConnectionClosed(Exception):
    pass


class RawConn:
    """A plain socket with a read buffer and a strict HTTP/1.x response reader."""

    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise ConnectionClosed(f"connection closed; unparsed buffer: {self.buf[:300]!r}")
        self.buf += chunk

    def _readline(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            if len(self.buf) > 1 << 20:
                raise AssertionError("response line too long")
            self._fill()

    def _readn(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, method="GET", allow_interim=False):
        """Reads one response. A 1xx is returned as is only when allow_interim is true;
        otherwise interim responses are skipped."""
        while True:
            line = self._readline()
            m = re.match(rb"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", line)
            assert m, f"bad status line {line!r}"
            version, status, reason = m.group(1).decode(), int(m.group(2)), m.group(3).decode(
                "latin-1")
            headers = []
            while True:
                h = self._readline()
                if h == b"":
                    break
                assert b":" in h and not h[:1].isspace(), f"bad response header line {h!r}"
                k, v = h.split(b":", 1)
                assert k == k.strip(), f"whitespace in header name {k!r}"
                headers.append((k.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
            if 100 <= status < 200:
                r = RawResponse(version, status, reason, headers, b"", None)
                if allow_interim:
                    return r
                continue
            hd = {k.lower(): v for k, v in headers}
            te = hd.get("transfer-encoding", "")
            if method == "HEAD" or status in (204, 304):
                body = b""
            elif "chunked" in te.lower():
                body = self._read_chunked()
            elif "content-length" in hd:
                body = self._readn(int(hd["content-length"]))
            else:
                body = self._read_to_close()
            return RawResponse(version, status, reason, headers, body, None)

    def _read_chunked(self):
        body = b""
        while True:
            size_line = self._readline()
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while self._readline() != b"":
                    pass
                return body
            body += self._readn(size)
            assert self._readn(2) == b"\r\n", "chunk not followed by CRLF"

    def _read_to_close(self):
        while True:
            try:
                self._fill()
            except ConnectionClosed:
                data, self.buf = self.buf, b""
                return data

    def closed_by_peer(self, timeout=3.0):
        """True when the server closes the connection (EOF or reset) within timeout with no
        further bytes; raises if it sends bytes; False on timeout (still open)."""
        if self.buf:
            raise AssertionError(f"unexpected extra bytes from the server: {self.buf[:300]!r}")
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        if data:
            raise AssertionError(f"unexpected extra bytes from the server: {data[:300]!r}")
        return True

    def recv_available(self, timeout=0.5):
        """Whatever arrives within timeout (b"" on timeout or EOF), appended to nothing."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            data = b""
        finally:
            self.sock.settimeout(self.timeout)
        return data


def raw_request(method, path, headers=None, body=b"", version="HTTP/1.1", host="x"):
    """Bytes of one request. headers: list of (name, value); Host first unless host=None."""
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    for k, v in headers or []:
        lines.append(f"{k}: {v}")
    if isinstance(body, str):
        body = body.encode()
    if body and not any(k.lower() in ("content-length", "transfer-encoding")
                        for k, _ in headers or []):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ---- assertions ------------------------------------------------------------------------

def _headers_of(resp):
    # requests' CaseInsensitiveDict or RawResponse.headers (lowercased keys)
    if isinstance(resp, RawResponse):
        return resp.headers
    return {k.lower(): v for k, v in resp.headers.items()}


def _status_of(resp):
    return resp.status if isinstance(resp, RawResponse) else resp.status_code


def _body_of(resp):
    return resp.body if isinstance(resp, RawResponse) else resp.content


def assert_common_headers(resp, head=False):
    h = _headers_of(resp)
    status = _status_of(resp)
    assert "date" in h, f"no Date header: {h}"
    d = email.utils.parsedate_to_datetime(h["date"])
    assert h["date"].endswith(" GMT"), f"Date not in IMF-fixdate: {h['date']!r}"
    assert abs(d.timestamp() - time.time()) < 120, f"Date far from now: {h['date']!r}"
    assert h.get("server", "").startswith("nexus"), f"Server header: {h.get('server')!r}"
    rid = h.get("x-request-id")
    assert rid and REQUEST_ID_RE.match(rid), f"bad X-Request-ID {rid!r}"
    if status in (204, 304) or status < 200:
        assert "content-length" not in h or status == 304, \
            f"{status} must not carry Content-Length (RFC 9110 8.6): {h}"
        assert "transfer-encoding" not in h
    else:
        te = h.get("transfer-encoding", "").lower()
        assert "content-length" in h or "chunked" in te, f"neither CL nor chunked: {h}"
        if "content-length" in h and not head and isinstance(resp, RawResponse):
            assert int(h["content-length"]) == len(resp.body)


def assert_problem(resp, status, instance=None, detail_contains=None, instance_optional=False):
    """An RFC 9457 problem+json response with the fields Nexus promises.

    `instance` (the request path) is required, and must equal `instance` when given. Only
    when the request line itself could not be parsed (instance_optional=True) may it be
    absent: the server cannot name a path it never read."""
    got = _status_of(resp)
    assert got == status, f"expected {status}, got {got}: {_body_of(resp)[:300]!r}"
    h = _headers_of(resp)
    ctype = h.get("content-type", "")
    assert ctype.split(";")[0].strip() == "application/problem+json", f"Content-Type {ctype!r}"
    doc = json.loads(_body_of(resp))
    for field in ("type", "title", "status", "detail", "instance", "request_id"):
        if field == "instance" and instance_optional and field not in doc:
            continue
        assert field in doc, f"problem lacks {field!r}: {doc}"
    assert doc["status"] == status, doc
    assert isinstance(doc["title"], str) and doc["title"], doc
    assert isinstance(doc["type"], str) and doc["type"], doc
    assert isinstance(doc["detail"], str), doc
    assert doc["request_id"] == h.get("x-request-id"), \
        f"request_id {doc['request_id']!r} != X-Request-ID {h.get('x-request-id')!r}"
    if "instance" in doc:
        assert isinstance(doc["instance"], str), doc
    if instance is not None and not (instance_optional and "instance" not in doc):
        assert doc["instance"] == instance, doc
    if detail_contains is not None:
        assert detail_contains.lower() in doc["detail"].lower(), doc
    return doc


def allow_set(value):
    return {m.strip() for m in value.split(",") if m.strip()}


# ---- a keep-alive client for load during lifecycle events --------------------------------

class KeepAliveClient:
    """One persistent HTTP/1.1 connection (http.client), reopened when the server closes it.

    A request on a *reused* connection that fails before any byte of the response arrives
    (the server closed the idle connection as the request was sent) is retried once on a
    new connection, as RFC 9112 section 9.3.1 allows for idempotent requests and as every
    browser and proxy does; those are counted in `retries`. Any other error -- refused
    connect, reset mid-response, a non-2xx status -- is a failure.
    """

    def __init__(self, host, port, timeout=10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None
        self.used = False
        self.retries = 0

    def _open(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.used = False

    def get(self, path):
        for attempt in (0, 1):
            if self.conn is None:
                self._open()
            reused = self.used
            try:
                self.conn.request("GET", path)
                r = self.conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest) as e:
                self._open()
                if reused and attempt == 0:
                    self.retries += 1
                    continue
                raise AssertionError(f"request on a fresh connection failed: {e!r}")
            body = r.read()
            self.used = True
            if r.will_close:
                self.conn.close()
                self.conn = None
            return r.status, body
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()


class LoadThreads:
    """n threads hammering path with KeepAliveClients until stopped; records every outcome."""

    def __init__(self, server, path, n=4, pause=0.0):
        self.server, self.path, self.n, self.pause = server, path, n, pause
        self.stop_ev = threading.Event()
        self.ok = 0
        self.failures = []
        self.retries = 0
        self.bodies = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self):
        c = KeepAliveClient(self.server.host, self.server.port)
        while not self.stop_ev.is_set():
            try:
                status, body = c.get(self.path)
                with self.lock:
                    if status == 200:
                        self.ok += 1
                        self.bodies.append(body)
                    else:
                        self.failures.append(f"status {status}: {body[:200]!r}")
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                with self.lock:
                    self.failures.append(repr(e))
                c._open()
            if self.pause:
                time.sleep(self.pause)
        with self.lock:
            self.retries += c.retries
        c.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=30)


# ---- throwaway databases (scripts/services.sh) ---------------------------------------------

SERVICES_SH = os.path.join(ROOT, "scripts", "services.sh")


def _read_services_env(path):
    """The variables of the env file that `scripts/services.sh start DIR` writes."""
    env = {}
    with open(path) as f:
        for line in f:
            if line.startswith("export "):
                name, value = line[len("export "):].rstrip("\n").split("=", 1)
                env[name] = "".join(shlex.split(value))
    return env


class DbServer:
    """One server of scripts/services.sh, shared by the session: PostgreSQL (kind "pg") or
    MariaDB ("mysql"). Outage tests stop, kill or restart it here; it keeps its port and
    data, and the `pg_server` / `mysql_server` fixtures start it again after each test."""

    def __init__(self, kind, env):
        prefix = {"pg": "NEXUS_TEST_PG_", "mysql": "NEXUS_TEST_MYSQL_"}[kind]
        self.kind = kind
        self.url = env[prefix + "URL"]
        u = urllib.parse.urlsplit(self.url)
        self.host, self.port = u.hostname, u.port
        self.user, self.password = u.username, u.password
        self.database = u.path.lstrip("/")
        self.log_path = env.get(prefix + "LOG")
        self.dir = env.get("NEXUS_TEST_SERVICES_DIR")
        self.script = env.get("NEXUS_TEST_SERVICES", SERVICES_SH)

    def _run(self, verb, timeout=120):
        if not self.dir:
            pytest.skip(f"{self.kind} is not a server of scripts/services.sh: cannot {verb} it")
        cmd = [self.script, f"{verb}-{self.kind}", self.dir]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout}{r.stderr}"
                                 f"\n{self.log_tail()}")

    def stop(self):
        """A clean shutdown: clients' connections close, new ones are refused."""
        self._run("stop")

    def kill(self):
        """A crash (PostgreSQL's immediate shutdown, SIGKILL for MariaDB): connections drop
        without goodbye; the next start recovers."""
        self._run("kill")

    def start(self):
        """Starts it unless it runs; returns once it accepts connections."""
        self._run("start")

    def restart(self):
        self._run("restart")

    def is_up(self):
        """Whether its port accepts TCP connections."""
        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def connect(self):
        """A client connection in autocommit mode (psycopg2 or pymysql), the caller's to close."""
        if self.kind == "pg":
            import psycopg2
            c = psycopg2.connect(self.url, connect_timeout=5)
            c.autocommit = True
            return c
        import pymysql
        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, database=self.database,
                               autocommit=True, connect_timeout=5)

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""
        return f"---- {self.log_path} (tail) ----\n" + "\n".join(text.splitlines()[-lines:])

    def __repr__(self):
        return f"<DbServer {self.kind} {self.url}>"


@pytest.fixture(scope="session")
def db_services():
    """The NEXUS_TEST_* variables of the throwaway databases and Redis: those
    scripts/run-tests.sh exports, or, when pytest runs by hand without them, those of a set
    started here for the session (in a short /tmp folder: Unix socket paths live in it) and
    stopped at its end."""
    if all(os.environ.get(f"NEXUS_TEST_{k}_URL") for k in ("PG", "MYSQL", "REDIS")):
        yield {k: v for k, v in os.environ.items() if k.startswith("NEXUS_TEST_")}
        return
    folder = tempfile.mkdtemp(prefix="nexus-services.", dir="/tmp")
    try:
        r = subprocess.run([SERVICES_SH, "start", folder], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            pytest.fail(f"scripts/services.sh start {folder} exited {r.returncode}\n"
                        f"{r.stdout}{r.stderr}", pytrace=False)
        yield _read_services_env(os.path.join(folder, "env"))
    finally:
        subprocess.run([SERVICES_SH, "stop", folder], stdin=subprocess.DEVNULL, timeout=300)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(db_services):
    """postgresql://nexus:nexus@127.0.0.1:PORT/nexus (a superuser: may create databases)."""
    return db_services["NEXUS_TEST_PG_URL"]


@pytest.fixture(scope="session")
def mysql_url(db_services):
    """mysql://nexus:nexus@127.0.0.1:PORT/nexus (all privileges: may create databases)."""
    return db_services["NEXUS_TEST_MYSQL_URL"]


@pytest.fixture(scope="session")
def _pg_server(db_services):
    return DbServer("pg", db_services)


@pytest.fixture(scope="session")
def _mysql_server(db_services):
    return DbServer("mysql", db_services)


@pytest.fixture
def pg_server(_pg_server):
    """The session's PostgreSQL as a DbServer (.url .stop() .kill() .start() .restart()),
    running again after the test whatever the test did to it."""
    yield _pg_server
    if _pg_server.dir:
        _pg_server.start()


@pytest.fixture
def mysql_server(_mysql_server):
    """The session's MariaDB as a DbServer, like pg_server."""
    yield _mysql_server
    if _mysql_server.dir:
        _mysql_server.start()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the fixtures' teardown still
    # stops the servers and databases this session started.
    signal.signal(signal.SIGTERM, _interrupt)


# ---- Redis (scripts/services.sh) ------------------------------------------------------------


class RedisServer(DbServer):
    """The Redis of scripts/services.sh (password `nexus`, no persistence: a restart empties
    it), with the verbs of DbServer (.stop() .kill() .start() .restart()) and clients of its
    own: .client(db) (a redis-py connection) and .cli(*args, db=0) (redis-cli's output)."""

    def __init__(self, env):
        self.kind = "redis"
        self.url = env["NEXUS_TEST_REDIS_URL"]
        u = urllib.parse.urlsplit(self.url)
        self.host, self.port = u.hostname, u.port
        self.user, self.password = None, u.password
        self.database = u.path.lstrip("/") or "0"
        self.socket = env.get("NEXUS_TEST_REDIS_SOCKET")
        self.log_path = env.get("NEXUS_TEST_REDIS_LOG")
        self.dir = env.get("NEXUS_TEST_SERVICES_DIR")
        self.script = env.get("NEXUS_TEST_SERVICES", SERVICES_SH)

    def connect(self, db=0):
        """A redis-py client on db (bytes in, bytes out), the caller's to close."""
        import redis
        return redis.Redis(host=self.host, port=self.port, password=self.password, db=db,
                           socket_timeout=5, socket_connect_timeout=5)

    def client(self, db=0):
        return self.connect(db)

    def cli(self, *args, db=0):
        """Runs redis-cli with args on db; its stripped output (asserts on failure)."""
        cmd = ["redis-cli", "-h", self.host, "-p", str(self.port), "-a", self.password,
               "--no-auth-warning", "-n", str(db)] + [str(a) for a in args]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 0, f"{cmd}: {r.stderr}"
        return r.stdout.strip()

    def is_up(self):
        """Whether it answers PING."""
        try:
            c = self.connect()
            try:
                return c.ping()
            finally:
                c.close()
        except Exception:  # noqa: BLE001 - any failure means "not up"
            return False


@pytest.fixture(scope="session")
def _redis_server(db_services):
    if "NEXUS_TEST_REDIS_URL" not in db_services:
        pytest.skip("no Redis among the services (scripts/services.sh start writes it)")
    return RedisServer(db_services)


@pytest.fixture(scope="session")
def redis_url(_redis_server):
    """redis://:nexus@127.0.0.1:PORT/0 (the password is `nexus`)."""
    return _redis_server.url


@pytest.fixture
def redis_server(_redis_server):
    """The session's Redis as a RedisServer, running again after the test whatever the test
    did to it (stopped or killed: it comes back empty)."""
    yield _redis_server
    if _redis_server.dir:
        _redis_server.start()


# ---- steering requests to workers -----------------------------------------------------


def call_json(conn, method, path, body=None):
    headers = [("Content-Type", "application/json")] if body is not None else []
    conn.send(raw_request(method, path, headers=headers,
                          body=json.dumps(body) if body is not None else b""))
    return conn.read_response(method)


def connections_on_distinct_workers(s, n):
    """n keep-alive connections, each served by a different worker.

    Idle workers share the listener and the kernel tends to hand every new connection to
    the same one, so the test steers: once a connection has landed on a worker, that worker
    is stopped (SIGSTOP), and the next connection can only be accepted by another. All are
    resumed before returning. [(conn, pid)]"""
    conns, stopped = [], []
    try:
        for _ in range(n):
            c = s.raw(timeout=10)
            conns.append(c)
            pid = int(call_json(c, "GET", "/test/pid").body)
            assert pid not in stopped, "a stopped worker answered"
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    return list(zip(conns, stopped))


@pytest.fixture(scope="session")
def deploy_tools():
    """The folder scripts/deploy-tools.sh fills: node_modules (kubernetes-models, dockerlint)
    and bin/helm, bin/kubectl. Installing them is part of the test: a failure fails it."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "deploy-tools.sh")], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"scripts/deploy-tools.sh failed:\n{out.stderr}"
    return out.stdout.strip().splitlines()[-1]


def config_values(show_output):
    """{dotted key: value} of `nexus config show`'s output (values are quoted, comments after
    them name the source)."""
    values, stack = {}, []
    for line in show_output.splitlines():
        m = re.match(r'^( *)([a-z_0-9]+):(?: "(.*)")?', line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        if m.group(3) is not None:
            values[".".join(stack)] = m.group(3)
    return values
