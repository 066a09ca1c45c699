"""The bundled todo plugin: a JSON API over the server's database (<nexus/db.h>).

Every test that talks to a server runs once per backend: SQLite (a file of its own),
PostgreSQL and MariaDB (a fresh database of this module on the session's servers, see
conftest's pg_url / mysql_url). The schema comes from the plugin's migrations, applied with
`nexus migrate` before the servers start, as an operator would. Tests sharing the module's
server make their titles unique (a random prefix) and read back through `?q=prefix`, so
they never see each other's rows.

The helpers at the top (Database, fresh_database, migrate) are shared with
test_techempower.py.
"""

import datetime
import json
import os
import re
import sqlite3
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest
import requests

from conftest import (NEXUS_BIN, PLUGINS_DIR, allow_set, assert_common_headers, assert_problem,
                      call_json, connections_on_distinct_workers, free_port, raw_request,
                      wait_for)

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JSON = {"Content-Type": "application/json"}
BACKENDS = ["sqlite", "postgresql", "mysql"]

# ---- databases (shared with test_techempower.py) -------------------------------------------


class Database:
    """A fresh database of one backend: `env` points nexus at it, `rows` reads it directly
    (SQL with ? placeholders), `drop` removes it."""

    def __init__(self, backend, env, connect, drop=None, server=None):
        self.backend = backend
        self.env = env
        self._connect = connect
        self._drop = drop
        self.server = server  # the conftest DbServer (not for SQLite)

    def rows(self, sql, *args):
        if self.backend != "sqlite":
            sql = sql.replace("?", "%s")
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute(sql, args)
            out = [tuple(r) for r in cur.fetchall()] if cur.description else []
            conn.commit()
            return out
        finally:
            conn.close()

    def execute(self, sql, *args):
        self.rows(sql, *args)

    def drop(self):
        if self._drop:
            self._drop()


def _sqlite_database(path):
    return Database("sqlite", {"NEXUS_DATABASE_TYPE": "sqlite", "NEXUS_DATABASE_PATH": str(path)},
                    lambda: sqlite3.connect(str(path), timeout=10))


def _admin(server, sql):
    """Runs one statement on the session's database server, as its administrator."""
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def fresh_database(request, backend, tmp_path_factory, tag):
    """A new, empty database of backend for one module (or test). For PostgreSQL and
    MariaDB it is created on the session's server and dropped by Database.drop."""
    if backend == "sqlite":
        return _sqlite_database(tmp_path_factory.mktemp(tag) / "nexus.db")
    name = f"nx_{tag}_{uuid.uuid4().hex[:10]}"
    pg = backend == "postgresql"
    server = request.getfixturevalue("_pg_server" if pg else "_mysql_server")
    _admin(server, f"CREATE DATABASE {name}" + ("" if pg else " CHARACTER SET utf8mb4"))
    u = urllib.parse.urlsplit(server.url)
    url = urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, ""))
    if pg:
        import psycopg2

        def connect():
            return psycopg2.connect(url, connect_timeout=5)
    else:
        def connect():
            c = server.connect()
            c.select_db(name)
            return c

    force = " WITH (FORCE)" if pg else ""
    return Database(backend, {"NEXUS_DATABASE_URL": url}, connect,
                    lambda: _admin(server, f"DROP DATABASE IF EXISTS {name}{force}"), server)


