"""Request bodies larger than server.client_body_buffer_size are received into an unlinked
temp file in server.client_body_temp_path and handed to the handler mapped from it.

The tests look at the worker's open files (/proc/PID/fd) while an upload is paused half-way:
a spooled body shows as "<folder>/#<inode> (deleted)" (O_TMPFILE) or "<folder>/nexus-body-...
(deleted)". /test/echo (testkit) answers the body it was given, so every byte is compared.
"""

import hashlib
import os
import socket
import subprocess
import time

import requests

from conftest import (EX_CONFIG, NEXUS_BIN, PLUGINS_DIR, assert_problem, free_port, raw_request,
                      wait_for)

BUFFER = 64 * 1024


def server(spawn, tmp_path, **env):
    folder = tmp_path / "bodies"
    folder.mkdir(exist_ok=True)
    e = {"NEXUS_SERVER_CLIENT_BODY_BUFFER_SIZE": str(BUFFER),
         "NEXUS_SERVER_CLIENT_BODY_TEMP_PATH": str(folder)}
    e.update(env)
    return spawn(workers=1, env=e), str(folder)


def spool_files(srv, folder):
    """The worker's open files that are deleted files in folder."""
    found = []
    for pid in srv.worker_pids():
        fd_dir = f"/proc/{pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue  # closed meanwhile
            if target.startswith(folder + "/") and target.endswith("(deleted)"):
                found.append(target)
    return found


def connect(srv):
    sock = socket.create_connection((srv.host, srv.port), timeout=20)
    return sock


