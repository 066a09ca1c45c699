"""Router: 404, 405 + Allow, HEAD from GET, OPTIONS, typed parameters, wildcards, query."""

from conftest import allow_set, assert_common_headers, assert_problem, raw_request


def test_unknown_path_404(server):
    for path in ("/nope", "/plaintext/extra", "/test", "/test/params", "/healthz"):
        r = server.get(path)
        assert_problem(r, 404, instance=path)


def test_405_with_allow(server):
    r = server.request("PUT", "/plaintext", data=b"x")
    assert_problem(r, 405, instance="/plaintext")
    allow = allow_set(r.headers["Allow"])
    assert {"GET", "HEAD"} <= allow, allow
    assert "PUT" not in allow and "POST" not in allow


def test_405_post_on_json(server):
    r = server.request("POST", "/json", data=b"{}")
    assert_problem(r, 405)
    assert {"GET", "HEAD"} <= allow_set(r.headers["Allow"])


def test_405_on_path_without_get(server):
    r = server.get("/test/methods")
    assert_problem(r, 405, instance="/test/methods")
    allow = allow_set(r.headers["Allow"])
    assert {"DELETE", "PUT"} <= allow, allow
    assert "GET" not in allow and "HEAD" not in allow, allow


def test_405_delete_on_echo(server):
    r = server.request("DELETE", "/test/echo")
    assert_problem(r, 405)
    allow = allow_set(r.headers["Allow"])
    assert {"POST", "PUT"} <= allow, allow
    assert "GET" not in allow


def test_registered_methods_work(server):
    assert server.request("DELETE", "/test/methods").text == "DELETE"
    assert server.request("PUT", "/test/methods", data=b"").text == "PUT"


def test_wildcard_method_route(server):
    for m in ("GET", "POST", "PATCH", "DELETE"):
        r = server.request(m, "/test/any")
        assert r.status_code == 200, (m, r.status_code, r.text)
        assert r.text == m


def test_options_known_path(server):
    r = server.request("OPTIONS", "/plaintext")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert {"GET", "HEAD"} <= allow_set(r.headers["Allow"])
    assert_common_headers(r)
    r = server.request("OPTIONS", "/test/methods")
    assert r.status_code == 204
    allow = allow_set(r.headers["Allow"])
    assert {"DELETE", "PUT"} <= allow and "GET" not in allow, allow


def test_options_unknown_path_404(server):
    r = server.request("OPTIONS", "/nope")
    assert_problem(r, 404)


def test_options_keeps_connection_usable(server):
    """A 204 has no body: the next response on the connection must parse cleanly."""
    with server.raw() as c:
        c.send(raw_request("OPTIONS", "/plaintext") + raw_request("GET", "/plaintext"))
        r1 = c.read_response()
        assert r1.status == 204
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == b"Hello, World!"


def test_typed_int_param(server):
    r = server.get("/test/params/42/alice")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": 42, "id_raw": "42", "name": "alice"}
    r = server.get("/test/params/0/b")
    assert r.json()["id"] == 0


def test_typed_int_param_rejects_non_integer(server):
    for path in ("/test/params/abc/alice", "/test/params/4x2/alice", "/test/params/1.5/x",
                 "/test/params//alice", "/test/params/42", "/test/params/42/alice/more",
                 "/test/params/99999999999999999999999/x"):
        r = server.get(path)
        assert_problem(r, 404, instance=path)


def test_rest_wildcard(server):
    r = server.get("/test/files/a/b/c.txt")
    assert r.status_code == 200
    assert r.json() == {"rest": "a/b/c.txt"}
    r = server.get("/test/files/one")
    assert r.json() == {"rest": "one"}


def test_query_decoding(server):
    r = server.get("/test/query?x=1&name=hello%20world%21&name=second")
    assert r.status_code == 200
    doc = r.json()
    assert doc["name"] == "hello world!"
    assert doc["raw"] == "x=1&name=hello%20world%21&name=second"
    r = server.get("/test/query?other=1")
    assert r.json() == {"name": None, "raw": "other=1"}
    r = server.get("/test/query")
    assert r.json() == {"name": None, "raw": ""}


def test_path_excludes_query(server):
    r = server.get("/test/info?a=b")
    doc = r.json()
    assert doc["path"] == "/test/info"
    assert doc["query"] == "a=b"
    assert doc["method"] == "GET"
    assert doc["version"] == 11


def test_request_headers_reach_handler(server):
    r = server.get("/test/headers", headers={"X-One": "1", "X-Mixed-Case": "Value With Spaces"})
    doc = r.json()
    assert doc["x-one"] == "1"
    assert doc["x-mixed-case"] == "Value With Spaces"
    assert doc["host"] == f"127.0.0.1:{server.port}"


def test_header_value_whitespace_trimmed(server):
    with server.raw() as c:
        c.send(raw_request("GET", "/test/headers", headers=[("X-Pad", " \t padded \t "),
                                                           ("X-Empty", "")]))
        r = c.read_response()
        assert r.status == 200
        doc = r.json()
        assert doc["x-pad"] == "padded"
        assert doc["x-empty"] == ""


def test_repeated_request_headers(server):
    with server.raw() as c:
        c.send(raw_request("GET", "/test/headers", headers=[("X-Rep", "a"), ("X-Rep", "b")]))
        r = c.read_response()
        assert r.json()["x-rep"] == "a, b"


def test_options_asterisk_describes_the_server(server):
    """RFC 9110 9.3.7: OPTIONS * is about the server as a whole."""
    with server.raw() as c:
        c.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
    assert r.status == 204
    allow = r.headers.get("allow", "")
    assert "GET" in allow and "OPTIONS" in allow
