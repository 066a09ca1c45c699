"""Host names of PostgreSQL, MariaDB and Redis are resolved without stopping the worker.

Deployments name their databases (`postgres`, `redis-service`): the name is looked up when
a connection opens. A slow resolver must cost only the requests that wait for that
connection, not every request of the worker. The server runs with tests/shims/slowdns.c
preloaded: names ending in .slow.test answer after NEXUS_SLOWDNS_MS with 127.0.0.1, names
ending in .fail.test do not resolve, and each lookup is logged with the thread it ran on.
"""

import os
import subprocess
import threading
import time
import urllib.parse

import pytest
import requests

from conftest import NEXUS_BIN, NEXUS_BUILD

SHIM = os.path.join(NEXUS_BUILD, "test-shims", "slowdns.so")
SLOW_MS = 1500


def shim_env(tmp_path, ms=SLOW_MS):
    log = tmp_path / "dns.log"
    asan = os.environ.get("ASAN_OPTIONS", "")
    return {
        "LD_PRELOAD": SHIM,
        "NEXUS_SLOWDNS_MS": str(ms),
        "NEXUS_SLOWDNS_LOG": str(log),
        # The sanitizer build wants its runtime first; the shim is deliberately before it.
        "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0",
    }, log


def renamed(url, host):
    u = urllib.parse.urlsplit(url)
    assert u.hostname == "127.0.0.1", url
    return u._replace(netloc=u.netloc.replace("127.0.0.1", host)).geturl()


def lookups(log):
    try:
        return [tuple(line.split()) for line in log.read_text().splitlines()]
    except FileNotFoundError:
        return []


class Backend:
    def __init__(self, name, env, first, check):
        self.name, self.env, self.first, self.check = name, env, first, check


def pg_backend(url, host):
    return Backend("postgresql", {"NEXUS_DATABASE_URL": renamed(url, host)},
                   lambda s: s.request("POST", "/dbkit/query", json={"sql": "SELECT 1 AS n"},
                                       timeout=30),
                   lambda r: r.status_code == 200 and r.json()["rows"] == [{"n": 1}])


def mysql_backend(url, host):
    return Backend("mysql", {"NEXUS_DATABASE_URL": renamed(url, host)},
                   lambda s: s.request("POST", "/dbkit/query", json={"sql": "SELECT 1 AS n"},
                                       timeout=30),
                   lambda r: r.status_code == 200 and r.json()["rows"] == [{"n": 1}])


def redis_backend(redis, host):
    env = {"NEXUS_CACHE_TYPE": "redis", "NEXUS_CACHE_REDIS_HOST": host,
           "NEXUS_CACHE_REDIS_PORT": str(redis.port),
           "NEXUS_CACHE_REDIS_PASSWORD": redis.password,
           # The lookup counts against the connect and command timeouts (1s by default).
           "NEXUS_CACHE_REDIS_CONNECT_TIMEOUT": "10s",
           "NEXUS_CACHE_REDIS_COMMAND_TIMEOUT": "10s"}
    return Backend("redis", env,
                   lambda s: s.request("POST", "/cachekit/set?key=resolve-k", data=b"v1",
                                       timeout=30),
                   lambda r: r.status_code == 200 and r.json()["ok"] is True)


@pytest.fixture(params=["postgresql", "mysql", "redis"])
def backend_for(request, db_services):
    def make(host):
        if request.param == "postgresql":
            return pg_backend(request.getfixturevalue("pg_url"), host)
        if request.param == "mysql":
            return mysql_backend(request.getfixturevalue("mysql_url"), host)
        return redis_backend(request.getfixturevalue("redis_server"), host)
    return make


