"""deploy/scripts/rolling-deploy.sh and blue-green-switch.sh, for real and under load.

Debian's nginx runs the shipped sites (deploy/nginx/nexus.conf, blue-green.conf, rewritten
only for loopback ports and temporary paths) in front of spawned Nexus instances while wrk
sends POSTs through it. A POST is the request nginx never replays on another server once
it has sent it, so a request lost by an instance going away shows up as a 502.

Every wrk connection carries one request (Connection: close). An nginx reload -- how both
scripts apply a change -- closes the old workers' idle keep-alive connections; a client
that sends its next request on one at that moment must resend it, which wrk does not do
(test_a_reload_closes_only_idle_keepalive_connections shows both sides). With one
request per connection, any failure wrk counts is one nginx or Nexus caused.

The restart command given to rolling-deploy.sh is curl to a control server in this
process, which stops the instance on that port (SIGTERM) and spawns a new one there.
test_restarting_without_taking_out_fails_requests runs the same load against restarts
that leave nginx's upstream alone (kill -9, or SIGTERM and proxy_next_upstream): requests
fail there, so the zeros elsewhere are measured, not given.
"""

import http.server
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import ROOT, free_port, wait_for
from test_deploy_nginx import NGINX, main_conf, site_for

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

SCRIPTS = os.path.join(ROOT, "deploy", "scripts")
ROLLING = os.path.join(SCRIPTS, "rolling-deploy.sh")
SWITCH = os.path.join(SCRIPTS, "blue-green-switch.sh")
BG_SITE = os.path.join(ROOT, "deploy", "nginx", "blue-green.conf")
SHIPPED_UPSTREAM = os.path.join(ROOT, "deploy", "nginx", "nexus-active", "upstream.conf")
TEMPLATE_UNIT = os.path.join(ROOT, "deploy", "systemd", "nexus@.service")
UNIT = os.path.join(ROOT, "deploy", "systemd", "nexus.service")
WRK = "/usr/bin/wrk"
HOST = {"Host": "nexus.example.com"}

POST_CLOSE = """
wrk.method = "POST"
wrk.body = '{"title": "rolling"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Host"] = "nexus.example.com"
wrk.headers["Connection"] = "close"
"""
GET_KEEPALIVE = """
wrk.headers["Host"] = "nexus.example.com"
"""


def script_env():
    """The caller's environment without variables the scripts or nexus would read."""
    drop = ("NEXUS_", "ROLLING_", "BG_", "NGINX_", "COMPOSE_")
    return {k: v for k, v in os.environ.items()
            if not k.startswith(drop) and k.lower() not in ("http_proxy", "https_proxy",
                                                          "all_proxy")}


def make_certs(d):
    # An EC key: its handshakes are cheap, so one-request connections still make a load.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=nexus.example.com", "-keyout", f"{d}/nexus.key",
                    "-out", f"{d}/nexus.crt"], check=True, capture_output=True)


_LOADS = []


@pytest.fixture(autouse=True)
def _no_load_left():
    """A test that fails before stopping its wrk does not leave it running."""
    yield
    while _LOADS:
        proc = _LOADS.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


