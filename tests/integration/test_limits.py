"""Limits and timeouts: 413, 414, 431, 408 (slowloris, stalled body), keep-alive idle close,
handler timeout, worker_connections."""

import select
import socket
import threading
import time

import pytest

from conftest import assert_problem, raw_request


@pytest.fixture(scope="module")
def limited(spawn_module):
    # Three spellings of a duration: "1s", "1000ms" and a bare number of seconds.
    return spawn_module(workers=1, name="limited", args=[
        "--client-max-body-size", "1k",
        "--header-timeout", "1s",
        "--body-timeout", "1000ms",
        "--keepalive-timeout", "1",
        "--handler-timeout", "1s",
    ])


# ---- body size -------------------------------------------------------------------------

def test_body_at_limit_accepted(limited):
    r = limited.request("POST", "/test/echo", data=b"a" * 1024)
    assert r.status_code == 200
    assert r.headers["X-Body-Length"] == "1024"


def test_body_over_limit_content_length_413(limited):
    with limited.raw() as c:
        c.send(raw_request("POST", "/test/echo", body=b"a" * 1025))
        r = c.read_response()
        assert_problem(r, 413, instance="/test/echo")


def test_body_over_limit_announced_only_413(limited):
    """A huge Content-Length is refused from the head alone, without reading the body."""
    with limited.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        t0 = time.monotonic()
        r = c.read_response()
        assert_problem(r, 413, instance="/test/echo")
        assert time.monotonic() - t0 < 0.9, "413 must not wait for the body timeout"


def test_chunked_body_over_limit_413(limited):
    with limited.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(3):
                c.send(b"1f4\r\n" + b"b" * 500 + b"\r\n")
            c.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close as soon as the limit is crossed
        r = c.read_response()
        assert_problem(r, 413, instance="/test/echo")


def test_chunked_body_at_limit_accepted(limited):
    with limited.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"200\r\n" + b"c" * 512 + b"\r\n" + b"200\r\n" + b"d" * 512 + b"\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and len(r.body) == 1024


def test_default_body_limit_is_100m(server):
    """Default client_max_body_size 100M: judged from Content-Length + Expect, no upload."""
    with server.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 104857601\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response(allow_interim=True)
        assert_problem(r, 413, instance="/test/echo")
    with server.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response(allow_interim=True)
        assert r.status == 100, "exactly 100M is within the limit"


# ---- request line and header size ------------------------------------------------------