def clean_env(extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    env.update(extra)
    return env


def migrate(db, cwd):
    """`nexus migrate` with the bundled plugins: their tables, as an operator creates them."""
    out = subprocess.run([NEXUS_BIN, "migrate", "--plugins-dir", PLUGINS_DIR],
                         capture_output=True, text=True, timeout=120, env=clean_env(db.env),
                         cwd=str(cwd))
    assert out.returncode == 0, f"nexus migrate exited {out.returncode}\n{out.stdout}{out.stderr}"
    return out


@pytest.fixture(scope="module", params=BACKENDS)
def database(request, tmp_path_factory):
    """This module's database, migrated, on each backend in turn."""
    db = fresh_database(request, request.param, tmp_path_factory, "todo")
    migrate(db, tmp_path_factory.mktemp("migrate"))
    yield db
    db.drop()


@pytest.fixture(scope="module")
def srv(spawn_module, database):
    s = spawn_module(workers=2, name=f"todo-{database.backend}", env=database.env)
    yield s
    s.stop()  # before the database is dropped


@pytest.fixture
def sqlite_db(request, tmp_path_factory):
    """A SQLite database of the test's own, migrated: for the tests that break it or that
    do not depend on the backend."""
    db = fresh_database(request, "sqlite", tmp_path_factory, "own")
    migrate(db, tmp_path_factory.mktemp("migrate"))
    return db


# ---- helpers -------------------------------------------------------------------------------

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


def q(text):
    return urllib.parse.quote(text, safe="")


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
    todo = create(srv, "écrire le rapport ✓ 🎉", done=True)
    assert todo["done"] is True and todo["title"] == "écrire le rapport ✓ 🎉"
    assert srv.get(f"/todos/{todo['id']}").json() == todo


def test_the_row_is_stored_as_answered(srv, database):
    t = create(srv, "stored", done=True)
    (row,) = database.rows("SELECT title, done, created_at, updated_at FROM todos WHERE id = ?",
                           t["id"])
    assert row[0] == "stored" and bool(row[1]) is True
    assert row[2] == t["created_at"] and row[3] == t["updated_at"]


def test_title_limit_counts_characters_after_trimming(srv):
    assert create(srv, "x" * 200)["title"] == "x" * 200
    assert create(srv, "é" * 200)["title"] == "é" * 200  # 400 bytes, 200 characters
    assert create(srv, "🎉" * 200)["title"] == "🎉" * 200  # 800 bytes
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
    ({"title": "a", "created_at": "2020-01-01T00:00:00.000Z"}, 'unknown field "created_at"'),
    ([{"title": "a"}], "body must be a JSON object"),
    ('"just a string"', "body must be a JSON object"),
    ("42", "body must be a JSON object"),
    ("null", "body must be a JSON object"),
])
def test_create_validation(srv, body, detail):
    assert_problem(post(srv, body), 422, instance="/todos", detail_contains=detail)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"title": "a",}', b"not json", b'{"title": "\xff"}',
                                 b'{"title": "a", "title": "b"}', b'{"title": "a\\u0000b"}'])
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
    for path in ("/todos/9223372036854775807", "/todos/9223372036854775808",
                 "/todos/99999999999999999999999"):
        assert_problem(srv.get(path), 404, instance=path)


def test_non_integer_id_is_404(srv):
    assert_problem(srv.get("/todos/abc"), 404, instance="/todos/abc")


# ---- hostile text: stored verbatim, searched as plain text ---------------------------------

HOSTILE_TITLES = [
    "'); DROP TABLE todos; --",
    "\" OR \"1\"=\"1",
    "' OR 1=1 --",
    "Robert'); DELETE FROM todos WHERE ('1'='1",
    "back\\slash \\' \\\" \\\\ \\%",
    "50% off_sale! !! !%",
    "$1 $2 ? ?1 :name @x %s",
    "/* comment */ -- line # hash",
    "`backtick` [bracket] {brace}",
    "<script>alert(1)</script> &amp;",
    "ünïcødé 🎉 ✓ 𝄞",
]


@pytest.mark.parametrize("text", HOSTILE_TITLES)
def test_hostile_titles_are_stored_verbatim_and_found(srv, database, text):
    p = prefix()
    t = create(srv, f"{p} {text}")
    assert t["title"] == f"{p} {text}"
    assert srv.get(f"/todos/{t['id']}").json() == t
    assert database.rows("SELECT title FROM todos WHERE id = ?", t["id"]) == [(f"{p} {text}",)]
    # The whole title, and its hostile part alone with the prefix, find exactly this todo.
    assert listing(srv, "q=" + q(f"{p} {text}"))["items"] == [t]
    assert [x["id"] for x in listing(srv, "limit=100&q=" + q(text))["items"]].count(t["id"]) == 1