class Wrk:
    """wrk in the background until stop(); then its counts, parsed from its report."""

    def __init__(self, d, url, lua, connections=16, name="load"):
        script = os.path.join(d, f"{name}.lua")
        with open(script, "w") as f:
            f.write(lua)
        self.proc = subprocess.Popen(
            [WRK, "-t2", f"-c{connections}", "-d120s", "--timeout", "5s", "-s", script, url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _LOADS.append(self.proc)
        time.sleep(0.7)
        assert self.proc.poll() is None, self.proc.stdout.read()

    def stop(self):
        self.proc.send_signal(signal.SIGINT)  # wrk reports what it did so far and exits
        out, _ = self.proc.communicate(timeout=30)
        self.report = out
        m = re.search(r"(\d+) requests in", out)
        assert m, out
        self.requests = int(m.group(1))
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      out)
        self.socket = dict(zip(("connect", "read", "write", "timeout"),
                               (int(x) for x in m.groups()))) if m else {}
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        self.non2xx = int(m.group(1)) if m else 0
        self.failed = self.non2xx + sum(self.socket.values())
        return self


class Nginx:
    """Debian's nginx on a prefix folder, with the commands the scripts are given."""

    def __init__(self, d, site):
        self.dir = d
        with open(f"{d}/site.conf", "w") as f:
            f.write(site)
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(main_conf(d))
        self.base = [NGINX, "-p", d, "-c", f"{d}/nginx.conf"]
        self.test_cmd = " ".join(self.base + ["-t", "-q"])
        self.reload_cmd = " ".join(self.base + ["-s", "reload"])
        self.pid_file = f"{d}/nginx.pid"
        t = subprocess.run(self.base + ["-t"], capture_output=True, text=True)
        assert t.returncode == 0, t.stderr
        self.proc = subprocess.Popen(self.base, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def args(self):
        return ["--nginx-test", self.test_cmd, "--nginx-reload", self.reload_cmd,
                "--nginx-pid-file", self.pid_file]

    def reload(self):
        subprocess.run(self.base + ["-s", "reload"], check=True, capture_output=True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)

    def error_log(self):
        out = ""
        for name in ("error.log", "nexus_error.log"):
            try:
                with open(f"{self.dir}/{name}") as f:
                    out += f.read()[-3000:]
            except OSError:
                pass
        return out


def get(base, path):
    with requests.Session() as s:
        s.trust_env = False  # no proxy from the environment
        return s.get(base + path, headers=HOST, verify=False, timeout=5)


def pids_through(base, n=30):
    """The worker pids that answered n requests through nginx (new connection each)."""
    return {int(get(base, "/test/pid").text) for _ in range(n)}


class Instances:
    """Nexus instances by port, and a control server that restarts one on request:
    POST /restart/PORT stops it (SIGTERM; the Server asserts a clean exit) and spawns a
    new one on that port. Ports listed in `unready` come back with /ready at 503; with
    `kill` set, the old process group gets SIGKILL instead."""

    def __init__(self, spawn, d, names, args=("--shutdown-delay", "0.5s")):
        self.spawn, self.dir, self.args = spawn, d, list(args)
        self.by_port = {}
        self.restarted = []
        self.unready = set()
        self.kill = False
        for name in names:
            s = spawn(workers=1, args=self.args, name=name)
            self.by_port[s.port] = s
        self.marker = os.path.join(d, "not-ready-marker")
        with open(self.marker, "w"):
            pass
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                try:
                    port = int(self.path.rsplit("/", 1)[1])
                    owner.restart(port)
                    code, body = 200, b"restarted\n"
                except Exception as e:  # noqa: BLE001 - reported to the script
                    code, body = 500, repr(e).encode() + b"\n"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.ctl = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.ctl.serve_forever, daemon=True).start()
        self.restart_cmd = (f"curl -fsS -X POST "
                            f"http://127.0.0.1:{self.ctl.server_address[1]}/restart/{{port}}")

    def ports(self):
        return list(self.by_port)

    def restart(self, port):
        old = self.by_port[port]
        if self.kill:
            os.killpg(old.pgid, signal.SIGKILL)
            old.wait_exit(5)
        else:
            old.stop()
        env = {"NEXUS_TEST_NOT_READY_FILE": self.marker} if port in self.unready else None
        new = self.spawn(workers=1, port=port, args=self.args, env=env, name=f"{old.name}-r")
        self.by_port[port] = new
        self.restarted.append(port)

    def worker(self, port):
        return self.by_port[port].wait_workers(1)[0]

    def close(self):
        self.ctl.shutdown()
        self.ctl.server_close()


@pytest.fixture
def rolling_stack(spawn, tmp_path):
    """Two instances behind deploy/nginx/nexus.conf; the upstream file is its copy."""
    d = str(tmp_path)
    make_certs(d)
    inst = Instances(spawn, d, ["nexus-a", "nexus-b"])
    https_port = free_port()
    ngx = Nginx(d, site_for(d, free_port(), https_port, inst.ports()))
    base = f"https://127.0.0.1:{https_port}"
    assert wait_for(lambda: _answers(base), 5), ngx.error_log()
    yield type("RollingStack", (), {"inst": inst, "nginx": ngx, "https": base, "dir": d,
                                    "site": f"{d}/site.conf"})
    ngx.stop()
    inst.close()


def _answers(base):
    try:
        return get(base, "/health").ok
    except requests.exceptions.RequestException:
        return False


def rolling(st, *extra, ready_timeout=10):
    addrs = " ".join(f"127.0.0.1:{p}" for p in st.inst.ports())
    cmd = [ROLLING, "--upstream-file", st.site, "--instances", addrs,
           "--restart-cmd", st.inst.restart_cmd, "--ready-timeout", str(ready_timeout),
           "--drain", "5", "--pause", "0.5", *st.nginx.args(), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=script_env())


def read(path):
    with open(path) as f:
        return f.read()


# ---- rolling restart -----------------------------------------------------------------------

@pytest.mark.parametrize("follow", [True, False], ids=["follow-reload", "fixed-drain"])
def test_rolling_restart_under_load_fails_no_request(rolling_stack, follow):
    """follow-reload: the script sees the nginx master and waits for its old workers;
    fixed-drain: it does not (nginx in a container) and waits --drain seconds."""
    st = rolling_stack
    before = {p: (st.inst.by_port[p].pid, st.inst.worker(p)) for p in st.inst.ports()}
    site_before = read(st.site)
    load = Wrk(st.dir, st.https + "/test/echo", POST_CLOSE)
    r = rolling(st) if follow else rolling(st, "--nginx-pid-file", "", "--drain", "1")
    time.sleep(0.5)
    load.stop()
    print(r.stdout, r.stderr, load.report)
    assert r.returncode == 0, r.stdout + r.stderr + st.nginx.error_log()
    assert load.requests > 300, load.report  # the load ran through the whole rollout
    assert load.failed == 0, load.report + st.nginx.error_log()
    # Each instance was restarted once, in order, and is a new process.
    assert st.inst.restarted == st.inst.ports()
    after = {p: (st.inst.by_port[p].pid, st.inst.worker(p)) for p in st.inst.ports()}
    for p in st.inst.ports():
        assert after[p][0] != before[p][0] and after[p][1] != before[p][1], (before, after)
    # Both are back in the upstream, and nginx sends requests to both new ones.
    assert read(st.site) == site_before
    assert pids_through(st.https) == {w for _, w in after.values()}
    assert "restarted 2 instances" in r.stdout, r.stdout


def test_rolling_restart_stops_at_an_instance_that_does_not_become_ready(rolling_stack):
    st = rolling_stack
    a, b = st.inst.ports()
    st.inst.unready.add(a)
    b_pid = st.inst.by_port[b].pid
    load = Wrk(st.dir, st.https + "/test/echo", POST_CLOSE)
    r = rolling(st, ready_timeout=2)
    time.sleep(0.5)
    load.stop()
    print(r.stdout, r.stderr, load.report)
    assert r.returncode != 0, r.stdout
    assert f"127.0.0.1:{a} did not become ready within 2s" in r.stderr, r.stderr
    assert f"127.0.0.1:{a} is still marked down" in r.stderr, r.stderr
    # a stays out; b was not touched and serves everything, and nothing failed meanwhile.
    site = read(st.site)
    assert re.search(rf"server 127\.0\.0\.1:{a} [^;]*\bdown;", site), site
    assert "down" not in re.search(rf"server 127\.0\.0\.1:{b} [^;]*;", site).group(0)
    assert st.inst.restarted == [a] and st.inst.by_port[b].pid == b_pid
    assert st.inst.by_port[a].get("/ready").status_code == 503
    assert pids_through(st.https) == {st.inst.worker(b)}
    assert load.requests > 100 and load.failed == 0, load.report + st.nginx.error_log()


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
def test_restarting_without_taking_out_fails_requests(rolling_stack, how):
    """The controls: each instance restarted while nginx still sends it requests, with the
    same load and pause as the script. kill -9 cuts off the POSTs it is serving; SIGTERM
    (shutdown_delay, then the listener closes) leaves only refused connections, which
    nginx retries on the other instance -- but counts against max_fails, so it holds the
    restarted instance out for fail_timeout and has no live upstream (502) once the
    second one stops."""
    st = rolling_stack
    st.inst.kill = how == "kill -9"
    load = Wrk(st.dir, st.https + "/test/echo", POST_CLOSE)
    for p in st.inst.ports():
        st.inst.restart(p)
        time.sleep(0.5)
    time.sleep(0.5)
    load.stop()
    print(load.report, st.nginx.error_log())
    assert load.failed > 0, load.report


def test_preflight_changes_nothing_and_refuses_a_broken_config(rolling_stack):
    st = rolling_stack
    site = read(st.site)
    r = rolling(st, "--check")
    assert r.returncode == 0, r.stderr
    assert "nginx -t passes" in r.stdout and "restart: curl" in r.stdout, r.stdout
    assert read(st.site) == site and st.inst.restarted == []
    # nginx -t fails before the rollout starts: nothing is touched.
    with open(st.site, "a") as f:
        f.write("\nno_such_directive on;\n")
    broken = read(st.site)
    r = rolling(st)
    assert r.returncode != 0
    assert "does not pass its test before any change" in r.stderr, r.stderr
    assert read(st.site) == broken and st.inst.restarted == []
    # An instance the upstream does not list is refused too.
    with open(st.site, "w") as f:
        f.write(site)
    r = subprocess.run([ROLLING, "--upstream-file", st.site, "--instances",
                        f"127.0.0.1:{st.inst.ports()[0]},127.0.0.1:1", *st.nginx.args(),
                        "--restart-cmd", st.inst.restart_cmd],
                       capture_output=True, text=True, timeout=30, env=script_env())
    assert r.returncode != 0 and "no 'server 127.0.0.1:1 ...;' line" in r.stderr, r.stderr
    assert st.inst.restarted == []


def test_a_reload_closes_only_idle_keepalive_connections(rolling_stack):
    """Why the loads use one request per connection: during nginx reloads (no change at
    all) a keep-alive wrk counts read errors -- the old workers closing connections it was
    about to reuse -- and never an error status; one-request connections see nothing."""
    st = rolling_stack
    keepalive = Wrk(st.dir, st.https + "/test/pid", GET_KEEPALIVE, connections=8, name="ka")
    close = Wrk(st.dir, st.https + "/test/echo", POST_CLOSE, connections=8)
    for _ in range(5):
        st.nginx.reload()
        time.sleep(0.4)
    keepalive.stop()
    close.stop()
    print(keepalive.report, close.report)
    assert close.requests > 100 and close.failed == 0, close.report
    assert keepalive.non2xx == 0, keepalive.report
    assert keepalive.socket.get("read", 0) > 0, keepalive.report
    assert keepalive.socket["connect"] == keepalive.socket["timeout"] == 0, keepalive.report


# ---- blue-green -------------------------------------------------------------------------------

def bg_site(d, http_port, https_port):
    with open(BG_SITE) as f:
        text = f.read()
    assert "include /etc/nginx/nexus-active/upstream.conf;" in text
    text = re.sub(r"^\s*listen \[::\]:.*\n", "", text, flags=re.M)
    text = text.replace("listen 80 default_server;", f"listen 127.0.0.1:{http_port} default_server;")
    text = text.replace("listen 443 ssl http2 default_server;",
                        f"listen 127.0.0.1:{https_port} ssl http2 default_server;")
    text = text.replace("/etc/nginx/nexus-active/", f"{d}/nexus-active/")
    text = text.replace("/etc/nginx/tls/fullchain.pem", f"{d}/nexus.crt")
    text = text.replace("/etc/nginx/tls/privkey.pem", f"{d}/nexus.key")
    text = text.replace("/usr/share/nginx/html/static/", f"{d}/www/static/")
    return text


@pytest.fixture
def bg_stack(spawn, tmp_path):
    d = str(tmp_path)
    make_certs(d)
    os.makedirs(f"{d}/nexus-active")
    blue = spawn(workers=1, name="nexus-blue")
    green = spawn(workers=1, name="nexus-green")
    http_port, https_port = free_port(), free_port()
    upstream = f"{d}/nexus-active/upstream.conf"
    colour_args = ["--upstream-file", upstream, "--blue", f"127.0.0.1:{blue.port}",
                   "--green", f"127.0.0.1:{green.port}",
                   "--verify-url", f"http://127.0.0.1:{http_port}/health",
                   "--verify-timeout", "5"]
    r = subprocess.run([SWITCH, *colour_args, "render", "blue"], capture_output=True,
                       text=True, env=script_env(), check=True)
    with open(upstream, "w") as f:
        f.write(r.stdout)
    ngx = Nginx(d, bg_site(d, http_port, https_port))
    base = f"https://127.0.0.1:{https_port}"
    assert wait_for(lambda: _answers(base), 5), ngx.error_log()

    def switch(*args):
        return subprocess.run([SWITCH, *colour_args, *ngx.args(), *args], capture_output=True,
                              text=True, timeout=60, env=script_env())

    yield type("BgStack", (), {"blue": blue, "green": green, "nginx": ngx, "https": base,
                               "dir": d, "upstream": upstream, "switch": staticmethod(switch)})
    ngx.stop()


def serving(st):
    """(colours named by X-Deployment, worker pids) of 30 requests through nginx."""
    colours, pids = set(), set()
    for _ in range(30):
        r = get(st.https, "/test/pid")
        assert r.status_code == 200
        colours.add(r.headers["x-deployment"])
        pids.add(int(r.text))
    return colours, pids


def test_blue_green_switch_and_back_under_load(bg_stack):
    st = bg_stack
    blue_w, green_w = st.blue.wait_workers(1)[0], st.green.wait_workers(1)[0]
    assert serving(st) == ({"blue"}, {blue_w})
    load = Wrk(st.dir, st.https + "/test/echo", POST_CLOSE)
    to_green = st.switch("green")
    after_green = serving(st) if to_green.returncode == 0 else None
    to_blue = st.switch("blue")
    time.sleep(0.5)
    load.stop()
    print(to_green.stdout, to_green.stderr, to_blue.stdout, to_blue.stderr, load.report)
    assert to_green.returncode == 0, to_green.stderr + st.nginx.error_log()
    assert "now sends traffic to green" in to_green.stdout, to_green.stdout
    assert "X-Deployment: green" in to_green.stdout
    assert after_green == ({"green"}, {green_w})
    assert to_blue.returncode == 0, to_blue.stderr
    assert serving(st) == ({"blue"}, {blue_w})
    assert load.requests > 200 and load.failed == 0, load.report + st.nginx.error_log()
    # Already blue: nothing to do.
    again = st.switch("blue")
    assert again.returncode == 0 and "already the live colour" in again.stdout


def test_blue_green_refuses_an_unready_or_stopped_colour(bg_stack):
    st = bg_stack
    blue_w = st.blue.wait_workers(1)[0]
    before = read(st.upstream)
    with open(st.green.not_ready_file, "w"):
        pass
    r = st.switch("green")
    assert r.returncode != 0
    assert "green is not ready" in r.stderr and "answered 503" in r.stderr, r.stderr
    assert "nginx still serves blue" in r.stderr
    assert read(st.upstream) == before
    assert serving(st) == ({"blue"}, {blue_w})
    st.green.stop()
    r = st.switch("green")
    assert r.returncode != 0 and "answered 000" in r.stderr, r.stderr
    assert read(st.upstream) == before
    # A file nginx rejects is put back (ready URL given, servers nginx cannot use).
    os.remove(st.green.not_ready_file)
    r = st.switch("--green", "127.0.0.1:99999", "--green-ready",
                  st.blue.url("/ready"), "green")
    assert r.returncode != 0 and "nginx -t rejects" in r.stderr, r.stderr
    assert read(st.upstream) == before
    assert serving(st) == ({"blue"}, {blue_w})
    status = st.switch("status")
    assert "live colour: blue" in status.stdout, status.stdout


def test_shipped_upstream_is_blue_with_compose_names():
    r = subprocess.run([SWITCH, "render", "blue"], capture_output=True, text=True,
                       env=script_env(), check=True)
    assert read(SHIPPED_UPSTREAM) == r.stdout
    assert "server nexus-blue:8000 " in r.stdout and "upstream nexus_active {" in r.stdout
    green = subprocess.run([SWITCH, "render", "green"], capture_output=True, text=True,
                           env=script_env(), check=True).stdout
    assert "server nexus-green:8000 " in green and "default green;" in green


# ---- the scripts and the template unit ----------------------------------------------------

def test_scripts_pass_shellcheck_and_answer_help():
    scripts = [os.path.join(SCRIPTS, n) for n in
               ("rolling-deploy.sh", "blue-green-switch.sh", "common.sh")]
    r = subprocess.run(["shellcheck", "--external-sources", *scripts], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    for s in (ROLLING, SWITCH):
        assert os.access(s, os.X_OK), s
        h = subprocess.run([s, "--help"], capture_output=True, text=True, env=script_env())
        assert h.returncode == 0 and "Usage:" in h.stdout, h.stdout + h.stderr
        assert "set -euo pipefail" in read(s)
    bad = subprocess.run([ROLLING, "--no-such-flag"], capture_output=True, text=True,
                         env=script_env())
    assert bad.returncode != 0 and "unknown argument" in bad.stderr


def _service_lines(path):
    with open(path) as f:
        lines = [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
    return lines


def test_template_unit_is_nexus_service_per_port():
    ours, theirs = _service_lines(TEMPLATE_UNIT), _service_lines(UNIT)
    exec_start = [l for l in ours if l.startswith("ExecStart=")]
    assert exec_start == [
        "ExecStart=/usr/local/bin/nexus serve --config /etc/nexus/config.yaml --port %i"]
    # Everything else is nexus.service's, plus the per-instance environment file.
    differ = ({l for l in ours} ^ {l for l in theirs}) - set(exec_start) - {
        l for l in theirs if l.startswith(("ExecStart=", "Description="))}
    assert differ == {"EnvironmentFile=-/etc/nexus/nexus-%i.env",
                      "Description=Nexus application server on port %i"}, differ
    # systemd-analyze verify: test_deploy_units.py, beside nexus.service.