def test_a_slow_lookup_does_not_stop_the_worker(spawn, tmp_path, backend_for):
    b = backend_for("db.slow.test")
    env, log = shim_env(tmp_path)
    s = spawn(workers=1, env={**env, **b.env})
    result = {}

    def first_use():
        t0 = time.monotonic()
        result["r"] = b.first(s)
        result["took"] = time.monotonic() - t0
        result["done"] = time.monotonic()

    t = threading.Thread(target=first_use)
    t.start()
    # Wait until the lookup is under way, then ask the same (only) worker for something
    # that needs no connection.
    deadline = time.monotonic() + 10
    while not lookups(log) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lookups(log), "the server never looked the name up"
    answered = []
    while t.is_alive() and len(answered) < 5:
        r = s.get("/plaintext", timeout=10)
        assert r.status_code == 200
        answered.append(time.monotonic())
    t.join(30)
    assert b.check(result["r"]), (result["r"].status_code, result["r"].text, s.log_tail())
    # Requests were answered while the connection's lookup was still pending.
    assert answered and answered[0] < result["done"], (answered, result)
    assert result["took"] >= SLOW_MS / 1000 * 0.9  # the lookup really was slow
    # Every lookup of the name ran off the worker's own thread.
    seen = lookups(log)
    assert seen and all(where == "thread" for _, where in seen), seen


def test_an_unknown_name_is_unavailable_not_a_crash(spawn, tmp_path, backend_for):
    b = backend_for("db.fail.test")
    env, log = shim_env(tmp_path)
    s = spawn(workers=1, env={**env, **b.env})
    r = b.first(s)
    if b.name == "redis":
        # A cache that cannot be reached fails the call, not the request.
        assert r.status_code == 200 and r.json()["ok"] is False, r.text
    else:
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
    ready = s.get("/ready", timeout=10)
    assert ready.status_code == 503, ready.text
    assert "resolving db.fail.test" in s.log(), s.log_tail()
    assert s.get("/plaintext", timeout=5).status_code == 200
    assert all(where == "thread" for _, where in lookups(log)), lookups(log)


def test_numeric_hosts_are_never_looked_up(spawn, tmp_path, pg_url):
    env, log = shim_env(tmp_path)
    s = spawn(workers=1, env={**env, "NEXUS_DATABASE_URL": pg_url})
    r = s.request("POST", "/dbkit/query", json={"sql": "SELECT 1 AS n"}, timeout=30)
    assert r.status_code == 200
    assert lookups(log) == []
    assert not os.path.exists(log)


def test_the_shim_is_really_in_the_server(spawn, tmp_path, pg_url):
    """Control: the shim answers a plain getaddrinfo in the environment the servers get, and
    logs a lookup made on a main thread as such (`nexus health --host` resolves in place), so
    the "thread" entries above mean what they say."""
    env, log = shim_env(tmp_path)
    s = spawn(workers=1, env=env)
    r = requests.get(s.url("/health"), timeout=5)
    assert r.status_code == 200
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    full.update(env)
    p = subprocess.run([NEXUS_BIN, "health", "--host", "x.fail.test", "--port", str(s.port)],
                       capture_output=True, text=True, env=full, timeout=20)
    assert p.returncode == 1 and "x.fail.test" in p.stderr, p.stderr
    assert ("x.fail.test", "main") in lookups(log)


def test_a_lookup_longer_than_the_request_ends_with_the_request(spawn, tmp_path, pg_url):
    """The lookup counts against the request's deadline: server.handler_timeout (1s) ends
    a 4s lookup, with the 503 of a connection that could not be made, and the abandoned
    lookup's late answer harms nothing after."""
    env, log = shim_env(tmp_path, ms=4000)
    s = spawn(workers=1, env={**env, "NEXUS_DATABASE_URL": renamed(pg_url, "db.slow.test"),
                              "NEXUS_SERVER_HANDLER_TIMEOUT": "1s"})
    t0 = time.monotonic()
    r = s.request("POST", "/dbkit/query", json={"sql": "SELECT 1 AS n"}, timeout=30)
    took = time.monotonic() - t0
    assert r.status_code == 503 and "retry-after" in r.headers, r.text
    assert took < 3.5, took  # well before the lookup's 4s
    time.sleep(4)  # the thread answers into a lookup nobody waits for
    assert s.alive() and s.get("/plaintext", timeout=5).status_code == 200
    assert "resolving db.slow.test cancelled: the request's time ran out" in s.log()
