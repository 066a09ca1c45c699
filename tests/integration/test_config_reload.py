"""SIGHUP loads the configuration again; an invalid one is refused and the old one stays."""
import signal
import time

from conftest import free_port, wait_for


def post_len(server, n):
    return server.request("POST", "/test/echo", data=b"a" * n).status_code


def test_reload_applies_a_changed_file_and_refuses_a_broken_one(spawn, tmp_path):
    cfg = tmp_path / "nexus.yaml"
    cfg.write_text("server:\n  client_max_body_size: 1k\n")
    s = spawn(workers=1, args=["--config", str(cfg)])
    assert post_len(s, 2000) == 413
    first = set(s.worker_pids())

    cfg.write_text("server:\n  client_max_body_size: 1M\n")
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: not (set(s.worker_pids()) & first), 10), s.log_tail()
    assert post_len(s, 2000) == 200

    second = set(s.worker_pids())
    cfg.write_text("server:\n  client_max_body_size: lots\n")
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: "still serving with the previous one" in s.log(), 5), s.log_tail()
    # the bad file named where it is wrong, and nothing was restarted
    assert f"{cfg}:2: server.client_max_body_size" in s.log()
    time.sleep(0.3)
    assert set(s.worker_pids()) == second
    assert post_len(s, 2000) == 200
    assert s.get("/ready").status_code == 200


def test_reload_keeps_the_listening_port(spawn, tmp_path):
    port = free_port()
    cfg = tmp_path / "nexus.yaml"
    cfg.write_text(f"app:\n  name: one\n  port: {port}\n  workers: 1\n")
    s = spawn(workers=1, args=["--config", str(cfg)], flags=False, port=port)
    assert s.get("/health").status_code == 200
    first = set(s.worker_pids())
    cfg.write_text(f"app:\n  name: two\n  port: {port + 1}\n  workers: 1\n")
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: not (set(s.worker_pids()) & first), 10), s.log_tail()
    assert "app.port changed" in s.log()
    assert s.get("/health").status_code == 200