def read_response(sock):
    """(status, headers dict, body) of one response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data[:200]!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the body"
        rest += chunk
    return status, headers, rest[:length], rest[length:]


def chunked(data, size=50000):
    out = b""
    for i in range(0, len(data), size):
        part = data[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def test_a_large_body_is_spooled_and_reaches_the_handler_whole(spawn, tmp_path):
    srv, folder = server(spawn, tmp_path)
    body = os.urandom(3 * 1024 * 1024)
    with connect(srv) as sock:
        sock.sendall(raw_request("POST", "/test/echo", [("Content-Length", str(len(body)))]))
        sock.sendall(body[:1024 * 1024])
        assert wait_for(lambda: len(spool_files(srv, folder)) == 1, 5), spool_files(srv, folder)
        sock.sendall(body[1024 * 1024:])
        status, _, got, _ = read_response(sock)
    assert status == 200
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    # The file goes with the request: nothing is left open, nothing left in the folder.
    assert wait_for(lambda: not spool_files(srv, folder), 5), spool_files(srv, folder)
    assert os.listdir(folder) == []


def test_a_chunked_body_is_spooled_once_it_outgrows_the_buffer(spawn, tmp_path):
    srv, folder = server(spawn, tmp_path)
    body = os.urandom(2 * 1024 * 1024 + 123)
    wire = chunked(body)
    with connect(srv) as sock:
        sock.sendall(raw_request("POST", "/test/echo", [("Transfer-Encoding", "chunked")]))
        sock.sendall(wire[:BUFFER // 2])
        time.sleep(0.2)
        assert spool_files(srv, folder) == []  # still under the buffer: memory
        sock.sendall(wire[BUFFER // 2:len(wire) // 2])
        assert wait_for(lambda: len(spool_files(srv, folder)) == 1, 5)
        sock.sendall(wire[len(wire) // 2:])
        status, _, got, _ = read_response(sock)
    assert status == 200 and got == body


def test_a_body_within_the_buffer_stays_in_memory(spawn, tmp_path):
    srv, folder = server(spawn, tmp_path)
    body = os.urandom(BUFFER)
    with connect(srv) as sock:
        sock.sendall(raw_request("POST", "/test/echo", [("Content-Length", str(len(body)))]))
        sock.sendall(body[:BUFFER // 2])
        time.sleep(0.2)
        assert spool_files(srv, folder) == []
        sock.sendall(body[BUFFER // 2:])
        status, _, got, _ = read_response(sock)
    assert status == 200 and got == body


def test_pipelined_requests_after_a_spooled_body(spawn, tmp_path):
    srv, folder = server(spawn, tmp_path)
    big = os.urandom(500 * 1024)
    wire = (raw_request("POST", "/test/echo", [("Content-Length", str(len(big)))]) + big +
            raw_request("POST", "/test/echo", body=b"second") +
            raw_request("POST", "/test/echo", [("Transfer-Encoding", "chunked")]) + chunked(big))
    with connect(srv) as sock:
        sock.sendall(wire)
        answers, rest = [], b""
        for _ in range(3):
            status, _, got, rest = read_response_with(sock, rest)
            answers.append((status, got))
    assert answers == [(200, big), (200, b"second"), (200, big)]


def read_response_with(sock, pending):
    """read_response for a connection whose previous response left bytes in pending."""
    class Buffered:
        def __init__(self, first):
            self.first = first

        def recv(self, n):
            if self.first:
                out, self.first = self.first, b""
                return out
            return sock.recv(n)
    return read_response(Buffered(pending))


def test_chunked_body_over_the_limit_is_413_while_spooling(spawn, tmp_path):
    srv, folder = server(spawn, tmp_path, NEXUS_SERVER_CLIENT_MAX_BODY_SIZE="1M")
    body = os.urandom(2 * 1024 * 1024)
    with connect(srv) as sock:
        sock.sendall(raw_request("POST", "/test/echo", [("Transfer-Encoding", "chunked")]))
        try:
            sock.sendall(chunked(body))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all
        status, headers, got, _ = read_response(sock)
    assert status == 413
    assert headers["content-type"].startswith("application/problem+json")
    assert wait_for(lambda: not spool_files(srv, folder), 5)


def test_a_temp_folder_gone_while_serving_is_503_and_small_bodies_still_work(spawn, tmp_path):
    srv, folder = server(spawn, tmp_path)
    os.rmdir(folder)
    r = requests.post(srv.url("/test/echo"), data=os.urandom(BUFFER + 1), timeout=10)
    assert_problem(r, 503, "/test/echo", detail_contains="request body")
    assert "server.client_body_temp_path" in srv.log() and folder in srv.log()
    small = requests.post(srv.url("/test/echo"), data=b"x" * 100, timeout=10)
    assert small.status_code == 200 and small.content == b"x" * 100
    assert srv.get("/health").status_code == 200


def test_a_configured_temp_folder_is_created_at_start(spawn, tmp_path):
    folder = tmp_path / "var" / "bodies"
    srv = spawn(workers=1, env={"NEXUS_SERVER_CLIENT_BODY_TEMP_PATH": str(folder)})
    assert folder.is_dir() and (folder.stat().st_mode & 0o777) == 0o700
    body = os.urandom(2 * 1024 * 1024)
    r = requests.post(srv.url("/test/echo"), data=body, timeout=20)
    assert r.status_code == 200 and r.content == body


def test_a_temp_folder_that_cannot_be_made_stops_start_up(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    env["NEXUS_SERVER_CLIENT_BODY_TEMP_PATH"] = str(blocker / "bodies")
    out = subprocess.run([NEXUS_BIN, "serve", "--port", str(free_port()), "--workers", "1",
                          "--plugins-dir", PLUGINS_DIR, "--access-log", "off"],
                         capture_output=True, text=True, timeout=10, env=env, cwd=str(tmp_path))
    assert out.returncode == EX_CONFIG, out.stderr
    assert "server.client_body_temp_path" in out.stderr and str(blocker) in out.stderr


def test_many_slow_uploads_at_once_each_get_their_own_file(spawn, tmp_path):
    srv, folder = server(spawn, tmp_path)
    n, size = 40, 400 * 1024
    bodies = [os.urandom(size) for _ in range(n)]
    socks = [connect(srv) for _ in range(n)]
    try:
        for s, b in zip(socks, bodies):
            s.sendall(raw_request("POST", "/test/echo", [("Content-Length", str(size))]))
            s.sendall(b[:size // 2])
        assert wait_for(lambda: len(spool_files(srv, folder)) == n, 10), \
            len(spool_files(srv, folder))
        for s, b in zip(socks, bodies):
            s.sendall(b[size // 2:])
        for s, b in zip(socks, bodies):
            status, _, got, _ = read_response(s)
            assert status == 200 and got == b
    finally:
        for s in socks:
            s.close()
    assert wait_for(lambda: not spool_files(srv, folder), 5)
