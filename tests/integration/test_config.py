"""`nexus serve` flags and NEXUS_APP_* variables: precedence, worker count, operator errors."""

import os
import socket
import subprocess
import tempfile
import time

from conftest import NEXUS_BIN, PLUGINS_DIR, free_port, wait_for


def test_env_host_port_workers(spawn):
    port = free_port()
    srv = spawn(flags=False, port=port, env={
        "NEXUS_APP_HOST": "127.0.0.1", "NEXUS_APP_PORT": str(port), "NEXUS_APP_WORKERS": "3"})
    assert srv.get("/health").json() == {"status": "ok"}
    srv.wait_workers(3)


def test_flags_beat_env(spawn):
    port, other = free_port(), free_port()
    srv = spawn(workers=1, port=port, env={"NEXUS_APP_PORT": str(other),
                                           "NEXUS_APP_WORKERS": "3"})
    assert srv.get("/plaintext").text == "Hello, World!"
    srv.wait_workers(1)
    time.sleep(0.3)
    assert len(srv.worker_pids()) == 1, srv.worker_pids()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", other)) != 0, "also listening on the env port"


def test_workers_flag(spawn):
    srv = spawn(workers=3)
    pids = srv.wait_workers(3)
    seen = set()
    for _ in range(40):
        with srv.raw() as c:  # a new connection each time, so any worker may accept
            c.send(b"GET /test/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            seen.add(int(c.read_response().body))
    assert seen <= set(pids), (seen, pids)


def test_master_serves_no_requests(spawn):
    srv = spawn(workers=2)
    for _ in range(20):
        with srv.raw() as c:
            c.send(b"GET /test/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert int(c.read_response().body) != srv.pid


def _run_bad(args, timeout=8, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    e.update(env or {})
    cmd = [NEXUS_BIN, "serve", "--host", "127.0.0.1", "--plugins-dir", PLUGINS_DIR,
           "--access-log", "off"] + args
    # Outside the repository: plugins may create files (todo's database) where they start.
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                         start_new_session=True, cwd=tempfile.gettempdir())
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        p.communicate()
        raise AssertionError(f"{cmd} kept running: an invalid setting must not start a server")
    return p.returncode, err.decode(errors="replace")


def test_invalid_port_refused():
    rc, err = _run_bad(["--port", "99999", "--workers", "1"])
    assert rc != 0
    assert "port" in err.lower(), err


def test_invalid_workers_refused():
    rc, err = _run_bad(["--port", str(free_port()), "--workers", "abc"])
    assert rc != 0
    assert "workers" in err.lower(), err


def test_invalid_duration_refused():
    rc, err = _run_bad(["--port", str(free_port()), "--workers", "1",
                        "--keepalive-timeout", "5parsecs"])
    assert rc != 0
    assert "keepalive" in err.lower(), err


def test_invalid_size_refused():
    rc, err = _run_bad(["--port", str(free_port()), "--workers", "1",
                        "--client-max-body-size", "12Q"])
    assert rc != 0
    assert "client" in err.lower() and "size" in err.lower(), err


def test_invalid_env_port_refused():
    rc, err = _run_bad(["--workers", "1"], env={"NEXUS_APP_PORT": "notaport"})
    assert rc != 0
    assert "NEXUS_APP_PORT" in err or "port" in err.lower(), err


def test_unknown_flag_refused():
    rc, err = _run_bad(["--port", str(free_port()), "--no-such-flag"])
    assert rc != 0
    assert "no-such-flag" in err, err


def test_port_in_use_refused():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        t0 = time.monotonic()
        rc, err = _run_bad(["--port", str(port), "--workers", "1"])
        assert rc != 0
        assert time.monotonic() - t0 < 8
        assert str(port) in err or "in use" in err.lower(), err


def test_default_workers_is_cpu_count(spawn):
    port = free_port()
    srv = spawn(flags=False, port=port, env={"NEXUS_APP_HOST": "127.0.0.1",
                                             "NEXUS_APP_PORT": str(port)})
    want = {os.cpu_count(), len(os.sched_getaffinity(0))}
    ok = wait_for(lambda: len(srv.worker_pids()) in want, 5)
    assert ok, f"{len(srv.worker_pids())} workers, expected one of {want}"
