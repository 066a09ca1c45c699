"""The cache API (<nexus/cache.h>) on Redis, through the cachekit test plugin.

Runs against the throwaway redis-server of scripts/services.sh (the `redis_server` fixture of
conftest.py: password `nexus`, no persistence). Every test uses keys of its own (a random
prefix), so tests do not see each other's data. Besides the calls themselves this covers what
only a real server brings: values shared by workers and by instances, atomic counters, the
SCAN of delete_prefix with glob characters in the prefix, Redis's TTLs as Redis reports them,
a wrong password, a Redis that pauses or dies under load and comes back (misses, fast, no
worker crash, recovery without restarting Nexus), the database index and the host variables,
and publish/subscribe between the workers of several instances over Redis (through the
testkit plugin's /test/publish and /test/events), surviving a Redis restart.
"""

import base64
import http.client
import json
import os
import socket
import threading
import time
import urllib.parse
import uuid

import pytest

from conftest import call_json, connections_on_distinct_workers, wait_for

pytest.register_assert_rewrite("dbcases")

from dbcases import worker_deaths  # noqa: E402
from test_todo import fresh_database, migrate  # noqa: E402


class Client:
    """One keep-alive HTTP/1.1 connection for the load tests (any method, a body)."""

    def __init__(self, srv):
        self.srv = srv
        self.conn = None

    def request(self, method, path, body=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.srv.host, self.srv.port, timeout=10)
        try:
            self.conn.request(method, path, body=body)
            r = self.conn.getresponse()
            data = r.read()
        except Exception:
            self.close()
            raise
        if r.will_close:
            self.close()
        return r.status, data

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def redis_env(redis, **extra):
    """The environment of a server whose cache is redis (extra: NEXUS_CACHE_* overrides,
    lowercase names without the prefix, e.g. redis_db="3")."""
    env = {
        "NEXUS_CACHE_TYPE": "redis",
        "NEXUS_CACHE_REDIS_HOST": redis.host,
        "NEXUS_CACHE_REDIS_PORT": str(redis.port),
        "NEXUS_CACHE_REDIS_PASSWORD": redis.password,
    }
    for k, v in extra.items():
        if v is None:
            env.pop("NEXUS_CACHE_" + k.upper(), None)
        else:
            env["NEXUS_CACHE_" + k.upper()] = str(v)
    return env


@pytest.fixture(scope="module")
def srv(spawn_module, _redis_server):
    """A server with two workers on the session's Redis, shared by the module's tests."""
    return spawn_module(workers=2, env=redis_env(_redis_server), name="redis-cache")


@pytest.fixture
def k():
    """A fresh key prefix for the test."""
    return f"t{uuid.uuid4().hex[:10]}:"


def q(**params):
    return urllib.parse.urlencode(params)


def get(srv, key):
    r = srv.get(f"/cachekit/get?{q(key=key)}")
    assert r.status_code == 200, r.text
    return r.json()


def raw(srv, key):
    """The value's bytes, or None on a miss."""
    r = srv.get(f"/cachekit/raw?{q(key=key)}", timeout=30)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.content