def test_q_wildcards_are_literal(srv):
    p = prefix()
    pct = create(srv, f"{p} 50% off")
    create(srv, f"{p} 500 off")
    under = create(srv, f"{p} a_b")
    create(srv, f"{p} axb")
    bang = create(srv, f"{p} wow! yes")
    create(srv, f"{p} wow yes")
    assert listing(srv, f"q={p}%2050%25")["items"] == [pct]
    assert listing(srv, f"q={p}%20a_b")["items"] == [under]
    assert listing(srv, f"q={p}%20wow!")["items"] == [bang]
    assert listing(srv, f"q={q(p + ' 50% o')}")["items"] == [pct]
    assert listing(srv, f"q={q(p + ' %')}")["total"] == 0  # a wildcard would match all six
    assert listing(srv, f"q={q(p + ' _')}")["total"] == 0


def test_q_is_a_bound_parameter(srv):
    p = prefix()
    quoted = create(srv, f"{p} it's \"quoted\"; DROP TABLE todos; --")
    assert listing(srv, f"q={p}%20it's")["items"] == [quoted]
    assert listing(srv, "q=" + q(p + "' OR 1=1 --"))["total"] == 0
    assert listing(srv, "q=" + q(p + "%' OR '1'='1"))["total"] == 0
    assert srv.get(f"/todos/{quoted['id']}").json() == quoted


# ---- list: shape, pagination, filters, order -----------------------------------------------

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
    doc = listing(srv, f"q={p}&limit=1&offset=24")
    assert [t["id"] for t in doc["items"]] == made[24:] and doc["total"] == 25
    assert len(listing(srv, "limit=100")["items"]) <= 100


def test_a_page_past_the_end_still_counts(srv):
    p = prefix()
    for i in range(3):
        create(srv, f"{p} {i}", done=i == 0)
    for offset in (3, 4, 1000, 9223372036854775807):
        doc = listing(srv, f"q={p}&limit=100&offset={offset}")
        assert doc == {"items": [], "total": 3, "limit": 100, "offset": offset}
    assert listing(srv, f"q={p}&done=true&offset=5")["total"] == 1
    assert listing(srv, f"q={p}-nothing&offset=5")["total"] == 0
    assert listing(srv, f"q={p}-nothing")["total"] == 0


def test_filters_done_and_q(srv):
    p = prefix()
    a = create(srv, f"{p} Write report", done=True)
    b = create(srv, f"{p} write tests")
    c = create(srv, f"{p} ship it", done=False)
    assert listing(srv, f"q={p}&done=true")["items"] == [a]
    assert listing(srv, f"q={p}&done=false")["items"] == [b, c]
    assert listing(srv, f"q={p}")["total"] == 3
    # q is a substring, ASCII case-insensitive, combined with done.
    assert listing(srv, f"q={p}%20WRITE")["items"] == [a, b]
    assert listing(srv, f"q={p.upper()}%20write")["items"] == [a, b]
    assert listing(srv, f"q={p}%20write&done=false")["items"] == [b]
    assert listing(srv, f"q={p}%20nothing")["total"] == 0
    # Counted with the same filters as the page.
    doc = listing(srv, f"q={p}&done=false&limit=1")
    assert doc["items"] == [b] and doc["total"] == 2


def test_order(srv):
    p = prefix()
    made = []
    for i in range(4):
        made.append(create(srv, f"{p} {i}"))
        time.sleep(0.002)  # distinct created_at (millisecond precision)
    ids = [t["id"] for t in made]
    for order, expected in (("id", ids), ("-id", ids[::-1]), ("created_at", ids),
                            ("-created_at", ids[::-1])):
        doc = listing(srv, f"q={p}&order={order}")
        assert [t["id"] for t in doc["items"]] == expected, order
    doc = listing(srv, f"q={p}&order=-created_at&limit=2&offset=1")
    assert [t["id"] for t in doc["items"]] == ids[::-1][1:3] and doc["total"] == 4