def test_request_line_too_long_414(server):
    with server.raw() as c:
        c.send(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert_problem(r, 414, instance_optional=True)


def test_request_line_just_under_limit(server):
    path = "/" + "a" * 8100  # request line 8114 bytes < 8192
    with server.raw() as c:
        c.send(raw_request("GET", path))
        r = c.read_response()
        assert_problem(r, 404, instance=path)


def test_long_query_string_414(server):
    with server.raw() as c:
        c.send(b"GET /test/query?name=" + b"q" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert_problem(r, 414, instance_optional=True)


def test_header_field_too_large_431(server):
    with server.raw() as c:
        c.send(raw_request("GET", "/plaintext", headers=[("X-Big", "v" * 9000)]))
        r = c.read_response()
        assert_problem(r, 431, instance="/plaintext")


def test_header_field_under_limit(server):
    with server.raw() as c:
        c.send(raw_request("GET", "/test/headers", headers=[("X-Big", "v" * 8000)]))
        r = c.read_response()
        assert r.status == 200
        assert r.json()["x-big"] == "v" * 8000


def test_head_total_too_large_431(server):
    hdrs = [(f"X-H{i}", "w" * 7000) for i in range(5)]  # 35 000 bytes > 32 768
    with server.raw() as c:
        c.send(raw_request("GET", "/plaintext", headers=hdrs))
        r = c.read_response()
        assert_problem(r, 431, instance="/plaintext")


def test_head_total_under_limit(server):
    hdrs = [(f"X-H{i}", "w" * 7000) for i in range(4)]  # ~28 000 bytes < 32 768
    with server.raw() as c:
        c.send(raw_request("GET", "/test/headers", headers=hdrs))
        r = c.read_response()
        assert r.status == 200
        assert r.json()["x-h3"] == "w" * 7000


def test_endless_header_stream_431(server):
    """A head that never ends is cut at the limit, not buffered forever."""
    with server.raw() as c:
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        try:
            while sent < 200000:
                c.send(b"X-Filler: " + b"f" * 90 + b"\r\n")
                sent += 102
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response()
        assert_problem(r, 431, instance="/plaintext")


# ---- timeouts --------------------------------------------------------------------------

def _wait_readable(sock, timeout):
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)


def test_slowloris_header_timeout_408(limited):
    """Bytes keep trickling in, but the head is not complete within --header-timeout 1s."""
    with limited.raw() as c:
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        drip = b"X-Slow: " + b"s" * 100
        i = 0
        while time.monotonic() - t0 < 6:
            if _wait_readable(c.sock, 0.2):
                break
            try:
                c.send(drip[i % len(drip):i % len(drip) + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            i += 1
        elapsed = time.monotonic() - t0
        r = c.read_response()
        assert_problem(r, 408, instance_optional=True)
        assert 0.8 <= elapsed <= 3.0, f"408 after {elapsed:.2f}s with header timeout 1s"
        assert c.closed_by_peer(2.0)


def test_partial_head_stalled_408(limited):
    with limited.raw() as c:
        c.send(b"GET /plaintext HTTP/1.1\r\nHo")
        t0 = time.monotonic()
        assert _wait_readable(c.sock, 5), "no answer to a stalled head"
        elapsed = time.monotonic() - t0
        r = c.read_response()
        assert_problem(r, 408, instance_optional=True)
        assert 0.8 <= elapsed <= 3.0, elapsed
        assert c.closed_by_peer(2.0)


def test_stalled_body_408(limited):
    with limited.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        t0 = time.monotonic()
        assert _wait_readable(c.sock, 5), "no answer to a stalled body"
        elapsed = time.monotonic() - t0
        r = c.read_response()
        assert_problem(r, 408, instance="/test/echo")
        assert 0.8 <= elapsed <= 3.0, elapsed
        assert c.closed_by_peer(2.0)


def test_stalled_chunked_body_408(limited):
    with limited.raw() as c:
        c.send(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"10\r\nabc")
        t0 = time.monotonic()
        assert _wait_readable(c.sock, 5)
        elapsed = time.monotonic() - t0
        r = c.read_response()
        assert_problem(r, 408, instance="/test/echo")
        assert 0.8 <= elapsed <= 3.0, elapsed


def test_keepalive_idle_closed(limited):
    with limited.raw() as c:
        c.send(raw_request("GET", "/plaintext"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(5.0), "idle keep-alive connection never closed"
        elapsed = time.monotonic() - t0
        assert 0.7 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s with keepalive timeout 1s"


def test_idle_fresh_connection_closed(limited):
    """A connection that never sends a byte does not hold a slot forever. (Closing silently
    or with a 408 are both acceptable.)"""
    s = socket.create_connection((limited.host, limited.port))
    try:
        assert _wait_readable(s, 5), "idle fresh connection never closed"
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
    finally:
        s.close()


def test_handler_timeout(limited):
    """--handler-timeout 1s cuts a 5 s handler with a 5xx problem (503 or 504)."""
    t0 = time.monotonic()
    with limited.raw(timeout=10) as c:
        c.send(raw_request("GET", "/test/sleep?ms=5000"))
        r = c.read_response()
    elapsed = time.monotonic() - t0
    assert r.status in (503, 504), r
    assert_problem(r, r.status, instance="/test/sleep")
    assert 0.8 <= elapsed <= 3.0, f"handler cut after {elapsed:.2f}s"
    assert limited.get("/plaintext").status_code == 200


def test_handler_within_timeout_ok(limited):
    r = limited.get("/test/sleep?ms=300")
    assert r.status_code == 200 and r.text == "slept 300"


# ---- worker_connections ----------------------------------------------------------------

def test_worker_connections_cap(spawn):
    """With --worker-connections 4 and 4 busy connections, a 5th request is not served
    concurrently: it is refused/closed, answered 503, or served only after a slot frees."""
    srv = spawn(workers=1, args=["--worker-connections", "4"])
    busy = []
    results = []

    def hold():
        with srv.raw(timeout=10) as c:
            c.send(raw_request("GET", "/test/sleep?ms=1500"))
            results.append(c.read_response().status)

    for _ in range(4):
        t = threading.Thread(target=hold)
        t.start()
        busy.append(t)
    time.sleep(0.3)  # the four are in their handlers now
    t0 = time.monotonic()
    outcome = None
    try:
        with srv.raw(timeout=6) as c:
            c.send(raw_request("GET", "/plaintext"))
            r = c.read_response()
            outcome = r.status
    except (OSError, Exception) as e:  # noqa: BLE001 - refused, reset or closed are fine
        outcome = repr(e)
    elapsed = time.monotonic() - t0
    for t in busy:
        t.join(10)
    assert results == [200] * 4, results
    if outcome == 200:
        assert elapsed >= 1.0, f"5th connection served after {elapsed:.2f}s: cap not applied"
    elif isinstance(outcome, int):
        assert outcome == 503, outcome
    # and the server recovers
    assert srv.get("/plaintext").status_code == 200


def test_413_then_connection_not_desynchronised(limited):
    """After a 413 the unread body must never be parsed as the next request."""
    body = (b"GET /test/params/666/smuggled HTTP/1.1\r\nHost: x\r\n\r\n" * 40)[:1500]
    with limited.raw() as c:
        c.send(raw_request("POST", "/test/echo", body=body) + raw_request("GET", "/plaintext"))
        assert_problem(c.read_response(), 413, instance="/test/echo")
        try:
            r = c.read_response()
        except Exception as e:  # noqa: BLE001 - closing after a 413 is fine
            assert "closed" in repr(e), repr(e)
            return
        assert r.status == 200 and r.body == b"Hello, World!", r
