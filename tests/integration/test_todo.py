"""The bundled todo plugin: a JSON API over SQLite shared by the worker processes.

Every server here points the plugin at its own database file through
NEXUS_PLUGINS_TODO_DB_PATH. Tests sharing the module's server make their titles unique
(a random prefix) and read back through `?q=prefix`, so they never see each other's rows.
"""

import datetime
import json
import os
import re
import sqlite3
import subprocess
import threading
import time
import uuid

import pytest

from conftest import (NEXUS_BIN, PLUGINS_DIR, allow_set, assert_common_headers, assert_problem,
                      free_port, raw_request)

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JSON = {"Content-Type": "application/json"}


def db_env(path):
    return {"NEXUS_PLUGINS_TODO_DB_PATH": str(path)}


@pytest.fixture(scope="module")
def srv(spawn_module, tmp_path_factory):
    db = tmp_path_factory.mktemp("tododb") / "todo.db"
    return spawn_module(workers=2, name="todo", env=db_env(db))


def prefix():
    return "t" + uuid.uuid4().hex[:10]


def post(s, body, headers=JSON):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return s.request("POST", "/todos", data=data, headers=headers)


def create(s, title, done=None):
    body = {"title": title}
    if done is not None:
        body["done"] = done
    r = post(s, body)
    assert r.status_code == 201, r.text
    return r.json()


def send(s, method, path, body, headers=JSON):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return s.request(method, path, data=data, headers=headers)


def listing(s, query):
    r = s.get("/todos?" + query)
    assert r.status_code == 200, r.text
    return r.json()


def parse_ts(value):
    assert ISO_RE.match(value), value
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# ---- create and read ----------------------------------------------------------------------

def test_create_answers_201_with_the_object_and_location(srv):
    r = post(srv, {"title": "  buy milk \t"})
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert_common_headers(r)
    todo = r.json()
    assert set(todo) == {"id", "title", "done", "created_at", "updated_at"}
    assert isinstance(todo["id"], int) and todo["id"] > 0
    assert todo["title"] == "buy milk"  # trimmed
    assert todo["done"] is False
    assert todo["created_at"] == todo["updated_at"]
    assert abs(parse_ts(todo["created_at"]) - time.time()) < 120
    assert r.headers["Location"] == f"/todos/{todo['id']}"

    got = srv.get(r.headers["Location"])
    assert got.status_code == 200 and got.json() == todo
    assert_common_headers(got)


def test_create_with_done_and_unicode_title(srv):
    todo = create(srv, "écrire le rapport ✓", done=True)
    assert todo["done"] is True and todo["title"] == "écrire le rapport ✓"
    assert srv.get(f"/todos/{todo['id']}").json() == todo


def test_title_limit_counts_characters_after_trimming(srv):
    assert create(srv, "x" * 200)["title"] == "x" * 200
    assert create(srv, "é" * 200)["title"] == "é" * 200  # 400 bytes, 200 characters
    assert create(srv, "   " + "y" * 200 + "   ")["title"] == "y" * 200
    assert_problem(post(srv, {"title": "x" * 201}), 422, instance="/todos",
                   detail_contains="title must be at most 200 characters")


@pytest.mark.parametrize("body,detail", [
    ({}, "title is required"),
    ({"done": True}, "title is required"),
    ({"title": None}, "title must be a string"),
    ({"title": 5}, "title must be a string"),
    ({"title": ["a"]}, "title must be a string"),
    ({"title": ""}, "title must not be empty"),
    ({"title": " \t\n "}, "title must not be empty"),
    ({"title": "a", "done": "true"}, "done must be a boolean"),
    ({"title": "a", "done": 1}, "done must be a boolean"),
    ({"title": "a", "done": None}, "done must be a boolean"),
    ({"title": "a", "priority": 3}, 'unknown field "priority"'),
    ({"title": "a", "id": 3}, 'unknown field "id"'),
    ([{"title": "a"}], "body must be a JSON object"),
    ('"just a string"', "body must be a JSON object"),
    ("42", "body must be a JSON object"),
    ("null", "body must be a JSON object"),
])
def test_create_validation(srv, body, detail):
    assert_problem(post(srv, body), 422, instance="/todos", detail_contains=detail)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"title": "a",}', b"not json", b'{"title": "\xff"}',
                                 b'{"title": "a", "title": "b"}'])
