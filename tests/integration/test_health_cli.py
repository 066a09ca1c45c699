"""`nexus health`: the probe container images run as their HEALTHCHECK (no curl inside)."""

import os
import socket
import subprocess
import threading
import time

from conftest import NEXUS_BIN, free_port


def health(*args, env=None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    full.update(env or {})
    t0 = time.monotonic()
    p = subprocess.run([NEXUS_BIN, "health", *args], capture_output=True, text=True,
                       env=full, timeout=20)
    return p.returncode, p.stderr, time.monotonic() - t0


def test_a_running_server_is_healthy(spawn):
    s = spawn(workers=1)
    assert health("--port", str(s.port))[0] == 0
    assert health(env={"NEXUS_APP_PORT": str(s.port)})[0] == 0  # the address as serve reads it


def test_production_rules_do_not_apply_to_the_probe(spawn):
    """A production configuration without its secrets still names the address to probe;
    `nexus serve` with the same environment refuses to start."""
    s = spawn(workers=1)
    env = {"NEXUS_APP_ENVIRONMENT": "production", "NEXUS_APP_PORT": str(s.port)}
    rc, err, _ = health(env=env)
    assert rc == 0 and err == "", err
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    full.update(env)
    check = subprocess.run([NEXUS_BIN, "config", "check"], capture_output=True, text=True,
                           env=full, timeout=20)
    assert check.returncode == 78 and "auth.jwt_secret" in check.stderr, check.stderr


def test_nothing_listening_is_unhealthy_at_once():
    rc, err, took = health("--port", str(free_port()))
    assert rc == 1 and "refused" in err, err
    assert took < 2


def test_a_listener_that_does_not_answer_http_is_unhealthy_within_the_limit():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    held = []

    def accept():
        c, _ = srv.accept()
        held.append(c)  # accepted, never answered

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        rc, err, took = health("--port", str(port))
        assert rc == 1 and "no HTTP answer" in err, err
        assert took < 6
    finally:
        srv.close()
        for c in held:
            c.close()


def test_a_bad_configuration_is_78():
    rc, err, _ = health("--port", "not-a-port")
    assert rc == 78 and "app.port" in err, err