@pytest.mark.parametrize("query,name", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=abc", "limit"), ("limit=-1", "limit"),
    ("limit=", "limit"), ("limit=1.5", "limit"), ("limit=%2010", "limit"),
    ("offset=-1", "offset"), ("offset=x", "offset"), ("offset=", "offset"),
    ("offset=9223372036854775808", "offset"), ("offset=99999999999999999999", "offset"),
    ("done=yes", "done"), ("done=1", "done"), ("done=", "done"), ("done=TRUE", "done"),
    ("q=" + "x" * 201, "q"), ("q=" + "%C3%A9" * 201, "q"),
    ("order=title", "order"), ("order=", "order"), ("order=ID", "order"),
    ("order=id;%20DROP%20TABLE%20todos", "order"),
])
def test_list_bad_query_is_422_naming_the_parameter(srv, query, name):
    r = srv.get("/todos?" + query)
    doc = assert_problem(r, 422, instance="/todos")
    assert doc["detail"].startswith(name + " "), doc


def test_q_of_200_characters_is_accepted(srv):
    t = create(srv, "ê" * 200)
    assert t in listing(srv, "limit=100&q=" + "ê" * 200)["items"]


def test_head_todos(srv):
    create(srv, "for HEAD")
    get = srv.get("/todos?limit=1")
    with srv.raw() as c:
        c.send(raw_request("HEAD", "/todos?limit=1"))
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


def test_put_with_the_same_values_answers_the_row(srv):
    t = create(srv, "same", done=True)
    r = send(srv, "PUT", f"/todos/{t['id']}", {"title": "same", "done": True})
    assert r.status_code == 200, r.text
    assert {k: v for k, v in r.json().items() if k != "updated_at"} == \
        {k: v for k, v in t.items() if k != "updated_at"}