def test_create_invalid_json_is_400(srv, raw):
    assert_problem(post(srv, raw), 400, instance="/todos", detail_contains="not valid JSON")


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/jsonx", "application/merge-patch+json"])
def test_create_needs_a_json_content_type(srv, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = srv.request("POST", "/todos", data=b'{"title": "a"}', headers=headers)
    assert_problem(r, 415, instance="/todos", detail_contains="application/json")


def test_json_content_type_parameters_and_case_are_accepted(srv):
    for ctype in ("application/json; charset=utf-8", "Application/JSON"):
        r = post(srv, {"title": "typed"}, headers={"Content-Type": ctype})
        assert r.status_code == 201, (ctype, r.text)


@pytest.mark.parametrize("path", ["/todos/999999999", "/todos/0", "/todos/-3"])
def test_get_unknown_is_404(srv, path):
    r = srv.get(path)
    doc = assert_problem(r, 404, instance=path, detail_contains="no todo with id")
    assert path.rsplit("/", 1)[1] in doc["detail"]


def test_id_out_of_range_is_404(srv):
    for path in ("/todos/9223372036854775808", "/todos/99999999999999999999999"):
        assert_problem(srv.get(path), 404, instance=path)


def test_non_integer_id_is_404(srv):
    assert_problem(srv.get("/todos/abc"), 404, instance="/todos/abc")


# ---- list: shape, pagination, filters -----------------------------------------------------

def test_list_shape_and_order(srv):
    p = prefix()
    made = [create(srv, f"{p} {i}") for i in range(3)]
    doc = listing(srv, f"q={p}")
    assert set(doc) == {"items", "total", "limit", "offset"}
    assert doc["total"] == 3 and doc["limit"] == 20 and doc["offset"] == 0
    assert doc["items"] == made  # ordered by id, each the full object
    ids = [t["id"] for t in doc["items"]]
    assert ids == sorted(ids)


def test_pagination(srv):
    p = prefix()
    made = [create(srv, f"{p}-{i:02d}")["id"] for i in range(25)]
    assert [t["id"] for t in listing(srv, f"q={p}")["items"]] == made[:20]  # default limit
    seen = []
    for offset in (0, 10, 20):
        doc = listing(srv, f"q={p}&limit=10&offset={offset}")
        assert doc["total"] == 25 and doc["limit"] == 10 and doc["offset"] == offset
        seen += [t["id"] for t in doc["items"]]
    assert seen == made
    doc = listing(srv, f"q={p}&limit=100&offset=25")
    assert doc["items"] == [] and doc["total"] == 25
    doc = listing(srv, f"q={p}&limit=1&offset=24")
    assert [t["id"] for t in doc["items"]] == made[24:]
    assert len(listing(srv, "limit=100")["items"]) <= 100


def test_filters_done_and_q(srv):
    p = prefix()
    a = create(srv, f"{p} Write report", done=True)
    b = create(srv, f"{p} write tests")
    c = create(srv, f"{p} ship it", done=False)
    assert listing(srv, f"q={p}&done=true")["items"] == [a]
    assert listing(srv, f"q={p}&done=false")["items"] == [b, c]
    # q is a substring, case-insensitive, combined with done.
    assert listing(srv, f"q={p}%20WRITE")["items"] == [a, b]
    assert listing(srv, f"q={p}%20write&done=false")["items"] == [b]
    assert listing(srv, f"q={p}%20nothing")["total"] == 0


def test_q_wildcards_are_literal(srv):
    p = prefix()
    pct = create(srv, f"{p} 50% off")
    create(srv, f"{p} 500 off")
    under = create(srv, f"{p} a_b")
    create(srv, f"{p} axb")
    assert listing(srv, f"q={p}%2050%25")["items"] == [pct]
    assert listing(srv, f"q={p}%20a_b")["items"] == [under]


def test_q_is_a_bound_parameter(srv):
    p = prefix()
    quoted = create(srv, f"{p} it's \"quoted\"; DROP TABLE todos; --")
    assert listing(srv, f"q={p}%20it's")["items"] == [quoted]
    assert listing(srv, "q=' OR 1=1 --")["total"] == 0
    assert srv.get(f"/todos/{quoted['id']}").json() == quoted


@pytest.mark.parametrize("query,name", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=abc", "limit"), ("limit=-1", "limit"),
    ("limit=", "limit"), ("limit=1.5", "limit"), ("limit=%2010", "limit"),
    ("offset=-1", "offset"), ("offset=x", "offset"), ("offset=", "offset"),
    ("offset=99999999999999999999", "offset"),
    ("done=yes", "done"), ("done=1", "done"), ("done=", "done"), ("done=TRUE", "done"),
    ("q=" + "x" * 201, "q"),
])
def test_list_bad_query_is_422_naming_the_parameter(srv, query, name):
    r = srv.get("/todos?" + query)
    doc = assert_problem(r, 422, instance="/todos")
    assert doc["detail"].startswith(name + " "), doc


