"""Malformed requests and request-smuggling vectors: each gets a problem+json error and, when
the framing can no longer be trusted, the connection is closed so that nothing sent after the
bad request is ever served."""

import pytest

from conftest import assert_problem, raw_request

H = b"Host: x\r\n"
# A request smuggled after the bad one: if it is ever answered, framing was desynchronised.
TAIL = b"GET /test/params/666/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

# name -> (request bytes, expected status)
BAD_400 = {
    "te_and_cl": b"POST /test/echo HTTP/1.1\r\n" + H +
                 b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "cl_and_te": b"POST /test/echo HTTP/1.1\r\n" + H +
                 b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    "two_different_cl": b"POST /test/echo HTTP/1.1\r\n" + H +
                        b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl_list_different": b"POST /test/echo HTTP/1.1\r\n" + H +
                         b"Content-Length: 5, 6\r\n\r\nhello!",
    "cl_plus": b"POST /test/echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello",
    "cl_minus": b"POST /test/echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n",
    "cl_hex": b"POST /test/echo HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello",
    "cl_trailing_junk": b"POST /test/echo HTTP/1.1\r\n" + H + b"Content-Length: 5x\r\n\r\nhello",
    "cl_empty": b"POST /test/echo HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n",
    "cl_space_inside": b"POST /test/echo HTTP/1.1\r\n" + H + b"Content-Length: 1 0\r\n\r\n",
    "chunk_size_zz": b"POST /test/echo HTTP/1.1\r\n" + H +
                     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk_size_empty": b"POST /test/echo HTTP/1.1\r\n" + H +
                        b"Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
    "chunk_size_negative": b"POST /test/echo HTTP/1.1\r\n" + H +
                           b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    "chunk_size_0x_prefix": b"POST /test/echo HTTP/1.1\r\n" + H +
                            b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    "chunk_data_no_crlf": b"POST /test/echo HTTP/1.1\r\n" + H +
                          b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    "te_chunked_twice": b"POST /test/echo HTTP/1.1\r\n" + H +
                        b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "obs_fold": b"GET /plaintext HTTP/1.1\r\n" + H + b"X-Foo: a\r\n  folded\r\n\r\n",
    "obs_fold_tab": b"GET /plaintext HTTP/1.1\r\n" + H + b"X-Foo: a\r\n\tfolded\r\n\r\n",
    "first_header_folded": b"GET /plaintext HTTP/1.1\r\n Host: x\r\n\r\n",
    "bare_cr_in_value": b"GET /plaintext HTTP/1.1\r\n" + H + b"X-Foo: a\rb\r\n\r\n",
    "bare_cr_line_end": b"GET /plaintext HTTP/1.1\r\n" + H + b"X-Foo: a\r\rX-Bar: b\r\n\r\n",
    "nul_in_value": b"GET /plaintext HTTP/1.1\r\n" + H + b"X-Foo: a\x00b\r\n\r\n",
    "nul_in_name": b"GET /plaintext HTTP/1.1\r\n" + H + b"X-F\x00o: ab\r\n\r\n",
    "ctl_in_value": b"GET /plaintext HTTP/1.1\r\n" + H + b"X-Foo: a\x01b\r\n\r\n",
    "del_in_value": b"GET /plaintext HTTP/1.1\r\n" + H + b"X-Foo: a\x7fb\r\n\r\n",
    "space_before_colon": b"GET /plaintext HTTP/1.1\r\n" + H + b"X-Foo : a\r\n\r\n",
    "space_before_colon_cl": b"POST /test/echo HTTP/1.1\r\n" + H +
                             b"Content-Length : 5\r\n\r\nhello",
    "tab_before_colon": b"GET /plaintext HTTP/1.1\r\n" + H + b"X-Foo\t: a\r\n\r\n",
    "no_colon": b"GET /plaintext HTTP/1.1\r\n" + H + b"X-Foo bar\r\n\r\n",
    "empty_name": b"GET /plaintext HTTP/1.1\r\n" + H + b": value\r\n\r\n",
    "bad_name_char": b"GET /plaintext HTTP/1.1\r\n" + H + b"X(Foo): a\r\n\r\n",
    "missing_host_11": b"GET /plaintext HTTP/1.1\r\nX-Foo: a\r\n\r\n",
    "two_hosts": b"GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad_host_value": b"GET /plaintext HTTP/1.1\r\nHost: a b\r\n\r\n",
    "method_bad_chars": b"G(T /plaintext HTTP/1.1\r\n" + H + b"\r\n",
    "method_with_slash": b"GE/T /plaintext HTTP/1.1\r\n" + H + b"\r\n",
    "method_nul": b"G\x00T /plaintext HTTP/1.1\r\n" + H + b"\r\n",
    "missing_target": b"GET HTTP/1.1\r\n" + H + b"\r\n",
    "target_not_slash": b"GET plaintext HTTP/1.1\r\n" + H + b"\r\n",
    "ctl_in_target": b"GET /plain\x01text HTTP/1.1\r\n" + H + b"\r\n",
    "space_in_target": b"GET /plain text HTTP/1.1\r\n" + H + b"\r\n",
    "bad_version_token": b"GET /plaintext HTTX/1.1\r\n" + H + b"\r\n",
    "lowercase_version": b"GET /plaintext http/1.1\r\n" + H + b"\r\n",
    "version_trailing_junk": b"GET /plaintext HTTP/1.1x\r\n" + H + b"\r\n",
    "leading_space_line": b" GET /plaintext HTTP/1.1\r\n" + H + b"\r\n",
    "binary_garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\xaa" * 40 + b"\r\n\r\n",
}

