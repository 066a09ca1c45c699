"""deploy/nginx/nexus.conf, for real: Debian's nginx in front of two Nexus instances.

The shipped site is rewritten only where a test must differ from a server (ports on
loopback, certificate and log paths in a temporary folder); every directive that matters
(upstream, TLS and HTTP/2, headers, gzip, static files, the redirect, retries) is the
shipped one.
"""

import os
import re
import shutil
import subprocess

import pytest
import requests

from conftest import ROOT, free_port, wait_for

# The test certificate is self-signed and named for nexus.example.com, not 127.0.0.1.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SITE = os.path.join(ROOT, "deploy", "nginx", "nexus.conf")
HOST = {"Host": "nexus.example.com"}


def make_certs(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=nexus.example.com", "-keyout", f"{d}/nexus.key",
                    "-out", f"{d}/nexus.crt"], check=True, capture_output=True)


def site_for(d, http_port, https_port, upstreams):
    with open(SITE) as f:
        text = f.read()
    text = re.sub(r"^\s*listen \[::\]:.*\n", "", text, flags=re.M)
    text = text.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    text = text.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    servers = re.findall(r"server 127\.0\.0\.1:\d+", text)
    assert len(servers) == len(upstreams), servers
    for old, port in zip(servers, upstreams):
        text = text.replace(old, f"server 127.0.0.1:{port}", 1)
    text = text.replace("/etc/ssl/certs/nexus.crt", f"{d}/nexus.crt")
    text = text.replace("/etc/ssl/private/nexus.key", f"{d}/nexus.key")
    text = text.replace("/var/log/nginx/", f"{d}/")
    text = text.replace("/var/www/nexus/", f"{d}/www/")
    return text


def main_conf(d):
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "".join(f"    {k}_temp_path {d}/{k};\n" for k in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n"
            f"worker_processes 1;\nevents {{ worker_connections 512; }}\n"
            f"http {{\n    include /etc/nginx/mime.types;\n{temps}"
            f"    access_log {d}/access.log;\n    include {d}/site.conf;\n}}\n")


@pytest.fixture
def stack(spawn, tmp_path):
    d = str(tmp_path)
    make_certs(d)
    os.makedirs(f"{d}/www/static")
    with open(f"{d}/www/static/app.css", "w") as f:
        f.write("body { color: black; }\n")
    a = spawn(workers=1, name="nexus-a")
    b = spawn(workers=1, name="nexus-b")
    http_port, https_port = free_port(), free_port()
    with open(f"{d}/site.conf", "w") as f:
        f.write(site_for(d, http_port, https_port, [a.port, b.port]))
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(main_conf(d))
    t = subprocess.run([NGINX, "-t", "-p", d, "-c", f"{d}/nginx.conf"], capture_output=True,
                       text=True)
    assert t.returncode == 0, t.stderr
    proc = subprocess.Popen([NGINX, "-p", d, "-c", f"{d}/nginx.conf"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"https://127.0.0.1:{https_port}"
    assert wait_for(lambda: _up(base), 5), open(f"{d}/error.log").read()
    yield type("Stack", (), {"a": a, "b": b, "https": base,
                             "http": f"http://127.0.0.1:{http_port}", "dir": d})
    proc.terminate()
    proc.wait(10)


def _up(base):
    try:
        return requests.get(base + "/health", headers=HOST, verify=False, timeout=1).ok
    except requests.exceptions.RequestException:
        return False


def get(stack, path, **kw):
    return requests.get(stack.https + path, headers={**HOST, **kw.pop("headers", {})},
                        verify=False, timeout=5, **kw)


def test_nginx_t_accepts_the_shipped_site(stack):
    d = stack.dir
    t = subprocess.run([NGINX, "-t", "-p", d, "-c", f"{d}/nginx.conf"], capture_output=True,
                       text=True)
    assert t.returncode == 0 and "syntax is ok" in t.stderr, t.stderr
    assert "warn" not in t.stderr, t.stderr


def test_plain_http_redirects_to_https_but_health_answers(stack):
    r = requests.get(stack.http + "/todos?x=1", headers=HOST, allow_redirects=False, timeout=5)
    assert r.status_code == 301
    assert r.headers["location"] == "https://nexus.example.com/todos?x=1"
    assert requests.get(stack.http + "/health", headers=HOST, timeout=5).json()["status"] == "ok"


def test_https_proxies_with_security_headers_and_request_ids(stack):
    r = get(stack, "/json")
    assert r.status_code == 200 and r.json() == {"message": "Hello, World!"}
    for h in ("strict-transport-security", "x-frame-options", "x-content-type-options",
              "content-security-policy"):
        assert h in r.headers, h
    rid = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid  # nginx's $request_id, kept by Nexus


def test_problems_pass_through_unchanged(stack):
    r = get(stack, "/no/such/route")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


def test_gzip_for_large_json(stack):
    body = '{"items": [' + ",".join(['{"title": "a todo"}'] * 500) + "]}"
    r = requests.post(stack.https + "/test/echo", data=body, verify=False, timeout=5,
                      headers={**HOST, "Content-Type": "application/json",
                               "Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers.get("content-encoding") == "gzip", r.headers
    assert r.text == body  # requests undoes the gzip


def test_static_files_are_served_by_nginx(stack):
    r = get(stack, "/static/app.css")
    assert r.status_code == 200 and "color" in r.text
    assert "immutable" in r.headers["cache-control"]
    assert "max-age=2592000" in r.headers["cache-control"]
    # The location's caching must not cost the server's security headers.
    for h in ("strict-transport-security", "x-content-type-options", "x-frame-options"):
        assert h in r.headers, h
    # Proxied answers get no Cache-Control from nginx.
    assert "cache-control" not in get(stack, "/json").headers


def test_both_instances_serve_and_one_going_away_costs_nothing(stack):
    pids = {get(stack, "/test/pid").text for _ in range(40)}
    assert len(pids) == 2, pids  # least_conn over both instances
    stack.a.stop()
    for _ in range(20):
        r = get(stack, "/json")
        assert r.status_code == 200, r.text
