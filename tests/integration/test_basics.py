"""Built-in endpoints, the hello plugin, and what every response carries."""

import json
import subprocess

from conftest import (REQUEST_ID_RE, assert_common_headers, assert_problem, raw_request)


def test_health(server):
    r = server.get("/health")
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.json() == {"status": "ok"}
    assert_common_headers(r)


def test_ready(server):
    r = server.get("/ready")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.json()["status"] == "ready"


def test_plaintext(server):
    r = server.get("/plaintext")
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "text/plain"
    assert r.content == b"Hello, World!"
    assert r.headers["Content-Length"] == "13"
    assert_common_headers(r)


def test_json(server):
    r = server.get("/json")
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.json() == {"message": "Hello, World!"}
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert_common_headers(r)


def test_common_headers_raw(server):
    """Date, Server, Content-Length and X-Request-ID on a response read byte by byte."""
    with server.raw() as c:
        c.send(raw_request("GET", "/json"))
        r = c.read_response()
        assert r.status == 200
        assert r.version == "HTTP/1.1"
        assert_common_headers(r)
        assert len(r.header_values("Date")) == 1
        assert len(r.header_values("Content-Length")) == 1


def test_request_id_echoed_when_valid(server):
    rid = "abc-DEF_123.xyz"
    r = server.get("/plaintext", headers={"X-Request-ID": rid})
    assert r.headers["X-Request-ID"] == rid
    r = server.get("/test/reqid", headers={"X-Request-ID": rid})
    assert r.text == rid, "nx_req_id must return the echoed id"
    long_ok = "a" * 128
    r = server.get("/plaintext", headers={"X-Request-ID": long_ok})
    assert r.headers["X-Request-ID"] == long_ok


def test_request_id_replaced_when_invalid(server):
    for bad in ("has space", "a" * 129, "semi;colon", "quote\"d", "slash/x", ""):
        r = server.get("/test/reqid", headers={"X-Request-ID": bad})
        got = r.headers["X-Request-ID"]
        assert got != bad, f"invalid id {bad!r} echoed"
        assert REQUEST_ID_RE.match(got), got
        assert r.text == got, "the handler's nx_req_id must equal the header sent back"


def test_request_id_generated_unique(server):
    ids = set()
    with server.session() as s:
        for _ in range(50):
            r = s.get(server.url("/test/reqid"), timeout=5)
            rid = r.headers["X-Request-ID"]
            assert REQUEST_ID_RE.match(rid), rid
            assert r.text == rid
            ids.add(rid)
    assert len(ids) == 50, "generated request ids repeat"


def test_error_response_shape(server):
    r = server.get("/no/such/thing", headers={"X-Request-ID": "trace-404"})
    doc = assert_problem(r, 404, instance="/no/such/thing")
    assert doc["request_id"] == "trace-404"
    assert_common_headers(r)


def test_handler_problem_shape(server):
    r = server.get("/test/status?code=418")
    doc = assert_problem(r, 418, instance="/test/status")
    assert "418" in doc["detail"]
    r = server.get("/test/status?code=503")
    assert_problem(r, 503, instance="/test/status")


def test_head_of_get_route(server):
    g = server.get("/plaintext")
    h = server.request("HEAD", "/plaintext")
    assert h.status_code == 200
    assert h.content == b""
    assert h.headers["Content-Length"] == g.headers["Content-Length"] == "13"
    assert h.headers["Content-Type"] == g.headers["Content-Type"]
    assert_common_headers(h, head=True)


def test_head_sends_no_body_bytes(server):
    """HEAD then GET on one connection: a body after HEAD would corrupt the second reply."""
    json_len = len(server.get("/json").content)
    with server.raw() as c:
        c.send(raw_request("HEAD", "/json") + raw_request("GET", "/plaintext"))
        h = c.read_response(method="HEAD")
        assert h.status == 200
        assert int(h.headers["content-length"]) == json_len
        g = c.read_response()
        assert g.status == 200 and g.body == b"Hello, World!"
        assert c.recv_available(0.3) == b""


def test_head_of_big_body(server):
    h = server.request("HEAD", "/test/big?n=100000")
    assert h.status_code == 200
    assert h.headers["Content-Length"] == "100000"
    assert h.content == b""


def test_client_addr(server):
    assert server.get("/test/client").text == "127.0.0.1"


def test_curl(server):
    out = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-i", "--http1.1", server.url("/json")],
        capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body) == {"message": "Hello, World!"}
    assert b"\r\nserver: nexus" in head.lower()


def test_curl_keepalive_reuses_connection(server):
    """curl fetching two URLs in one invocation reuses the connection."""
    json_body = server.get("/json").content
    out = subprocess.run(
        ["curl", "-sS", "-v", "--noproxy", "*", server.url("/plaintext"), server.url("/json")],
        capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"Hello, World!" + json_body
    assert b"Re-using existing connection" in out.stderr or b"Reusing existing" in out.stderr, \
        out.stderr.decode(errors="replace")


def test_large_response(server):
    n = 3 * 1024 * 1024 + 17
    r = server.get("/test/big?n=%d" % n)
    assert r.status_code == 200
    assert len(r.content) == n
    expected = (b"0123456789" * (n // 10 + 1))[:n]
    assert r.content == expected


def test_file_response(server, tmp_path):
    p = tmp_path / "hello.txt"
    p.write_bytes(b"file body\n")
    r = server.get("/test/file", params={"path": str(p)})
    assert r.status_code == 200, r.text
    assert r.content == b"file body\n"
    assert r.headers["Content-Type"].split(";")[0] == "text/plain"
    assert r.headers["Content-Length"] == "10"
    j = tmp_path / "data.json"
    j.write_bytes(b'{"a":1}')
    r = server.get("/test/file", params={"path": str(j)})
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.json() == {"a": 1}


def test_file_response_large(server, tmp_path):
    p = tmp_path / "big.bin"
    data = bytes(range(256)) * 8192 + b"tail"  # 2 MiB + 4
    p.write_bytes(data)
    r = server.get("/test/file", params={"path": str(p)})
    assert r.status_code == 200
    assert r.content == data


def test_file_missing_is_404_problem(server, tmp_path):
    r = server.get("/test/file", params={"path": str(tmp_path / "nope.txt")})
    assert_problem(r, 404, instance="/test/file")


def test_response_header_injection_refused(server):
    r = server.get("/test/badheader")
    assert r.status_code == 200
    assert r.text == "-1 -1 0 -1 -1"
    assert r.headers["Content-Length"] == str(len(r.content))
    assert "Transfer-Encoding" not in r.headers
    assert "X-Injected" not in r.headers
    assert r.headers.get("X-Good") == "fine"
    assert "X-Split" not in r.headers


def test_head_of_file_response(server, tmp_path):
    p = tmp_path / "h.txt"
    p.write_bytes(b"x" * 12345)
    with server.raw() as c:
        c.send(raw_request("HEAD", f"/test/file?path={p}") + raw_request("GET", "/plaintext"))
        h = c.read_response(method="HEAD")
        assert h.status == 200 and h.headers["content-length"] == "12345"
        assert c.read_response().body == b"Hello, World!"


def test_head_of_error_has_no_body(server):
    with server.raw() as c:
        c.send(raw_request("HEAD", "/nope") + raw_request("GET", "/plaintext"))
        h = c.read_response(method="HEAD")
        assert h.status == 404
        assert h.headers["content-type"].startswith("application/problem+json")
        assert int(h.headers.get("content-length", "0")) > 0
        g = c.read_response()
        assert g.status == 200 and g.body == b"Hello, World!"