# Transfer codings other than chunked: 501 (not implemented, RFC 9112 6.1) or 400 are both
# defensible; either way the connection must close because the body cannot be delimited.
BAD_TE = {
    "te_gzip_only": b"POST /test/echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nxx",
    "te_unknown": b"POST /test/echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n",
    "te_not_chunked_last": b"POST /test/echo HTTP/1.1\r\n" + H +
                           b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te_gzip_chunked": b"POST /test/echo HTTP/1.1\r\n" + H +
                       b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
}


# Vectors whose request line is itself broken: the problem may lack "instance".
LINE_ERRORS = {"method_bad_chars", "method_with_slash", "method_nul", "missing_target",
               "target_not_slash", "ctl_in_target", "space_in_target", "bad_version_token",
               "lowercase_version", "version_trailing_junk", "leading_space_line",
               "binary_garbage"}


def _path_of(data):
    parts = data.split(b"\r\n", 1)[0].split(b" ")
    return parts[1].decode("latin-1") if len(parts) == 3 else None


def _check_rejected(server, data, statuses, close=True, line_error=False):
    with server.raw() as c:
        c.send(data + TAIL)
        r = c.read_response()
        assert r.status in statuses, f"expected {statuses}, got {r.status}: {r.body[:300]!r}"
        assert_problem(r, r.status, instance=None if line_error else _path_of(data),
                       instance_optional=line_error)
        if close:
            assert c.closed_by_peer(3.0), "connection left open after a framing error"
        return r


@pytest.mark.parametrize("name", sorted(BAD_400))
def test_malformed_400_and_close(server, name):
    _check_rejected(server, BAD_400[name], {400}, line_error=name in LINE_ERRORS)


@pytest.mark.parametrize("name", sorted(BAD_TE))
def test_unsupported_transfer_coding(server, name):
    _check_rejected(server, BAD_TE[name], {400, 501})


def test_content_length_overflow(server):
    data = (b"POST /test/echo HTTP/1.1\r\n" + H +
            b"Content-Length: 99999999999999999999999999\r\n\r\n")
    _check_rejected(server, data, {400, 413})


@pytest.mark.parametrize("line", [b"GET  /plaintext HTTP/1.1", b"GET /plaintext HTTP/1.1 ",
                                  b"GET /plaintext  HTTP/1.1"])
def test_extra_whitespace_in_request_line(server, line):
    """RFC 9112 3 allows parsing on whitespace boundaries, so 200 is acceptable; so is 400
    with close. Anything else (a 404 for a mangled target, a hang) is not."""
    with server.raw() as c:
        c.send(line + b"\r\n" + H + b"\r\n")
        r = c.read_response()
        if r.status == 200:
            assert r.body == b"Hello, World!"
        else:
            assert_problem(r, 400, instance_optional=True)
            assert c.closed_by_peer(3.0)


