"""HTTP/1.1 semantics: keep-alive, HTTP/1.0, Connection: close, pipelining, request bodies
(Content-Length and chunked), Expect: 100-continue."""

import http.client
import socket
import struct
import subprocess
import time

import pytest

from conftest import RawConn, assert_common_headers, assert_problem, raw_request


@pytest.fixture(scope="module")
def small(spawn_module):
    """1 worker with a 1 KiB body limit, for Expect + 413 tests."""
    return spawn_module(workers=1, args=["--client-max-body-size", "1k"], name="small")


# ---- persistence ------------------------------------------------------------------------

def test_keepalive_default(server):
    with server.raw() as c:
        for i in range(5):
            c.send(raw_request("GET", f"/test/params/{i}/k"))
            r = c.read_response()
            assert r.status == 200 and r.json()["id"] == i
            assert r.headers.get("connection", "").lower() != "close"
        assert c.closed_by_peer(0.3) is False, "server closed a keep-alive connection"


def test_keepalive_survives_idle_below_timeout(server):
    """Default keep-alive timeout is 5 s: a 1.5 s pause must not lose the connection."""
    with server.raw() as c:
        c.send(raw_request("GET", "/plaintext"))
        assert c.read_response().status == 200
        time.sleep(1.5)
        c.send(raw_request("GET", "/plaintext"))
        assert c.read_response().body == b"Hello, World!"


def test_http_client_reuses_connection(server):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    conn.request("GET", "/plaintext")
    r = conn.getresponse()
    r.read()
    sock1 = conn.sock
    assert sock1 is not None and not r.will_close
    conn.request("GET", "/json")
    r = conn.getresponse()
    r.read()
    assert conn.sock is sock1
    conn.close()


def test_http10_closes_by_default(server):
    with server.raw() as c:
        c.send(raw_request("GET", "/plaintext", version="HTTP/1.0", host=None))
        r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, World!"
        assert r.headers.get("connection", "").lower() != "keep-alive"
        assert c.closed_by_peer(2.0), "HTTP/1.0 without keep-alive must be closed"


def test_http10_keepalive(server):
    with server.raw() as c:
        req = raw_request("GET", "/plaintext", version="HTTP/1.0",
                          headers=[("Connection", "keep-alive")])
        c.send(req)
        r = c.read_response()
        assert r.status == 200
        assert "content-length" in r.headers, "1.0 keep-alive needs a delimited body"
        assert r.headers.get("connection", "").lower() == "keep-alive", \
            "a 1.0 client must be told the connection persists (RFC 9112 C.2.2)"
        c.send(req)
        assert c.read_response().body == b"Hello, World!"