def test_head_todos(srv):
    create(srv, "for HEAD")
    get = srv.get("/todos")
    with srv.raw() as c:
        c.send(raw_request("HEAD", "/todos"))
        r = c.read_response("HEAD")
    assert r.status == 200 and r.body == b""
    assert r.headers["content-type"].split(";")[0] == "application/json"
    assert int(r.headers["content-length"]) == len(get.content)


# ---- update and delete --------------------------------------------------------------------

def test_put_replaces(srv):
    t = create(srv, "old", done=True)
    time.sleep(0.002)  # timestamps have millisecond precision
    r = send(srv, "PUT", f"/todos/{t['id']}", {"title": " new ", "done": False})
    assert r.status_code == 200, r.text
    u = r.json()
    assert u["id"] == t["id"] and u["title"] == "new" and u["done"] is False
    assert u["created_at"] == t["created_at"]
    assert parse_ts(u["updated_at"]) > parse_ts(t["updated_at"])
    assert srv.get(f"/todos/{t['id']}").json() == u


@pytest.mark.parametrize("body,detail", [
    ({"title": "a"}, "done is required"),
    ({"done": True}, "title is required"),
    ({}, "title is required"),
    ({"title": "", "done": True}, "title must not be empty"),
    ({"title": "a", "done": "no"}, "done must be a boolean"),
    ({"title": "a", "done": True, "created_at": "x"}, 'unknown field "created_at"'),
])
def test_put_validation(srv, body, detail):
    t = create(srv, "put me")
    path = f"/todos/{t['id']}"
    assert_problem(send(srv, "PUT", path, body), 422, instance=path, detail_contains=detail)
    assert srv.get(path).json() == t  # unchanged