def test_chunk_size_overflow(server):
    data = (b"POST /test/echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
            b"ffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n")
    _check_rejected(server, data, {400, 413})


def test_unknown_method_501(server):
    with server.raw() as c:
        c.send(b"FOO /plaintext HTTP/1.1\r\n" + H + b"\r\n")
        r = c.read_response()
        assert_problem(r, 501, instance="/plaintext")


def test_lowercase_method_is_unknown(server):
    """Methods are case-sensitive (RFC 9110 9.1): "get" is not GET."""
    with server.raw() as c:
        c.send(b"get /plaintext HTTP/1.1\r\n" + H + b"\r\n")
        r = c.read_response()
        assert r.status in (501, 405), r
        assert_problem(r, r.status)


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/3.0"])
def test_unsupported_version_505(server, version):
    with server.raw() as c:
        c.send(b"GET /plaintext " + version + b"\r\n" + H + b"\r\n")
        r = c.read_response()
        assert_problem(r, 505, instance_optional=True)


def test_http09_version_rejected(server):
    with server.raw() as c:
        c.send(b"GET /plaintext HTTP/0.9\r\n" + H + b"\r\n")
        r = c.read_response()
        assert r.status in (400, 505), r
        assert_problem(r, r.status, instance_optional=True)


def test_smuggling_cl_te_desync(server):
    """The classic CL.TE attack: one response (400), then close; the hidden request never
    runs."""
    data = (b"POST /test/echo HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + TAIL)
    with server.raw() as c:
        c.send(data)
        r = c.read_response()
        assert r.status == 400
        assert c.closed_by_peer(3.0)


def test_smuggling_te_obfuscated(server):
    """Transfer-Encoding with odd spelling next to Content-Length is still refused."""
    for te in (b"Transfer-Encoding: Chunked", b"Transfer-Encoding:chunked",
               b"Transfer-Encoding:  chunked  "):
        data = (b"POST /test/echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n" + te +
                b"\r\n\r\n0\r\n\r\n")
        _check_rejected(server, data, {400})


def test_same_cl_repeated_is_not_smuggling(server):
    """Identical repeated Content-Length values may be accepted (RFC 9110 8.6) or rejected;
    what matters is that the body is framed by that value."""
    with server.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5"
               b"\r\n\r\nhello" + raw_request("GET", "/test/params/3/ok"))
        r = c.read_response()
        if r.status == 200:
            assert r.body == b"hello"
            assert c.read_response().json()["id"] == 3
        else:
            assert_problem(r, 400)
            assert c.closed_by_peer(3.0)


def test_bad_request_then_server_still_serves(server):
    pids = set(server.wait_workers(2))
    for data in list(BAD_400.values()) + list(BAD_TE.values()):
        with server.raw() as c:
            c.send(data)
            try:
                c.read_response()
            except Exception:  # noqa: BLE001 - only survival matters here
                pass
    assert server.get("/plaintext").text == "Hello, World!"
    assert set(server.worker_pids()) == pids, "a malformed request crashed a worker"


def test_error_responses_carry_request_id(server):
    with server.raw() as c:
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Foo : a\r\n\r\n")
        r = c.read_response()
        doc = assert_problem(r, 400)
        assert doc["request_id"] == r.headers["x-request-id"]
        assert r.headers["server"].startswith("nexus")
        assert "date" in r.headers


def test_http10_missing_host_is_fine(server):
    with server.raw() as c:
        c.send(b"GET /plaintext HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, World!"


def test_bare_lf_line_endings(server):
    """RFC 9112 2.2 lets a recipient accept a bare LF as a line terminator; a server may also
    reject it with 400. It must never treat it as part of a header value."""
    with server.raw() as c:
        c.send(b"GET /test/headers HTTP/1.1\nHost: x\nX-A: 1\n\n")
        r = c.read_response()
        if r.status == 200:
            doc = r.json()
            assert doc["x-a"] == "1" and doc["host"] == "x"
        else:
            assert_problem(r, 400, instance_optional=True)
