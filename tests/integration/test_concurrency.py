"""Coroutines park, not the worker: many concurrent sleeping requests on one worker."""

import selectors
import socket
import threading
import time

import pytest

from conftest import RawConn, raw_request


@pytest.fixture(scope="module")
def one(spawn_module):
    return spawn_module(workers=1, name="one")


def _parse_one(buf):
    """(status, body) from a complete Content-Length response in buf, or None."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    if len(rest) < length:
        return None
    return status, rest[:length]


def _concurrent(srv, paths, timeout):
    """Sends each path on its own connection at once; returns ([(status, body)], wall)."""
    sel = selectors.DefaultSelector()
    socks = []
    for i, p in enumerate(paths):
        s = socket.create_connection((srv.host, srv.port), timeout=5)
        socks.append(s)
    t0 = time.monotonic()
    for i, (s, p) in enumerate(zip(socks, paths)):
        s.sendall(raw_request("GET", p))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    bufs = [b""] * len(paths)
    done = [None] * len(paths)
    pending = len(paths)
    deadline = t0 + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            i = key.data
            try:
                data = key.fileobj.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if not data:
                done[i] = ("closed", bufs[i][:200])
                sel.unregister(key.fileobj)
                pending -= 1
                continue
            bufs[i] += data
            r = _parse_one(bufs[i])
            if r:
                done[i] = r
                sel.unregister(key.fileobj)
                pending -= 1
    wall = time.monotonic() - t0
    for s in socks:
        s.close()
    return done, wall


def test_200_concurrent_sleeps_one_worker(one):
    n = 200
    done, wall = _concurrent(one, ["/test/sleep?ms=200"] * n, timeout=30)
    bad = [(i, d) for i, d in enumerate(done) if d != (200, b"slept 200")]
    assert not bad, f"{len(bad)} of {n} failed, e.g. {bad[:5]}"
    assert wall < 5, f"{n} x 200 ms sleeps took {wall:.2f}s on one worker: handlers block"


def test_sleep_does_not_block_other_requests(one):
    with RawConn(one.host, one.port, timeout=10) as slow:
        slow.send(raw_request("GET", "/test/sleep?ms=2000"))
        time.sleep(0.1)
        t0 = time.monotonic()
        for _ in range(5):
            assert one.get("/plaintext").text == "Hello, World!"
        fast = time.monotonic() - t0
        assert fast < 1.0, f"5 fast requests took {fast:.2f}s behind a sleeping one"
        assert slow.read_response().body == b"slept 2000"


def test_many_keepalive_connections(one):
    """300 open connections, each used twice, on one worker."""
    conns = [RawConn(one.host, one.port, timeout=10) for _ in range(300)]
    try:
        for rnd in range(2):
            for i, c in enumerate(conns):
                c.send(raw_request("GET", f"/test/params/{i}/r{rnd}"))
            for i, c in enumerate(conns):
                assert c.read_response().json()["id"] == i
    finally:
        for c in conns:
            c.close()


def test_threads_with_requests(one):
    """Real clients from many threads: every request succeeds."""
    errors = []
    ok = [0]
    lock = threading.Lock()

    def work(k):
        with one.session() as s:
            for j in range(20):
                try:
                    r = s.get(one.url(f"/test/params/{k * 100 + j}/t"), timeout=10)
                    assert r.json()["id"] == k * 100 + j
                    with lock:
                        ok[0] += 1
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(k,)) for k in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[:5]
    assert ok[0] == 16 * 20
