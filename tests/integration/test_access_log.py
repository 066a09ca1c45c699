"""Access log in nginx's combined format: --access-log PATH|stdout|off and
NEXUS_LOGGING_ACCESS_LOG."""

import datetime
import os
import re
import time

import pytest

from conftest import raw_request, wait_for

# $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
# "$http_referer" "$http_user_agent"
COMBINED = re.compile(
    r'^(?P<addr>\S+) - (?P<user>\S+) \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} '
    r'[+-]\d{4})\] "(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)"$')


def _lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


def _parsed(text):
    out = []
    for ln in _lines(text):
        m = COMBINED.match(ln)
        assert m, f"access log line not in combined format: {ln!r}"
        out.append(m.groupdict())
    return out


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _wait_lines(get_text, pred, timeout=3.0):
    """Polls the log until some parsed line satisfies pred; returns that line."""
    def find():
        for ln in _lines(get_text()):
            m = COMBINED.match(ln)
            if m and pred(m.groupdict()):
                return m.groupdict()
        return None
    return wait_for(find, timeout)


@pytest.fixture(scope="module")
def logged(spawn_module, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("alog") / "access.log")
    srv = spawn_module(workers=2, name="logged", access_log=path)
    srv.access_path = path
    return srv


def test_combined_line_for_plaintext(logged):
    r = logged.get("/plaintext", headers={"X-Request-ID": "alog-1"})
    assert r.status_code == 200
    ua = r.request.headers["User-Agent"]
    assert ua.startswith("python-requests/")
    line = _wait_lines(lambda: _read(logged.access_path),
                       lambda d: d["request"] == "GET /plaintext HTTP/1.1")
    assert line, f"no line for GET /plaintext in:\n{_read(logged.access_path)}"
    assert line["addr"] == "127.0.0.1"
    assert line["user"] == "-"
    assert line["status"] == "200"
    assert line["bytes"] == "13"
    assert line["referer"] == "-"
    assert line["ua"] == ua
    t = datetime.datetime.strptime(line["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert abs(t.timestamp() - time.time()) < 120, line["time"]


def test_every_line_is_combined(logged):
    logged.get("/json")
    logged.get("/nope")
    wait_for(lambda: "/nope" in _read(logged.access_path), 3)
    _parsed(_read(logged.access_path))


def test_status_bytes_referer_query(logged):
    r = logged.get("/test/query?name=v%20x", headers={"Referer": "http://ref.example/p?q=1",
                                                      "User-Agent": "tester/1.0"})
    line = _wait_lines(lambda: _read(logged.access_path),
                       lambda d: d["request"] == "GET /test/query?name=v%20x HTTP/1.1")
    assert line, _read(logged.access_path)
    assert line["status"] == "200"
    assert line["bytes"] == str(len(r.content))
    assert line["referer"] == "http://ref.example/p?q=1"
    assert line["ua"] == "tester/1.0"
    r = logged.get("/no/such", headers={"User-Agent": "tester/404"})
    line = _wait_lines(lambda: _read(logged.access_path), lambda d: d["ua"] == "tester/404")
    assert line and line["status"] == "404"
    assert line["bytes"] == str(len(r.content))


def test_head_logs_zero_bytes(logged):
    logged.request("HEAD", "/plaintext", headers={"User-Agent": "tester/head"})
    line = _wait_lines(lambda: _read(logged.access_path), lambda d: d["ua"] == "tester/head")
    assert line and line["request"] == "HEAD /plaintext HTTP/1.1"
    assert line["bytes"] == "0"


def test_post_and_http10_logged(logged):
    logged.request("POST", "/test/echo", data=b"abcdef", headers={"User-Agent": "tester/post"})
    line = _wait_lines(lambda: _read(logged.access_path), lambda d: d["ua"] == "tester/post")
    assert line and line["request"] == "POST /test/echo HTTP/1.1" and line["bytes"] == "6"
    with logged.raw() as c:
        c.send(raw_request("GET", "/plaintext", version="HTTP/1.0", host=None,
                           headers=[("User-Agent", "tester/10")]))
        c.read_response()
    line = _wait_lines(lambda: _read(logged.access_path), lambda d: d["ua"] == "tester/10")
    assert line and line["request"] == "GET /plaintext HTTP/1.0"


def test_quote_in_user_agent_is_escaped(logged):
    """A client cannot forge log fields: a '"' in the User-Agent is escaped (nginx: \\x22)."""
    evil = 'evil" 200 0 "-" "forged'
    logged.get("/plaintext", headers={"User-Agent": evil})
    time.sleep(0.3)
    lines = [ln for ln in _lines(_read(logged.access_path)) if "evil" in ln]
    assert lines, "no line for the evil request"
    for ln in lines:
        m = COMBINED.match(ln)
        assert m, f"line unparseable after injection: {ln!r}"
        assert m["request"] == "GET /plaintext HTTP/1.1"
        assert m["ua"] != "forged" and "evil" in m["ua"], ln


def test_malformed_request_logged(logged):
    with logged.raw() as c:
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nUser-Agent: tester/bad\r\nX-A : b\r\n\r\n")
        assert c.read_response().status == 400
    line = _wait_lines(lambda: _read(logged.access_path), lambda d: d["status"] == "400")
    assert line, "a 400 for a malformed request is not logged"


def test_all_lines_flushed_by_stop(spawn, tmp_path):
    path = str(tmp_path / "flush.log")
    srv = spawn(workers=2, access_log=path)
    with srv.session() as s:
        for i in range(30):
            assert s.get(srv.url(f"/test/params/{i}/f"), timeout=5).status_code == 200
    srv.stop()
    reqs = [d["request"] for d in _parsed(_read(path))]
    for i in range(30):
        assert f"GET /test/params/{i}/f HTTP/1.1" in reqs, f"line {i} missing"


def test_access_log_stdout(spawn):
    srv = spawn(workers=1, access_log="stdout")
    srv.get("/plaintext", headers={"User-Agent": "tester/stdout"})
    line = _wait_lines(srv.stdout, lambda d: d["ua"] == "tester/stdout")
    assert line, f"no access line on stdout within 3 s:\n{srv.stdout()}"
    assert all(not COMBINED.match(ln) for ln in _lines(srv.log())), "access lines on stderr"


def test_access_log_default_is_stdout(spawn):
    srv = spawn(workers=1, access_log=None)
    srv.get("/plaintext", headers={"User-Agent": "tester/default"})
    assert _wait_lines(srv.stdout, lambda d: d["ua"] == "tester/default"), srv.stdout()


def test_access_log_off(spawn, tmp_path):
    srv = spawn(workers=1, access_log="off")
    for _ in range(10):
        srv.get("/plaintext", headers={"User-Agent": "tester/off"})
    srv.get("/nope", headers={"User-Agent": "tester/off"})
    time.sleep(0.5)
    assert "tester/off" not in srv.stdout()
    assert "tester/off" not in srv.log()
    assert not any(COMBINED.match(ln) for ln in _lines(srv.stdout()))
    assert not os.path.exists(os.path.join(srv.workdir, "off")), "'off' taken as a file name"


def test_access_log_env(spawn, tmp_path):
    path = str(tmp_path / "env-access.log")
    srv = spawn(workers=1, access_log=None, env={"NEXUS_LOGGING_ACCESS_LOG": path})
    srv.get("/plaintext", headers={"User-Agent": "tester/env"})
    assert _wait_lines(lambda: _read(path), lambda d: d["ua"] == "tester/env"), _read(path)
    assert "tester/env" not in srv.stdout()


def test_access_log_flag_beats_env(spawn, tmp_path):
    path = str(tmp_path / "env-access.log")
    srv = spawn(workers=1, access_log="off", env={"NEXUS_LOGGING_ACCESS_LOG": path})
    srv.get("/plaintext", headers={"User-Agent": "tester/flag"})
    time.sleep(0.5)
    assert "tester/flag" not in _read(path)
    assert "tester/flag" not in srv.stdout()