@pytest.mark.parametrize("body,detail", [
    ({"title": "a"}, "done is required"),
    ({"done": True}, "title is required"),
    ({}, "title is required"),
    ({"title": "", "done": True}, "title must not be empty"),
    ({"title": "a", "done": "no"}, "done must be a boolean"),
    ({"title": "a" * 201, "done": True}, "title must be at most 200 characters"),
    ({"title": "a", "done": True, "created_at": "x"}, 'unknown field "created_at"'),
    ([], "body must be a JSON object"),
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
    r = send(srv, "PATCH", path, {"done": False})
    assert r.json()["done"] is False and r.json()["title"] == "patched"
    r = send(srv, "PATCH", path, {"title": "both", "done": True},
             headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "both" and r.json()["done"] is True
    assert r.json()["created_at"] == t["created_at"]
    assert srv.get(path).json() == r.json()


@pytest.mark.parametrize("body,status,detail", [
    ({}, 422, "nothing to update"),
    ({"title": None}, 422, "title must be a string"),
    ({"title": "z" * 201}, 422, "title must be at most 200 characters"),
    ({"done": "yes"}, 422, "done must be a boolean"),
    ({"done": None}, 422, "done must be a boolean"),
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
        r = send(srv, method, path, {"title": "a", "done": True},
                 headers={"Content-Type": "text/plain"})
        assert_problem(r, 415, instance=path)


def test_update_unknown_is_404(srv):
    for method, body in (("PUT", {"title": "a", "done": True}), ("PATCH", {"done": True})):
        r = send(srv, method, "/todos/987654321", body)
        assert_problem(r, 404, instance="/todos/987654321",
                       detail_contains="no todo with id 987654321")


def test_update_of_a_deleted_todo_is_404(srv):
    t = create(srv, "deleted, then patched")
    assert srv.request("DELETE", f"/todos/{t['id']}").status_code == 204
    r = send(srv, "PATCH", f"/todos/{t['id']}", {"done": True})
    assert_problem(r, 404, instance=f"/todos/{t['id']}")


def test_delete(srv, database):
    t = create(srv, "delete me")
    path = f"/todos/{t['id']}"
    with srv.raw() as c:
        c.send(raw_request("DELETE", path))
        r = c.read_response("DELETE")
    assert r.status == 204 and r.body == b""
    assert_common_headers(r)
    assert_problem(srv.get(path), 404, instance=path)
    assert database.rows("SELECT id FROM todos WHERE id = ?", t["id"]) == []
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
    assert r.status_code == 200 and r.json()["checks"]["database"] == "ok", r.text


# ---- several workers, restarts, concurrency, failures -------------------------------------

def test_every_worker_sees_every_write(spawn, database):
    s = spawn(workers=3, env=database.env)
    s.wait_workers(3)
    conns = connections_on_distinct_workers(s, 3)
    try:
        p = prefix()
        made = {}
        for i, (c, _) in enumerate(conns):
            for k in range(4):
                r = call_json(c, "POST", "/todos", {"title": f"{p} {i}.{k}", "done": k == 1})
                assert r.status == 201, r
                made[r.json()["id"]] = r.json()
        ids = sorted(made)
        for c, _ in conns:  # every worker reads every write at once
            r = call_json(c, "GET", f"/todos?q={p}&limit=100")
            assert r.status == 200, r
            assert r.json()["items"] == [made[i] for i in ids]
            assert r.json()["total"] == len(ids)
        for n, tid in enumerate(ids):  # each todo changed in one worker, read in another
            writer, reader = conns[n % len(conns)][0], conns[(n + 1) % len(conns)][0]
            r = call_json(writer, "PATCH", f"/todos/{tid}", {"title": f"{p} changed {tid}"})
            assert r.status == 200, r
            r = call_json(reader, "GET", f"/todos/{tid}")
            assert r.status == 200 and r.json()["title"] == f"{p} changed {tid}", r
        assert call_json(conns[0][0], "DELETE", f"/todos/{ids[0]}").status == 204
        assert call_json(conns[-1][0], "GET", f"/todos/{ids[0]}").status == 404
    finally:
        for c, _ in conns:
            c.close()


def test_reads_come_from_the_shared_cache_and_writes_invalidate_them(spawn, database):
    """A read is cached in the instance's shared cache: the next read of it, on any worker,
    is a hit. A write on one worker makes every cached answer stale on every worker at
    once (the generation in the keys), so no worker ever serves the old value."""
    s = spawn(workers=2, env=database.env)
    s.wait_workers(2)
    (a, _), (b, _) = connections_on_distinct_workers(s, 2)
    try:
        p = prefix()
        tid = call_json(a, "POST", "/todos", {"title": f"{p} first"}).json()["id"]
        r1 = call_json(a, "GET", f"/todos/{tid}")
        assert r1.status == 200 and r1.headers.get("x-cache") == "miss", r1
        r2 = call_json(b, "GET", f"/todos/{tid}")  # the other worker: the same entry
        assert r2.status == 200 and r2.headers.get("x-cache") == "hit", r2
        assert r2.json() == r1.json()
        listed = call_json(a, "GET", f"/todos?q={p}")
        assert listed.headers.get("x-cache") == "miss"
        assert call_json(b, "GET", f"/todos?q={p}").headers.get("x-cache") == "hit"

        assert call_json(b, "PATCH", f"/todos/{tid}", {"title": f"{p} second"}).status == 200
        r3 = call_json(a, "GET", f"/todos/{tid}")
        assert r3.headers.get("x-cache") == "miss" and r3.json()["title"] == f"{p} second", r3
        r4 = call_json(b, "GET", f"/todos?q={p}")
        assert r4.headers.get("x-cache") == "miss", r4
        assert [t["title"] for t in r4.json()["items"]] == [f"{p} second"]

        assert call_json(a, "DELETE", f"/todos/{tid}").status == 204
        assert call_json(b, "GET", f"/todos/{tid}").status == 404
        assert call_json(a, "GET", f"/todos?q={p}").json()["total"] == 0
    finally:
        a.close()
        b.close()


def test_cache_ttl_zero_turns_the_cache_off(spawn, sqlite_db):
    s = spawn(workers=1, env={**sqlite_db.env, "NEXUS_PLUGINS_TODO_CACHE_TTL": "0"})
    tid = requests.post(s.url("/todos"), json={"title": "uncached"}, timeout=10).json()["id"]
    for _ in range(2):
        r = s.get(f"/todos/{tid}")
        assert r.status_code == 200 and "x-cache" not in r.headers, r.headers


def test_a_write_waits_for_another_writer_on_sqlite(spawn, sqlite_db):
    """SQLite has one writer at a time across the worker processes: a create that finds
    the file locked waits (parked, not blocking its worker) and lands once it is free."""
    s = spawn(workers=1, env=sqlite_db.env)
    lock = sqlite3.connect(sqlite_db.env["NEXUS_DATABASE_PATH"], isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        with s.raw(timeout=15) as c:
            c.send(raw_request("POST", "/todos", headers=[("Content-Type", "application/json")],
                               body=json.dumps({"title": "waited"})))
            time.sleep(0.3)
            # Meanwhile the same worker still serves reads (WAL: readers never wait).
            assert listing(s, "q=waited")["total"] == 0
            lock.execute("COMMIT")
            r = c.read_response("POST")
        assert r.status == 201, r
        assert listing(s, "q=waited")["items"] == [r.json()]
    finally:
        lock.close()


def test_data_survives_a_restart(spawn, database):
    p = prefix()
    first = spawn(workers=2, env=database.env)
    a = create(first, f"{p} survives", done=True)
    b = create(first, f"{p} also survives")
    first.stop()
    second = spawn(workers=2, env=database.env)
    assert second.get(f"/todos/{a['id']}").json() == a
    assert listing(second, f"q={p}")["items"] == [a, b]
    assert create(second, "after restart")["id"] > b["id"]


def test_concurrent_creates_all_land_with_distinct_ids(spawn, database):
    s = spawn(workers=3, env=database.env)
    p = prefix()
    results, errors = [], []
    lock = threading.Lock()

    def run(t):
        with s.session() as session:
            for k in range(15):
                try:
                    r = session.post(s.url("/todos"), json={"title": f"{p} {t}.{k}"}, timeout=20)
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
        t.join(timeout=60)
    assert not errors, errors[:5]
    ids = [t["id"] for t in results]
    assert len(ids) == 120 and len(set(ids)) == 120
    assert listing(s, f"q={p}&limit=100")["total"] == 120
    assert {t["title"] for t in results} == {f"{p} {t}.{k}" for t in range(8) for k in range(15)}
    stored = database.rows("SELECT id, title FROM todos WHERE title LIKE ?", p + " %")
    assert sorted(stored) == sorted((t["id"], t["title"]) for t in results)


def test_concurrent_patches_of_one_todo_lose_no_field(spawn, database):
    """PATCH is one statement: a title change and a done change racing on one row both
    land, neither overwrites the other's field with a stale value."""
    s = spawn(workers=3, env=database.env)
    for _ in range(5):
        t = create(s, "race")
        path = f"/todos/{t['id']}"
        barrier = threading.Barrier(2)
        out = []

        def patch(body):
            barrier.wait()
            out.append(send(s, "PATCH", path, body).status_code)

        threads = [threading.Thread(target=patch, args=(b,))
                   for b in ({"title": "raced"}, {"done": True})]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=30)
        assert out == [200, 200]
        got = s.get(path).json()
        assert got["title"] == "raced" and got["done"] is True, got


def test_database_error_is_a_problem_and_logged_not_sent(spawn, sqlite_db):
    db = sqlite_db
    s = spawn(workers=1, env=db.env)
    create(s, "before")
    db.execute("DROP TABLE todos")
    r = s.get("/todos")
    assert_problem(r, 500, instance="/todos", detail_contains=r.headers["X-Request-ID"])
    assert "no such table" not in r.text  # the reason goes to the log, not to the client
    assert wait_for(lambda: "no such table: todos" in s.log(), 5), s.log_tail()
    for method, path, body in (("POST", "/todos", {"title": "x"}), ("GET", "/todos/1", None),
                               ("PATCH", "/todos/1", {"done": True}),
                               ("DELETE", "/todos/1", None)):
        r = send(s, method, path, body) if body is not None else s.request(method, path)
        assert_problem(r, 500, instance=path)


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_database_down_is_503_and_recovers(spawn, request, tmp_path_factory, backend):
    db = fresh_database(request, backend, tmp_path_factory, "outage")
    try:
        migrate(db, tmp_path_factory.mktemp("migrate"))
        s = spawn(workers=1, env=db.env)
        t = create(s, "before the outage")
        server = request.getfixturevalue({"postgresql": "pg_server",
                                          "mysql": "mysql_server"}[backend])
        server.stop()
        try:
            r = s.get(f"/todos/{t['id']}")
            assert_problem(r, 503, instance=f"/todos/{t['id']}")
            assert r.headers.get("Retry-After") == "1"
            assert_problem(post(s, {"title": "during"}), 503, instance="/todos")
        finally:
            server.start()
        assert wait_for(lambda: s.get(f"/todos/{t['id']}").status_code == 200, 20), s.log_tail()
        assert s.get(f"/todos/{t['id']}").json() == t
        assert create(s, "after the outage")["id"] > t["id"]
    finally:
        db.drop()


def test_without_migrations_the_routes_fail_cleanly(spawn, request, tmp_path_factory):
    db = fresh_database(request, "sqlite", tmp_path_factory, "bare")
    s = spawn(workers=1, env=db.env)
    assert_problem(s.get("/todos"), 500, instance="/todos")
    assert_problem(post(s, {"title": "x"}), 500, instance="/todos")
    assert s.get("/health").status_code == 200


# ---- migrations and settings ---------------------------------------------------------------

def test_migrations_create_the_table_once(sqlite_db, tmp_path):
    db = sqlite_db
    assert db.rows("SELECT count(*) FROM todos") == [(0,)]
    migrate(db, tmp_path)  # nothing pending: no error, nothing run again
    (row,) = db.rows("SELECT count(*) FROM schema_migrations WHERE plugin = 'todo'")
    assert row[0] >= 1


def test_page_size_settings(spawn, sqlite_db):
    s = spawn(workers=1, env={**sqlite_db.env, "NEXUS_PLUGINS_TODO_PAGE_SIZE": "3",
                              "NEXUS_PLUGINS_TODO_MAX_PAGE_SIZE": "5"})
    p = prefix()
    for i in range(6):
        create(s, f"{p} {i}")
    doc = listing(s, f"q={p}")
    assert doc["limit"] == 3 and len(doc["items"]) == 3 and doc["total"] == 6
    assert len(listing(s, f"q={p}&limit=5")["items"]) == 5
    doc = assert_problem(s.get("/todos?limit=6"), 422, instance="/todos")
    assert doc["detail"] == "limit must be an integer from 1 to 5"


@pytest.mark.parametrize("env,needle", [
    ({"NEXUS_PLUGINS_TODO_PAGE_SIZE": "0"}, "plugins.todo.page_size"),
    ({"NEXUS_PLUGINS_TODO_PAGE_SIZE": "101"}, "plugins.todo.page_size"),
    ({"NEXUS_PLUGINS_TODO_MAX_PAGE_SIZE": "1001"}, "plugins.todo.max_page_size"),
    ({"NEXUS_PLUGINS_TODO_MAX_PAGE_SIZE": "10"}, "plugins.todo.page_size"),
    ({"NEXUS_PLUGINS_TODO_PAGE_SIZE": "many"}, "NEXUS_PLUGINS_TODO_PAGE_SIZE"),
    ({"NEXUS_PLUGINS_TODO_DB_PATH": "/tmp/todo.db"}, "NEXUS_PLUGINS_TODO_DB_PATH"),
])
def test_bad_settings_stop_startup(tmp_path, env, needle):
    out = subprocess.run(
        [NEXUS_BIN, "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--workers", "1",
         "--access-log", "off", "--plugins-dir", PLUGINS_DIR],
        capture_output=True, text=True, timeout=10, env=clean_env(env), cwd=str(tmp_path))
    assert out.returncode != 0, out.stderr
    assert needle in out.stderr, out.stderr