def test_patch_changes_only_what_it_names(srv):
    t = create(srv, "patch me")
    path = f"/todos/{t['id']}"
    r = send(srv, "PATCH", path, {"done": True})
    assert r.status_code == 200, r.text
    assert r.json()["done"] is True and r.json()["title"] == "patch me"
    r = send(srv, "PATCH", path, {"title": "patched"})
    assert r.json()["done"] is True and r.json()["title"] == "patched"
    r = send(srv, "PATCH", path, {"title": "both", "done": False},
             headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "both" and r.json()["done"] is False
    assert r.json()["created_at"] == t["created_at"]
    assert srv.get(path).json() == r.json()


@pytest.mark.parametrize("body,status,detail", [
    ({}, 422, "nothing to update"),
    ({"title": None}, 422, "title must be a string"),
    ({"title": "z" * 201}, 422, "title must be at most 200 characters"),
    ({"done": "yes"}, 422, "done must be a boolean"),
    ({"tittle": "typo"}, 422, 'unknown field "tittle"'),
    ("[]", 422, "body must be a JSON object"),
    ("{", 400, "not valid JSON"),
])
def test_patch_validation(srv, body, status, detail):
    t = create(srv, "patch validation")
    path = f"/todos/{t['id']}"
    assert_problem(send(srv, "PATCH", path, body), status, instance=path, detail_contains=detail)
    assert srv.get(path).json() == t


def test_update_needs_json_content_type(srv):
    t = create(srv, "ctype")
    path = f"/todos/{t['id']}"
    for method in ("PUT", "PATCH"):
        r = send(srv, method, path, {"title": "a", "done": True}, headers={"Content-Type": "text/plain"})
        assert_problem(r, 415, instance=path)


def test_update_unknown_is_404(srv):
    for method, body in (("PUT", {"title": "a", "done": True}), ("PATCH", {"done": True})):
        r = send(srv, method, "/todos/987654321", body)
        assert_problem(r, 404, instance="/todos/987654321", detail_contains="no todo with id 987654321")


def test_delete(srv):
    t = create(srv, "delete me")
    path = f"/todos/{t['id']}"
    with srv.raw() as c:
        c.send(raw_request("DELETE", path))
        r = c.read_response("DELETE")
    assert r.status == 204 and r.body == b""
    assert_common_headers(r)
    assert_problem(srv.get(path), 404, instance=path)
    assert_problem(srv.request("DELETE", path), 404, instance=path,
                   detail_contains=f"no todo with id {t['id']}")
    # An id is never reused after a delete.
    assert create(srv, "after delete")["id"] > t["id"]


def test_method_not_allowed_names_the_allowed_ones(srv):
    r = srv.request("POST", "/todos/1")
    assert_problem(r, 405, instance="/todos/1")
    assert {"GET", "PUT", "PATCH", "DELETE"} <= allow_set(r.headers["Allow"])
    assert "POST" not in allow_set(r.headers["Allow"])
    r = srv.request("DELETE", "/todos")
    assert_problem(r, 405, instance="/todos")
    assert {"GET", "POST"} <= allow_set(r.headers["Allow"])


def test_ready_includes_the_database_check(srv):
    r = srv.get("/ready")
    assert r.status_code == 200 and r.json()["checks"]["todo-db"] == "ok", r.text


# ---- several workers, restarts, concurrency, failures -------------------------------------

def _call(conn, method, path, body=None):
    headers = [("Content-Type", "application/json")] if body is not None else []
    conn.send(raw_request(method, path, headers=headers,
                          body=json.dumps(body) if body is not None else b""))
    return conn.read_response(method)


def test_every_worker_sees_every_write(spawn, tmp_path):
    """Three keep-alive connections pinned to three different workers: whatever one writes,
    the others read at once.

    Idle workers share the listener and the kernel tends to hand every connection to the
    same one, so the test steers them: a Python connection holds the database's write lock,
    a POST then blocks the worker that serves it (in SQLite's busy wait), and the next
    connection can only be accepted by another worker. Releasing the lock lets the blocked
    POSTs complete, which also shows that a writer waits for a lock instead of failing."""
    db = tmp_path / "shared.db"
    s = spawn(workers=3, env=db_env(db))
    s.wait_workers(3)
    p = prefix()
    conns, pids, blocked = [], [], []
    lock = sqlite3.connect(str(db), isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        for i in range(3):
            c = s.raw(timeout=10)
            conns.append(c)
            pids.append(int(_call(c, "GET", "/test/pid").body))
            if i < 2:
                c.send(raw_request("POST", "/todos", headers=[("Content-Type", "application/json")],
                                   body=json.dumps({"title": f"{p} blocked {i}"})))
                blocked.append(c)
                time.sleep(0.2)  # until that worker sits in SQLite's busy wait
        lock.execute("COMMIT")
        made = {}
        for c in blocked:
            r = c.read_response("POST")
            assert r.status == 201, r
            made[r.json()["id"]] = r.json()
    finally:
        lock.close()
    try:
        assert len(set(pids)) == 3, f"connections not on three workers: {pids}"
        for i, c in enumerate(conns):  # many writes through every worker
            for k in range(5):
                r = _call(c, "POST", "/todos", {"title": f"{p} {i}.{k}", "done": k == 1})
                assert r.status == 201, r
                made[r.json()["id"]] = r.json()
        ids = sorted(made)
        assert len(ids) == 17
        for c in conns:  # every worker reads every write at once
            r = _call(c, "GET", f"/todos?q={p}&limit=100")
            assert r.status == 200, r
            assert r.json()["items"] == [made[i] for i in ids] and r.json()["total"] == 17
            for tid in ids:
                r = _call(c, "GET", f"/todos/{tid}")
                assert r.status == 200 and r.json() == made[tid], r
        for n, tid in enumerate(ids):  # each todo changed in one worker, read in another
            writer, reader = conns[n % 3], conns[(n + 1) % 3]
            r = _call(writer, "PATCH", f"/todos/{tid}", {"title": f"{p} changed {tid}"})
            assert r.status == 200, r
            r = _call(reader, "GET", f"/todos/{tid}")
            assert r.status == 200 and r.json()["title"] == f"{p} changed {tid}", r
        assert _call(conns[0], "DELETE", f"/todos/{ids[0]}").status == 204
        assert _call(conns[1], "GET", f"/todos/{ids[0]}").status == 404
        assert _call(conns[2], "GET", f"/todos?q={p}").json()["total"] == 16
    finally:
        for c in conns:
            c.close()


def test_data_survives_a_restart(spawn, tmp_path):
    db = tmp_path / "persist.db"
    first = spawn(workers=2, env=db_env(db))
    a = create(first, "survives", done=True)
    b = create(first, "also survives")
    first.stop()
    second = spawn(workers=2, env=db_env(db))
    assert second.get(f"/todos/{a['id']}").json() == a
    assert listing(second, "q=survives")["items"] == [a, b]
    assert create(second, "after restart")["id"] > b["id"]


def test_concurrent_posts_get_distinct_ids(spawn, tmp_path):
    s = spawn(workers=3, env=db_env(tmp_path / "concurrent.db"))
    p = prefix()
    results, errors = [], []
    lock = threading.Lock()

    def run(t):
        with s.session() as session:
            for k in range(15):
                try:
                    r = session.post(s.url("/todos"), json={"title": f"{p} {t}.{k}"}, timeout=10)
                    with lock:
                        if r.status_code == 201:
                            results.append(r.json())
                        else:
                            errors.append(f"{r.status_code} {r.text[:200]}")
                except Exception as e:  # noqa: BLE001 - every failure is recorded
                    with lock:
                        errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors[:5]
    ids = [t["id"] for t in results]
    assert len(ids) == 120 and len(set(ids)) == 120
    doc = listing(s, f"q={p}&limit=100")
    assert doc["total"] == 120
    assert {t["title"] for t in results} == {f"{p} {t}.{k}" for t in range(8) for k in range(15)}


def test_database_error_is_503_and_logged_once(spawn, tmp_path):
    db = tmp_path / "broken.db"
    s = spawn(workers=1, env=db_env(db))
    create(s, "before")
    with sqlite3.connect(str(db), isolation_level=None) as conn:
        conn.execute("DROP TABLE todos")
    conn.close()
    r = s.get("/todos")
    assert_problem(r, 503, instance="/todos", detail_contains="database unavailable")
    assert "no such table" not in r.text  # the reason goes to the log, not to the client
    assert s.log().count("no such table: todos") == 1, s.log_tail()
    # The failed connection was dropped: the next request opens a new one, table recreated.
    r = s.get("/todos")
    assert r.status_code == 200 and r.json()["total"] == 0, r.text


def test_default_db_path_is_relative_to_the_working_folder(spawn):
    s = spawn(workers=1)
    t = create(s, "default path")
    assert os.path.isfile(os.path.join(s.workdir, "data", "todo.db"))
    assert s.get(f"/todos/{t['id']}").json() == t


def test_missing_folders_of_db_path_are_created(spawn, tmp_path):
    db = tmp_path / "a" / "b" / "c" / "todo.db"
    s = spawn(workers=1, env=db_env(db))
    create(s, "nested")
    assert db.is_file()
    assert f"todo: database {db}" in s.log()


def test_unusable_db_path_stops_startup(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    env["NEXUS_PLUGINS_TODO_DB_PATH"] = "/dev/null/todo.db"
    out = subprocess.run(
        [NEXUS_BIN, "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--workers", "1",
         "--access-log", "off", "--plugins-dir", PLUGINS_DIR],
        capture_output=True, text=True, timeout=10, env=env, cwd=str(tmp_path))
    assert out.returncode != 0, out.stderr
    assert "todo" in out.stderr and "/dev/null/todo.db" in out.stderr, out.stderr