def cset(srv, key, value, ttl_ms=None):
    params = {"key": key}
    if ttl_ms is not None:
        params["ttl_ms"] = ttl_ms
    if isinstance(value, str):
        value = value.encode()
    r = srv.request("POST", f"/cachekit/set?{q(**params)}", data=value, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["ok"]


def delete(srv, key):
    r = srv.request("DELETE", f"/cachekit/key?{q(key=key)}")
    assert r.status_code == 200, r.text
    return r.json()["ok"]


def exists(srv, key):
    r = srv.get(f"/cachekit/exists?{q(key=key)}")
    assert r.status_code == 200, r.text
    return r.json()["exists"]


def incr(srv, key, delta=1, ttl_ms=None):
    params = {"key": key, "delta": delta}
    if ttl_ms is not None:
        params["ttl_ms"] = ttl_ms
    r = srv.request("POST", f"/cachekit/incr?{q(**params)}")
    assert r.status_code == 200, r.text
    j = r.json()
    return j["value"] if j["ok"] else None


def delete_prefix(srv, prefix):
    r = srv.request("POST", f"/cachekit/delete-prefix?{q(prefix=prefix)}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["ok"]


def ready(srv):
    return srv.get("/ready")


def assert_cache_not_ready(srv):
    r = ready(srv)
    assert r.status_code == 503, r.text
    detail = r.json().get("detail", "")
    assert "'cache'" in detail, detail
    return detail


def assert_no_worker_died(srv):
    deaths = worker_deaths(srv)
    assert not deaths, "\n".join(deaths)
    for marker in ("signal", "SIGSEGV", "SIGABRT", "assertion failed"):
        bad = [ln for ln in srv.log().splitlines() if marker in ln and "worker" in ln]
        assert not bad, "\n".join(bad)


# ---- the calls -----------------------------------------------------------------------------


def test_set_get_exists_delete(srv, redis_server, k):
    key = k + "a"
    g = get(srv, key)
    assert g["hit"] is False and g["value"] is None and g["miss_is_empty"] is True
    assert exists(srv, key) is False
    assert cset(srv, key, "hello wörld") is True
    g = get(srv, key)
    assert g["hit"] is True and g["value"] == "hello wörld" and g["nul_terminated"] is True
    assert g["len"] == len("hello wörld".encode())
    assert exists(srv, key) is True
    with redis_server.client() as r:
        assert r.get(key) == "hello wörld".encode()
    assert cset(srv, key, "second") is True  # overwrite
    assert get(srv, key)["value"] == "second"
    assert delete(srv, key) is True
    assert get(srv, key)["hit"] is False and exists(srv, key) is False
    assert delete(srv, key) is True  # deleting what is not there is fine
    with redis_server.client() as r:
        assert r.exists(key) == 0
    assert cset(srv, key, b"") is True  # an empty value is a value
    g = get(srv, key)
    assert g["hit"] is True and g["len"] == 0 and g["value"] == ""


def test_ttl_in_milliseconds(srv, redis_server, k):
    key = k + "ttl"
    assert cset(srv, key, "short", ttl_ms=400) is True
    with redis_server.client() as r:
        pttl = r.pttl(key)
    assert 0 < pttl <= 400, pttl
    assert get(srv, key)["hit"] is True
    assert wait_for(lambda: not get(srv, key)["hit"], 2.0), "still there after its ttl"
    # ms resolution: 150 ms is not rounded up to a second
    t0 = time.monotonic()
    assert cset(srv, key, "x", ttl_ms=150) is True
    assert wait_for(lambda: not exists(srv, key), 2.0, interval=0.01)
    assert time.monotonic() - t0 < 0.9
    # forever: no expiry at all; default: cache.default_ttl (300 s)
    assert cset(srv, k + "forever", "v", ttl_ms="forever") is True
    assert cset(srv, k + "default", "v") is True
    with redis_server.client() as r:
        assert r.pttl(k + "forever") == -1
        assert 290_000 < r.pttl(k + "default") <= 300_000


def test_binary_values_with_nul_bytes(srv, redis_server, k):
    value = bytes(range(256)) * 4 + b"\0\0end\r\n$3\r\n"
    assert cset(srv, k + "bin", value) is True
    assert raw(srv, k + "bin") == value
    g = get(srv, k + "bin")
    assert g["hit"] and base64.b64decode(g["value_b64"]) == value and g["len"] == len(value)
    with redis_server.client() as r:
        assert r.get(k + "bin") == value
    # a value written by another client comes back as it is
    with redis_server.client() as r:
        r.set(k + "other", b"\0from\0redis\xff")
    assert raw(srv, k + "other") == b"\0from\0redis\xff"


def test_one_megabyte_values(srv, redis_server, k):
    big = os.urandom(1 << 20)
    assert cset(srv, k + "mb", big) is True
    assert raw(srv, k + "mb") == big
    with redis_server.client() as r:
        assert r.strlen(k + "mb") == len(big)
    bigger = os.urandom(5 << 20)  # several socket buffers each way
    assert cset(srv, k + "5mb", bigger) is True
    assert raw(srv, k + "5mb") == bigger
    # the connection is still in step after the large replies
    assert cset(srv, k + "small", "after") is True
    assert get(srv, k + "small")["value"] == "after"


def test_key_length_limit(srv, redis_server, k):
    longest = k + "x" * (250 - len(k))
    assert len(longest) == 250
    assert cset(srv, longest, "ok") is True
    assert get(srv, longest)["value"] == "ok"
    too_long = longest + "y"
    assert cset(srv, too_long, "no") is False
    assert get(srv, too_long)["hit"] is False
    assert exists(srv, too_long) is False
    assert incr(srv, too_long) is None
    assert delete(srv, too_long) is False
    with redis_server.client() as r:
        assert r.exists(too_long) == 0
    # a missing key is refused too, without harm
    r = srv.get("/cachekit/get")
    assert r.status_code == 200 and r.json()["hit"] is False
    assert srv.get("/health").status_code == 200


def test_keys_with_spaces_and_protocol_characters(srv, k):
    for key in (k + "a b", k + "line\r\nbreak", k + "*?[]\\", k + "ünïcödé ✓", k + "$5\r\n"):
        assert cset(srv, key, key) is True, key
        assert get(srv, key)["value"] == key, key


def test_incr(srv, redis_server, k):
    key = k + "n"
    assert incr(srv, key, 5, ttl_ms=60000) == 5
    assert incr(srv, key, -7, ttl_ms=60000) == -2
    assert get(srv, key)["value"] == "-2"
    assert cset(srv, k + "text", "not a number") is True
    assert incr(srv, k + "text") is None  # an error, and the value stays
    assert get(srv, k + "text")["value"] == "not a number"
    assert cset(srv, k + "num", "41") is True
    assert incr(srv, k + "num") == 42
    assert incr(srv, k + "forever", 3, ttl_ms="forever") == 3
    with redis_server.client() as r:
        assert r.pttl(k + "forever") == -1


def test_incr_sets_the_ttl_only_when_it_creates_the_key(srv, redis_server, k):
    key = k + "window"
    assert incr(srv, key, 1, ttl_ms=600) == 1
    with redis_server.client() as r:
        first = r.pttl(key)
        assert 0 < first <= 600
        assert incr(srv, key, 1, ttl_ms=100_000) == 2  # does not extend the window
        assert 0 < r.pttl(key) <= first
    assert wait_for(lambda: not exists(srv, key), 2.0)
    assert incr(srv, key, 1, ttl_ms=100_000) == 1  # a new window
    with redis_server.client() as r:
        assert 99_000 < r.pttl(key) <= 100_000
        r.set(k + "kept", 10)  # existing without expiry: incr leaves it so
    assert incr(srv, k + "kept", 1, ttl_ms=500) == 11
    with redis_server.client() as r:
        assert r.pttl(k + "kept") == -1


def test_incr_is_atomic_across_workers(srv, redis_server, k):
    key = k + "ctr"
    seen, pids, errors = [], set(), []
    lock = threading.Lock()

    def work():
        # a connection per request, so that both workers take a share
        for _ in range(100):
            r = srv.request("POST", f"/cachekit/incr?{q(key=key, ttl_ms=60000)}")
            with lock:
                if r.status_code != 200:
                    errors.append(r.status_code)
                    continue
                pids.add(r.json()["pid"])
                seen.append(r.json()["value"])

    ts = [threading.Thread(target=work) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors
    assert sorted(seen) == list(range(1, 801)), "lost or repeated increments"
    assert get(srv, key)["value"] == "800"
    with redis_server.client() as r:
        assert r.get(key) == b"800"
    assert len(pids) == 2, f"only workers {pids} served: both should have"


def test_one_connection_per_worker_serves_concurrent_calls(spawn, redis_server, k):
    """With cache.redis.max_connections 1, concurrent calls queue for the connection."""
    s = spawn(workers=2, env=redis_env(redis_server, redis_max_connections=1))
    seen, errors = [], []
    lock = threading.Lock()

    def work():
        c = Client(s)
        try:
            for _ in range(50):
                status, body = c.request("POST", f"/cachekit/incr?{q(key=k + 'q', ttl_ms=60000)}")
                with lock:
                    (seen if status == 200 else errors).append(json.loads(body).get("value"))
        finally:
            c.close()

    ts = [threading.Thread(target=work) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors
    assert sorted(seen) == list(range(1, 401)), "a queued call failed or was lost"
    assert "unavailable" not in s.log()


def test_delete_prefix_escapes_glob_characters(srv, redis_server, k):
    prefix = k + "a*b?[c]\\d:"
    doomed = [prefix, prefix + "1", prefix + "two", prefix + "*"]
    # each would match the prefix taken as a glob pattern
    kept = [k + "aXb?[c]\\d:1", k + "a*bY[c]\\d:1", k + "a*b?c\\d:1", k + "a*b?[c]d:1",
            k + "a*b?[c]\\d", k + "zzz"]
    for key in doomed + kept:
        assert cset(srv, key, "v") is True, key
    assert delete_prefix(srv, prefix) is True
    for key in doomed:
        assert not exists(srv, key), key
    for key in kept:
        assert exists(srv, key), key


def test_delete_prefix_over_many_scan_steps(srv, redis_server, k):
    with redis_server.client() as r:
        p = r.pipeline(transaction=False)
        for i in range(3000):
            p.set(f"{k}many:{i}", "v", px=60000)
        p.set(f"{k}other", "v", px=60000)
        p.execute()
    assert delete_prefix(srv, k + "many:") is True
    with redis_server.client() as r:
        left = list(r.scan_iter(match=f"{k}many:*", count=1000))
        assert left == []
        assert r.exists(f"{k}other") == 1
    assert delete_prefix(srv, k + "nothing-here:") is True
    r = srv.request("POST", "/cachekit/delete-prefix?prefix=")
    assert r.status_code == 200 and r.json()["ok"] is False  # the empty prefix is refused


def test_get_or_compute_on_redis(srv, k):
    r = srv.get(f"/cachekit/compute?{q(key=k + 'c', ttl_ms=60000, sleep_ms=50)}")
    assert r.status_code == 200 and r.json()["ok"] is True
    first = r.json()["value"]
    assert first.startswith("computed by ")
    for _ in range(5):
        assert srv.get(f"/cachekit/compute?{q(key=k + 'c')}").json()["value"] == first
    assert get(srv, "computes:" + k + "c")["value"] == "1"


# ---- sharing -------------------------------------------------------------------------------


def test_values_cross_workers(srv, k):
    key = k + "shared"
    assert cset(srv, key, "from one worker") is True
    pids = set()

    def both_seen():
        g = get(srv, key)
        assert g["hit"] and g["value"] == "from one worker"
        pids.add(g["pid"])
        return len(pids) == 2

    assert wait_for(both_seen, 10, interval=0), f"only worker(s) {pids} answered"


def test_values_cross_instances(spawn, redis_server, k):
    a = spawn(workers=1, env=redis_env(redis_server), name="a")
    b = spawn(workers=1, env=redis_env(redis_server), name="b")
    assert cset(a, k + "x", "set on a") is True
    assert get(b, k + "x")["value"] == "set on a"
    assert incr(a, k + "n", 2) == 2 and incr(b, k + "n", 3) == 5
    assert delete(b, k + "x") is True
    assert get(a, k + "x")["hit"] is False
    assert cset(b, k + "p:1", "1") and cset(b, k + "p:2", "2")
    assert delete_prefix(a, k + "p:") is True
    assert not exists(b, k + "p:1") and not exists(b, k + "p:2")


# ---- settings -------------------------------------------------------------------------------


def test_db_index_is_honoured(spawn, redis_server, k):
    redis_server.cli("SET", k + "in3", "written in db 3", "PX", 60000, db=3)
    s3 = spawn(workers=1, env=redis_env(redis_server, redis_db=3), name="db3")
    s0 = spawn(workers=1, env=redis_env(redis_server), name="db0")
    assert get(s3, k + "in3")["value"] == "written in db 3"
    assert get(s0, k + "in3")["hit"] is False
    assert cset(s3, k + "from-nexus", "v") is True
    assert redis_server.cli("GET", k + "from-nexus", db=3) == "v"
    assert redis_server.cli("EXISTS", k + "from-nexus", db=0) == "0"
    redis_server.cli("DEL", k + "in3", k + "from-nexus", db=3)


@pytest.mark.parametrize("var", ["NEXUS_CACHE_HOST", "NEXUS_CACHE_REDIS_HOST"])
def test_host_variables(spawn, redis_server, k, var):
    env = redis_env(redis_server, redis_host=None)
    env[var] = "127.0.0.1"
    s = spawn(workers=1, env=env)
    assert cset(s, k + "h", var) is True
    with redis_server.client() as r:
        assert r.get(k + "h") == var.encode()
    assert ready(s).status_code == 200


def test_unix_socket_and_name(spawn, redis_server, k):
    if not redis_server.socket:
        pytest.skip("no Redis socket")
    s = spawn(workers=1, env=redis_env(redis_server, redis_host=redis_server.socket,
                                       redis_port=None))
    assert cset(s, k + "sock", "over the socket") is True
    n = spawn(workers=1, env=redis_env(redis_server, redis_host="localhost"))
    assert get(n, k + "sock")["value"] == "over the socket"


def test_wrong_password_misses_and_is_not_ready(spawn, redis_server, k):
    with redis_server.client() as r:
        r.set(k + "there", "v", px=60000)
    s = spawn(workers=1, env=redis_env(redis_server, redis_password="wrong"))
    t0 = time.monotonic()
    assert get(s, k + "there")["hit"] is False
    assert cset(s, k + "new", "v") is False
    assert incr(s, k + "n") is None
    assert exists(s, k + "there") is False
    assert time.monotonic() - t0 < 2
    detail = assert_cache_not_ready(s)
    assert "WRONGPASS" in detail or "AUTH" in detail, detail
    with redis_server.client() as r:
        assert r.exists(k + "new") == 0
    assert "unavailable" in s.log()
    # and with no password at all: Redis asks for one
    n = spawn(workers=1, env=redis_env(redis_server, redis_password=None))
    assert get(n, k + "there")["hit"] is False
    assert "NOAUTH" in assert_cache_not_ready(n)
    assert_no_worker_died(s)
    assert_no_worker_died(n)


def test_ready_when_redis_answers(srv):
    r = ready(srv)
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["cache"] == "ok"


# ---- outages -------------------------------------------------------------------------------


def test_command_timeout_closes_the_connection(spawn, redis_server, k):
    """A reply that comes after the command timeout is never read as the next call's."""
    s = spawn(workers=1, env=redis_env(redis_server, redis_command_timeout="200ms",
                                       redis_max_connections=1))
    assert cset(s, k + "a", "A") and cset(s, k + "b", "B")
    redis_server.cli("CLIENT", "PAUSE", 700)
    t0 = time.monotonic()
    assert get(s, k + "a")["hit"] is False
    took = time.monotonic() - t0
    assert 0.15 < took < 0.6, took
    time.sleep(0.7)
    assert get(s, k + "b")["value"] == "B"
    assert get(s, k + "a")["value"] == "A"
    assert_no_worker_died(s)


def test_unanswering_server_costs_the_connect_timeout_then_fails_fast(spawn, k):
    """A listener that accepts and never answers: the first call waits the connect timeout,
    the next ones fail at once during the back-off."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    try:
        env = {"NEXUS_CACHE_TYPE": "redis", "NEXUS_CACHE_REDIS_HOST": "127.0.0.1",
               "NEXUS_CACHE_REDIS_PORT": str(lsock.getsockname()[1]),
               "NEXUS_CACHE_REDIS_CONNECT_TIMEOUT": "300ms",
               "NEXUS_CACHE_REDIS_COMMAND_TIMEOUT": "2s"}
        s = spawn(workers=1, env=env)
        t0 = time.monotonic()
        assert get(s, k + "x")["hit"] is False
        first = time.monotonic() - t0
        assert 0.25 < first < 1.0, first
        t0 = time.monotonic()
        assert get(s, k + "x")["hit"] is False
        assert time.monotonic() - t0 < 0.1
        assert_cache_not_ready(s)
    finally:
        lsock.close()


def test_redis_restart_between_calls_costs_nothing(spawn, redis_server, k):
    """Pooled connections that Redis closed are noticed before use, not failed on."""
    s = spawn(workers=1, env=redis_env(redis_server))
    assert cset(s, k + "a", "1") is True
    redis_server.restart()  # empties it
    assert cset(s, k + "a", "2") is True
    assert get(s, k + "a")["value"] == "2"


def test_redis_killed_under_load(spawn, redis_server, k):
    s = spawn(workers=2, env=redis_env(redis_server, redis_command_timeout="1s",
                                       redis_connect_timeout="1s"))
    stop = threading.Event()
    lock = threading.Lock()
    results = []  # (t, op, status, hit/ok, seconds)
    failures = []

    def load(n):
        c = Client(s)
        i = 0
        try:
            while not stop.is_set():
                key = f"{k}load:{n}:{i % 20}"
                i += 1
                for method, path in (("POST", f"/cachekit/set?{q(key=key, ttl_ms=60000)}"),
                                     ("GET", f"/cachekit/get?{q(key=key)}")):
                    t0 = time.monotonic()
                    try:
                        status, body = c.request(method, path,
                                                 body=b"v" * 100 if method == "POST" else None)
                    except Exception as e:  # noqa: BLE001 - recorded
                        with lock:
                            failures.append(repr(e))
                        continue
                    took = time.monotonic() - t0
                    j = json.loads(body) if status == 200 else {}
                    with lock:
                        results.append((t0, method, status, j.get("hit", j.get("ok")), took))
        finally:
            c.close()

    ts = [threading.Thread(target=load, args=(n,)) for n in range(6)]
    for t in ts:
        t.start()
    try:
        time.sleep(0.5)
        killed = time.monotonic()
        redis_server.kill()
        time.sleep(2.0)
        down_until = time.monotonic()
        redis_server.start()
        started = time.monotonic()
        time.sleep(3.0)
    finally:
        stop.set()
        for t in ts:
            t.join(30)
    assert not failures, failures[:5]
    assert all(st == 200 for _, _, st, _, _ in results), "a cache failure became an HTTP error"
    before = [r for r in results if r[0] < killed]
    assert before and all(r[3] for r in before if r[1] == "GET"), "misses before the outage"
    # while Redis is down, after the first failures: misses, each answered fast
    outage = [r for r in results if killed + 0.3 < r[0] and r[0] + r[4] < down_until]
    assert len(outage) > 50, len(outage)
    assert not any(r[3] for r in outage if r[1] == "GET"), "a hit while Redis was down"
    slow = sorted(r[4] for r in outage)
    assert slow[len(slow) * 99 // 100] < 0.1, f"slow misses during the outage: {slow[-10:]}"
    assert slow[-1] < 0.5, slow[-10:]
    # recovery, without restarting Nexus: hits again within a few seconds of Redis's return
    after = [r for r in results if r[0] > started + 2.5 and r[1] == "GET"]
    assert after and all(r[3] for r in after), "no recovery after Redis came back"
    assert wait_for(lambda: ready(s).status_code == 200, 5)
    assert cset(s, k + "after", "v") and get(s, k + "after")["hit"]
    assert "unavailable" in s.log() and "answers again" in s.log()
    assert_no_worker_died(s)
    assert len(s.wait_workers(2)) == 2


def test_redis_down_at_start_then_up(spawn, redis_server, k):
    redis_server.stop()
    s = spawn(workers=1, env=redis_env(redis_server))
    assert get(s, k + "x")["hit"] is False
    assert "Connection refused" in assert_cache_not_ready(s)
    t0 = time.monotonic()
    for _ in range(20):
        get(s, k + "x")
    assert time.monotonic() - t0 < 1.0, "misses are not fast while Redis is down"
    redis_server.start()
    assert wait_for(lambda: cset(s, k + "x", "back"), 5), "no recovery"
    assert get(s, k + "x")["value"] == "back"
    assert ready(s).status_code == 200
    assert_no_worker_died(s)


def test_client_gone_abandons_the_call(spawn, redis_server, k):
    """A request whose client leaves while its cache call waits gives the call up at once
    (the connection, mid-reply, is closed), and the next calls are answered in step."""
    s = spawn(workers=1, env=redis_env(redis_server, redis_command_timeout="5s",
                                       redis_max_connections=1))
    assert cset(s, k + "a", "A") and cset(s, k + "b", "B")
    redis_server.cli("CLIENT", "PAUSE", 1500)
    paused = time.monotonic()
    c = socket.create_connection((s.host, s.port), timeout=5)
    c.sendall(f"GET /cachekit/get?{q(key=k + 'a')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(0.2)
    c.close()
    assert wait_for(lambda: "the client went away" in s.log(), 1.0), "the call went on"
    assert time.monotonic() - paused < 1.3
    assert wait_for(lambda: get(s, k + "b")["value"] == "B", 5)
    assert get(s, k + "a")["value"] == "A"
    assert_no_worker_died(s)


# ---- publish and subscribe across instances --------------------------------------------------


def worker_events(conns):
    """{pid: the messages that worker received on test.events}, one connection per worker."""
    out = {}
    for c, pid in conns:
        r = call_json(c, "GET", "/test/events")
        assert r.status == 200, r
        assert r.json()["pid"] == pid
        out[pid] = r.json()["events"]
    return out


def publish(s, message):
    r = s.request("POST", "/test/publish", data=message.encode())
    assert r.status_code == 204, r.text


def until_all_receive(pub, conns, tag, timeout=10.0):
    """Publishes probes through pub until every worker of conns received one (so all are
    subscribed); the seconds it took."""
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < timeout:
        publish(pub, f"{tag}:probe{i}")
        i += 1
        time.sleep(0.1)
        got = worker_events(conns)
        if all(any(e.startswith(tag + ":probe") for e in ev) for ev in got.values()):
            return time.monotonic() - t0
    pytest.fail(f"not every worker subscribed within {timeout} s: {worker_events(conns)}")


def assert_each_received_once(conns, message, timeout=5.0):
    assert wait_for(lambda: all(message in ev for ev in worker_events(conns).values()),
                    timeout), f"{message} did not reach every worker: {worker_events(conns)}"
    time.sleep(0.3)  # a second copy would have come by now
    for pid, ev in worker_events(conns).items():
        assert ev.count(message) == 1, f"worker {pid} got {message} {ev.count(message)} times"


def two_instances(spawn, redis_server):
    a = spawn(workers=2, env=redis_env(redis_server), name="a")
    b = spawn(workers=2, env=redis_env(redis_server), name="b")
    conns = connections_on_distinct_workers(a, 2) + connections_on_distinct_workers(b, 2)
    assert len({pid for _, pid in conns}) == 4
    return a, b, conns


def test_publish_reaches_every_worker_of_every_instance_once(spawn, redis_server):
    a, b, conns = two_instances(spawn, redis_server)
    tag = uuid.uuid4().hex[:8]
    until_all_receive(a, conns, tag)
    publish(a, f"{tag}:from a")
    assert_each_received_once(conns, f"{tag}:from a")
    publish(b, f"{tag}:from b")
    publish(b, f"{tag}:then b")
    assert_each_received_once(conns, f"{tag}:then b")
    for pid, ev in worker_events(conns).items():
        assert ev.index(f"{tag}:from b") < ev.index(f"{tag}:then b"), (pid, ev)
    # it went through Redis: a client of its own sees what Nexus publishes
    with redis_server.client() as r:
        p = r.pubsub(ignore_subscribe_messages=True)
        p.subscribe("test.events")
        assert p.get_message(timeout=2) is None  # the subscribe confirmation, skipped
        publish(a, f"{tag}:seen by redis")
        m = None
        deadline = time.monotonic() + 5
        while m is None and time.monotonic() < deadline:
            m = p.get_message(timeout=1)
        assert m and m["data"] == f"{tag}:seen by redis".encode(), m
        p.close()
    for c, _ in conns:
        c.close()
    assert_no_worker_died(a)
    assert_no_worker_died(b)


def test_subscriptions_come_back_after_a_redis_restart(spawn, redis_server):
    a, b, conns = two_instances(spawn, redis_server)
    tag = uuid.uuid4().hex[:8]
    until_all_receive(a, conns, tag)
    redis_server.restart()
    took = until_all_receive(b, conns, tag + "r", timeout=15)
    assert took < 5, f"subscriptions took {took:.1f} s to come back"
    publish(a, f"{tag}:after")
    assert_each_received_once(conns, f"{tag}:after")
    for s in (a, b):
        lines = [ln for ln in s.log().splitlines() if "pub/sub over Redis" in ln]
        # said once per worker, however many attempts it took
        assert sum(" lost: " in ln for ln in lines) == 2, lines
        assert sum("is back (" in ln for ln in lines) == 2, lines
        assert "messages published until it is back are not received" in lines[0]
        assert_no_worker_died(s)
    for c, _ in conns:
        c.close()


def test_todo_reads_across_instances_are_never_stale(spawn, redis_server, request,
                                                     tmp_path_factory):
    """Two instances sharing one SQLite file and one Redis: a write on one is seen by the
    next read on the other, whose previous answer was cached."""
    db = fresh_database(request, "sqlite", tmp_path_factory, "xinst")
    migrate(db, tmp_path_factory.mktemp("migrate"))
    env = dict(redis_env(redis_server), **db.env)
    a = spawn(workers=2, env=env, name="todo-a")
    b = spawn(workers=2, env=env, name="todo-b")
    headers = {"Content-Type": "application/json"}
    r = a.request("POST", "/todos", data=json.dumps({"title": "v0"}), headers=headers)
    assert r.status_code == 201, r.text
    path = f"/todos/{r.json()['id']}"
    for i in range(1, 6):
        first = b.get(path)
        assert first.status_code == 200 and first.json()["title"] == f"v{i - 1}", first.text
        again = b.get(path)
        assert again.json()["title"] == f"v{i - 1}"
        assert again.headers.get("X-Cache") == "hit", again.headers  # B caches it
        r = a.request("PATCH", path, data=json.dumps({"title": f"v{i}"}), headers=headers)
        assert r.status_code == 200, r.text
        for _ in range(4):  # whichever worker of B answers
            got = b.get(path)
            assert got.status_code == 200 and got.json()["title"] == f"v{i}", \
                f"B served {got.json()['title']} after A wrote v{i}"
    # a listing too
    listing = b.get("/todos?limit=10").json()
    assert b.get("/todos?limit=10").headers.get("X-Cache") == "hit"
    r = a.request("PATCH", path, data=json.dumps({"title": "last"}), headers=headers)
    assert r.status_code == 200, r.text
    after = b.get("/todos?limit=10").json()
    assert after != listing and "last" in json.dumps(after)
    assert_no_worker_died(a)
    assert_no_worker_died(b)


def test_cached_queries_read_many_keys_in_one_call(spawn, redis_server, request,
                                                   tmp_path_factory):
    """hello's /cached-queries fetches its rows with nx_cache_get_many (one MGET): the rows
    it caches land in Redis, and later answers served from there equal the table."""
    import sqlite3

    db = fresh_database(request, "sqlite", tmp_path_factory, "cachedq")
    migrate(db, tmp_path_factory.mktemp("migrate"))
    s = spawn(workers=2, env=dict(redis_env(redis_server), **db.env))
    client = redis_server.client(0)
    client.delete(*(client.keys("world:*") or [b"-"]))
    table = dict(sqlite3.connect(db.env["NEXUS_DATABASE_PATH"]).execute(
        "SELECT id, randomNumber FROM World").fetchall())
    for _ in range(4):
        r = s.get("/cached-queries?count=200")
        assert r.status_code == 200, r.text
        rows = r.json()
        assert len(rows) == 200
        assert all(table[row["id"]] == row["randomNumber"] for row in rows)
    mget = client.info("commandstats").get("cmdstat_mget", {}).get("calls", 0)
    assert mget >= 4, f"{mget} MGET calls for 4 requests"
    cached = client.keys("world:*")
    assert len(cached) > 300, len(cached)  # ~550 distinct ids of 800 draws
    some = cached[0].decode()
    assert int(client.get(some)) == table[int(some.split(":")[1])]