def test_connection_close(server):
    with server.raw() as c:
        c.send(raw_request("GET", "/plaintext", headers=[("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200
        assert r.headers.get("connection", "").lower() == "close"
        assert c.closed_by_peer(2.0)


def test_connection_close_in_pipeline_stops_processing(server):
    """Requests after one with Connection: close are not answered (RFC 9112 9.6)."""
    with server.raw() as c:
        c.send(raw_request("GET", "/test/params/1/a")
               + raw_request("GET", "/test/params/2/b", headers=[("Connection", "close")])
               + raw_request("GET", "/test/params/3/c"))
        assert c.read_response().json()["id"] == 1
        r = c.read_response()
        assert r.json()["id"] == 2
        assert r.headers.get("connection", "").lower() == "close"
        assert c.closed_by_peer(2.0)


# ---- pipelining ------------------------------------------------------------------------

def test_pipelining_order(server):
    reqs = []
    expect = []
    for i in range(24):
        if i % 3 == 0:
            reqs.append(raw_request("GET", f"/test/params/{i}/n{i}"))
            expect.append(("params", i))
        elif i % 3 == 1:
            reqs.append(raw_request("GET", f"/test/files/f{i}"))
            expect.append(("files", i))
        else:
            reqs.append(raw_request("HEAD", "/plaintext"))
            expect.append(("head", i))
    with server.raw() as c:
        c.send(b"".join(reqs))
        for kind, i in expect:
            r = c.read_response(method="HEAD" if kind == "head" else "GET")
            assert r.status == 200, (kind, i, r)
            assert_common_headers(r, head=(kind == "head"))
            if kind == "params":
                assert r.json() == {"id": i, "id_raw": str(i), "name": f"n{i}"}
            elif kind == "files":
                assert r.json() == {"rest": f"f{i}"}
            else:
                assert r.body == b"" and r.headers["content-length"] == "13"
        assert c.recv_available(0.3) == b"", "extra bytes after the pipelined responses"


def test_pipelining_slow_first_keeps_order(server):
    """A slow first request must not let the fast ones behind it overtake."""
    with server.raw() as c:
        c.send(raw_request("GET", "/test/sleep?ms=300")
               + b"".join(raw_request("GET", f"/test/params/{i}/x") for i in range(16)))
        t0 = time.monotonic()
        r = c.read_response()
        assert r.body == b"slept 300"
        assert time.monotonic() - t0 >= 0.25
        for i in range(16):
            assert c.read_response().json()["id"] == i


def test_pipelining_with_bodies(server):
    reqs = b""
    for i in range(16):
        body = (f"body-{i}-" + "x" * i).encode()
        reqs += raw_request("POST", "/test/echo", headers=[("Content-Type", "text/x-test")],
                            body=body)
    with server.raw() as c:
        c.send(reqs)
        for i in range(16):
            r = c.read_response()
            assert r.status == 200
            assert r.body == (f"body-{i}-" + "x" * i).encode()


def test_pipelining_split_across_writes(server):
    """Requests cut at arbitrary byte boundaries still parse and answer in order."""
    data = b"".join(raw_request("GET", f"/test/params/{i}/s") for i in range(16))
    with server.raw() as c:
        for off in range(0, len(data), 7):
            c.send(data[off:off + 7])
        for i in range(16):
            assert c.read_response().json()["id"] == i


def test_pipelining_many(server):
    n = 200
    with server.raw(timeout=10) as c:
        c.send(b"".join(raw_request("GET", f"/test/params/{i}/m") for i in range(n)))
        for i in range(n):
            assert c.read_response().json()["id"] == i


# ---- request bodies --------------------------------------------------------------------

def test_content_length_body(server):
    r = server.request("POST", "/test/echo", data=b"hello body",
                       headers={"Content-Type": "text/x-mine"})
    assert r.status_code == 200
    assert r.content == b"hello body"
    assert r.headers["Content-Type"].startswith("text/x-mine")
    assert r.headers["X-Body-Length"] == "10"
    r = server.request("PUT", "/test/echo", data=b"")
    assert r.status_code == 200 and r.headers["X-Body-Length"] == "0"


def test_large_content_length_body(server):
    data = bytes(range(256)) * 4096 * 2  # 2 MiB
    r = server.request("POST", "/test/echo", data=data)
    assert r.status_code == 200
    assert r.headers["X-Body-Length"] == str(len(data))
    assert r.content == data


def test_binary_body_with_nul(server):
    data = b"\x00\r\n\r\nGET / HTTP/1.1\r\n\x00\xff"
    r = server.request("POST", "/test/echo", data=data)
    assert r.content == data


def test_chunked_body(server):
    with server.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               b"5\r\nHello\r\n2\r\n, \r\n6\r\nWorld!\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == b"Hello, World!"
        assert r.headers["x-body-length"] == "13"
        # the connection stays usable after a chunked body
        c.send(raw_request("GET", "/plaintext"))
        assert c.read_response().body == b"Hello, World!"


def test_chunked_body_extensions_and_trailers(server):
    with server.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4;name=value\r\nWiki\r\n"
               b"5 ; quoted=\"a;b\"\r\npedia\r\n"
               b"B;x\r\n in\r\nchunks\r\n"
               b"0;last=1\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
               + raw_request("GET", "/test/params/7/after"))
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == b"Wikipedia in\r\nchunks"
        r2 = c.read_response()
        assert r2.json()["id"] == 7, "bytes after the trailers must start the next request"


def test_chunked_uppercase_hex_and_leading_zeros(server):
    with server.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0000A\r\n0123456789\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.body == b"0123456789abcdefghijklmnopqrstuvwxyz"


def test_chunked_large_body_via_requests(server):
    parts = [bytes([65 + i % 26]) * 10000 for i in range(100)]

    def gen():
        yield from parts

    r = server.request("POST", "/test/echo", data=gen())
    assert r.status_code == 200
    assert r.content == b"".join(parts)


def test_chunked_body_trickled(server):
    """A chunked body arriving a few bytes at a time."""
    data = (b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
    with server.raw() as c:
        for i in range(0, len(data), 3):
            c.send(data[i:i + 3])
            time.sleep(0.005)
        assert c.read_response().body == b"abcdef"


def test_curl_chunked_upload(server, tmp_path):
    p = tmp_path / "up.bin"
    data = b"curl-chunked-" * 5000
    p.write_bytes(data)
    out = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-H", "Transfer-Encoding: chunked", "-H",
         "Content-Type: application/x-up", "--data-binary", f"@{p}", server.url("/test/echo")],
        capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout == data


# ---- Expect: 100-continue --------------------------------------------------------------

def test_expect_100_continue(server):
    with server.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\n")
        interim = c.read_response(allow_interim=True)
        assert interim.status == 100, interim
        assert interim.version == "HTTP/1.1"
        c.send(b"hello")
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello"


def test_expect_100_continue_chunked(server):
    with server.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Expect: 100-continue\r\n\r\n")
        assert c.read_response(allow_interim=True).status == 100
        c.send(b"3\r\nabc\r\n0\r\n\r\n")
        assert c.read_response().body == b"abc"


def test_expect_100_continue_curl(server, tmp_path):
    p = tmp_path / "big.bin"
    p.write_bytes(b"z" * 200000)
    out = subprocess.run(
        ["curl", "-sS", "-v", "--noproxy", "*", "-H", "Expect: 100-continue", "--data-binary",
         f"@{p}", server.url("/test/echo")], capture_output=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert b"HTTP/1.1 100 Continue" in out.stderr
    assert out.stdout == b"z" * 200000


def test_expect_too_large_gets_413_without_continue(small):
    with small.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response(allow_interim=True)
        assert r.status == 413, f"expected 413 first, got {r.status}"
        assert_problem(r, 413, instance="/test/echo")


def test_body_within_limit_on_small(small):
    r = small.request("POST", "/test/echo", data=b"k" * 1024)
    assert r.status_code == 200 and len(r.content) == 1024


def test_get_with_body_is_consumed(server):
    """A GET with a Content-Length body: the body must be skipped, not parsed as a request."""
    with server.raw() as c:
        body = b"GET /test/params/666/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        c.send(raw_request("GET", "/test/params/1/a", body=body)
               + raw_request("GET", "/test/params/2/b"))
        assert c.read_response().json()["id"] == 1
        assert c.read_response().json()["id"] == 2
        assert c.recv_available(0.3) == b""


def test_server_survives_client_abort(server):
    """A client that sends half a request and vanishes harms nobody else."""
    for _ in range(20):
        s = socket.create_connection((server.host, server.port))
        s.sendall(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        s.close()
    s = socket.create_connection((server.host, server.port))
    s.sendall(b"GET /test/sleep?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST while the handler sleeps
    time.sleep(0.3)
    assert server.get("/plaintext").text == "Hello, World!"


def test_absolute_form_target(server):
    """RFC 9112 3.2.2: a server MUST accept the absolute-form; the path is routed."""
    with RawConn(server.host, server.port) as c:
        c.send(b"GET http://example.com/plaintext HTTP/1.1\r\nHost: example.com\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"Hello, World!"


# ---- framing after errors and under backpressure ----------------------------------------

def _next_is_200_or_closed(c, expect_body):
    """After an error response the server may close; if it keeps the connection, the next
    pipelined request must be answered correctly (the error's body was not parsed as one)."""
    try:
        r = c.read_response()
    except Exception as e:  # noqa: BLE001 - closing is allowed
        assert "closed" in repr(e), repr(e)
        return
    assert r.status == 200 and r.body == expect_body, r


def test_body_of_404_is_skipped(server):
    with server.raw() as c:
        body = b"GET /test/params/666/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        c.send(raw_request("POST", "/nope", body=body) + raw_request("GET", "/plaintext"))
        r = c.read_response()
        assert_problem(r, 404, instance="/nope")
        _next_is_200_or_closed(c, b"Hello, World!")


def test_body_of_405_is_skipped(server):
    with server.raw() as c:
        body = b"GET /test/params/666/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        c.send(raw_request("POST", "/plaintext", body=body) + raw_request("GET", "/plaintext"))
        r = c.read_response()
        assert_problem(r, 405, instance="/plaintext")
        _next_is_200_or_closed(c, b"Hello, World!")


def test_chunked_body_of_404_is_skipped(server):
    with server.raw() as c:
        c.send(b"POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n" + raw_request("GET", "/plaintext"))
        assert_problem(c.read_response(), 404)
        _next_is_200_or_closed(c, b"Hello, World!")


def test_pipeline_stops_at_bad_request(server):
    """Good requests before a malformed one are answered in order, then 400, then close."""
    with server.raw() as c:
        c.send(b"".join(raw_request("GET", f"/test/params/{i}/p") for i in range(3))
               + b"GET /plaintext HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n"
               + raw_request("GET", "/test/params/9/after"))
        for i in range(3):
            assert c.read_response().json()["id"] == i
        assert c.read_response().status == 400
        assert c.closed_by_peer(3.0)


def test_pipelined_large_responses_slow_reader(server):
    """16 pipelined 1 MB responses to a client that reads slowly: the server must cope
    with partial writes and still deliver every byte in order."""
    n = 1_000_003
    expected = (b"0123456789" * (n // 10 + 1))[:n]
    with server.raw(timeout=20) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        c.send(b"".join(raw_request("GET", f"/test/big?n={n}") + raw_request(
            "GET", f"/test/params/{i}/big") for i in range(8)))
        time.sleep(0.5)  # let the server hit a full socket buffer
        for i in range(8):
            r = c.read_response()
            assert r.status == 200 and len(r.body) == n and r.body == expected, i
            assert c.read_response().json()["id"] == i


def test_many_request_headers(server):
    hdrs = [(f"X-Many-{i}", f"v{i}") for i in range(60)]
    with server.raw() as c:
        c.send(raw_request("GET", "/test/headers", headers=hdrs))
        r = c.read_response()
        assert r.status == 200
        doc = r.json()
        assert all(doc[f"x-many-{i}"] == f"v{i}" for i in range(60))


def test_date_header_advances(server):
    d1 = server.get("/plaintext").headers["Date"]
    time.sleep(1.1)
    d2 = server.get("/plaintext").headers["Date"]
    assert d1 != d2, "Date header is not refreshed"
