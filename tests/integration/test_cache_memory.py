"""The memory cache through real workers: one segment shared by every worker of an instance.

The segment's own behaviour (expiry, eviction order, classes, counters across processes) is
tested in tests/unit/cache/shm_test.c; here, what a plugin sees through <nexus/cache.h>:
get-or-compute under a stampede, and the cache check of /ready.
"""

import json
import threading

import requests

from conftest import connections_on_distinct_workers, raw_request, wait_for


def _many(s, path, n):
    out = [None] * n

    def one(i):
        out[i] = requests.get(s.url(path), timeout=10)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    return out


def test_a_stampede_computes_once_across_workers(spawn):
    # 40 requests for a cold key at once, over two workers: one computation (300 ms), and
    # every request gets its value, whichever worker served it.
    s = spawn(workers=2)
    s.wait_workers(2)
    answers = _many(s, "/test/compute?key=cold", 40)
    assert all(r is not None and r.status_code == 200 for r in answers), answers
    assert len({r.text for r in answers}) == 1, {r.text for r in answers}
    assert s.get("/test/computes?key=cold").text == "1"
    # Later reads are hits: still one computation.
    assert s.get("/test/compute?key=cold").text == answers[0].text
    assert s.get("/test/computes?key=cold").text == "1"


def test_different_keys_compute_separately(spawn):
    s = spawn(workers=2)
    for key in ("a", "b", "c"):
        assert s.get(f"/test/compute?key={key}").status_code == 200
        assert s.get(f"/test/computes?key={key}").text == "1"


def test_a_request_that_gives_up_does_not_stall_the_others(spawn):
    # The computing request's client leaves (its wait is interrupted, compute fails): the
    # requests that waited on it compute themselves and still get a value.
    s = spawn(workers=1)
    gone = threading.Thread(target=lambda: _timeout_get(s, "/test/compute?key=leave", 0.1))
    gone.start()
    gone.join()
    answers = _many(s, "/test/compute?key=leave", 5)
    assert all(r.status_code == 200 for r in answers), [r.status_code for r in answers]


def _timeout_get(s, path, timeout):
    try:
        requests.get(s.url(path), timeout=timeout)
    except requests.exceptions.Timeout:
        pass


def test_ready_reports_the_cache(spawn):
    s = spawn(workers=1)
    r = s.get("/ready")
    assert r.status_code == 200
    assert r.json()["checks"]["cache"] == "ok"


# ---- publish and subscribe within the instance ------------------------------------------


def test_a_message_reaches_every_worker_once(spawn):
    s = spawn(workers=3)
    s.wait_workers(3)
    conns = connections_on_distinct_workers(s, 3)
    try:
        (a, _), (b, _), (c, _) = conns
        a.send(raw_request("POST", "/test/publish", body=b"hello-1"))
        assert a.read_response("POST").status == 204
        for conn, pid in conns:  # the publisher's own worker included
            assert wait_for(lambda: _events(conn) == ["hello-1"], 2), (pid, _events(conn))
        b.send(raw_request("POST", "/test/publish", body=b"hello-2"))
        assert b.read_response("POST").status == 204
        for conn, pid in conns:
            assert wait_for(lambda: _events(conn) == ["hello-1", "hello-2"], 2), _events(conn)
    finally:
        for conn, _ in conns:
            conn.close()


def _events(conn):
    conn.send(raw_request("GET", "/test/events"))
    return json.loads(conn.read_response("GET").body)["events"]


def test_a_worker_started_later_gets_later_messages(spawn):
    # A worker replaced after a crash gets its own signal from the master.
    s = spawn(workers=1)
    first = s.get("/test/pid").text
    try:
        s.get("/test/crash")  # the worker aborts: the connection just closes
    except requests.exceptions.RequestException:
        pass
    assert wait_for(lambda: _pid_changed(s, first), 5)
    requests.post(s.url("/test/publish"), data=b"after", timeout=5)
    assert wait_for(lambda: s.get("/test/events").json()["events"] == ["after"], 2)


def _pid_changed(s, first):
    try:
        return s.get("/test/pid").text != first
    except requests.exceptions.RequestException:
        return False


def test_a_long_message_is_refused_not_truncated(spawn):
    s = spawn(workers=1)
    r = requests.post(s.url("/test/publish"), data=b"x" * (64 * 1024 + 1), timeout=5)
    assert r.status_code == 503
    assert s.get("/test/events").json()["events"] == []


# ---- whole responses ------------------------------------------------------------------


def test_a_whole_response_is_served_from_the_cache_until_its_tag_is_invalidated(spawn):
    s = spawn(workers=2)
    first = s.get("/test/page?key=page:a&tag=todos")
    assert first.status_code == 203 and first.text.startswith("render 1 ")
    assert first.headers["content-type"] == "text/x-page"
    for _ in range(5):  # cached: status, type and body as stored, on whichever worker
        again = s.get("/test/page?key=page:a&tag=todos")
        assert (again.status_code, again.text) == (203, first.text)
        assert again.headers["content-type"] == "text/x-page"
    other = s.get("/test/page?key=page:b&tag=users")
    assert requests.post(s.url("/test/invalidate?tag=todos"), timeout=5).status_code == 204
    fresh = s.get("/test/page?key=page:a&tag=todos")
    assert fresh.text != first.text, "an invalidated tag must not serve the old response"
    assert s.get("/test/page?key=page:a&tag=todos").text == fresh.text
    assert s.get("/test/page?key=page:b&tag=users").text == other.text  # another tag: kept


def test_responses_dropped_by_key_prefix(spawn):
    s = spawn(workers=1)
    a = s.get("/test/page?key=list:1").text
    b = s.get("/test/page?key=item:1").text
    assert requests.post(s.url("/test/invalidate?prefix=list:"), timeout=5).status_code == 204
    assert s.get("/test/page?key=list:1").text != a
    assert s.get("/test/page?key=item:1").text == b
