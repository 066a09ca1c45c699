"""The database layer (<nexus/db.h>) on SQLite, through the dbkit test plugin.

dbkit (tests/plugins/dbkit) runs the SQL and parameters a test sends in a JSON body and
answers the rows, or nx_db_problem with the nx_db_error fields in X-Db-* headers. These tests
check what a plugin author is promised: typed parameters and getters, placeholders, errors
mapped to HTTP statuses, transactions, batches, timeouts, the pool, several workers writing
one file, and the database.url forms. The helpers at the top are shared with test_db_pg.py.
"""

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import NEXUS_BIN, PLUGINS_DIR, assert_problem, free_port, raw_request, wait_for

# ---- helpers (imported by test_db_pg.py) ------------------------------------------------


def st(sql, *params):
    """One statement for /dbkit/batch, /dbkit/tx and /dbkit/steps."""
    return {"sql": sql, "params": list(params)}


def blob(data):
    """A BLOB parameter."""
    return {"blob_b64": base64.b64encode(data).decode()}


def raw_text(data):
    """A TEXT parameter of arbitrary bytes (not necessarily UTF-8)."""
    return {"text_b64": base64.b64encode(data).decode()}


def q(srv, sql, *params, timeout=15, **extra):
    """POST /dbkit/query: the requests.Response."""
    body = {"sql": sql, "params": list(params), **extra}
    return srv.request("POST", "/dbkit/query", json=body, timeout=timeout)


def ok(resp):
    """The JSON body of a 200 answer; fails with the database error otherwise."""
    assert resp.status_code == 200, (
        f"{resp.status_code} {db_error(resp)} {resp.headers.get('x-db-message')!r} "
        f"{resp.text[:300]}")
    return resp.json()


def rows(srv, sql, *params):
    return ok(q(srv, sql, *params))["rows"]


def db_error(resp):
    """(kind, sqlstate) of a failed dbkit call, from its debug headers."""
    return resp.headers.get("x-db-error"), resp.headers.get("x-db-sqlstate")


def post(srv, path, body, timeout=15):
    return srv.request("POST", path, json=body, timeout=timeout)


def steps(srv, *ops, stop_on_error=False, timeout=15):
    """POST /dbkit/steps: the list of step outcomes."""
    return ok(post(srv, "/dbkit/steps", {"steps": list(ops), "stop_on_error": stop_on_error},
                   timeout=timeout))["steps"]


def op(name, sql=None, *params, **kw):
    d = {"op": name, **kw}
    if sql is not None:
        d["sql"] = sql
        d["params"] = list(params)
    return d


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - t0


def assert_db_problem(resp, status, kind, sqlstate=None):
    """A problem+json answer of nx_db_problem, with the error kind (and SQLSTATE) expected."""
    doc = assert_problem(resp, status)
    got_kind, got_state = db_error(resp)
    assert got_kind == kind, f"kind {got_kind!r} (sqlstate {got_state!r}), expected {kind!r}: " \
        f"{resp.headers.get('x-db-message')!r}"
    if sqlstate is not None:
        assert got_state == sqlstate, f"SQLSTATE {got_state!r}, expected {sqlstate!r}: " \
            f"{resp.headers.get('x-db-message')!r}"
    return doc


_WORKER_DEATH = re.compile(r'msg="worker \d+ .*(unexpectedly after|while draining)')


def worker_deaths(srv):
    """Lines of the master's log saying a worker ended on its own (src/server/master.c)."""
    return [ln for ln in srv.log().splitlines() if _WORKER_DEATH.search(ln)]


def run_bad_config(args, env, cwd, timeout=10):
    """Runs `nexus serve` expected to refuse its configuration: (exit status, stderr)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    e.update(env)
    cmd = [NEXUS_BIN, "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--workers",
           "1", "--plugins-dir", PLUGINS_DIR] + list(args)
    p = subprocess.Popen(cmd, cwd=str(cwd), env=e, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        p.communicate()
        raise AssertionError(f"{cmd} kept running with a bad database setting")
    return p.returncode, err.decode(errors="replace")


class Disconnecting:
    """Sends a dbkit request on a raw socket, to be closed while the handler waits."""

    def __init__(self, srv, path, body):
        self.sock = socket.create_connection((srv.host, srv.port), timeout=5)
        payload = json.dumps(body).encode()
        self.sock.sendall(raw_request("POST", path, headers=[("Content-Type",
                                                              "application/json")],
                                      body=payload))

    def close(self):
        self.sock.close()


# Values that must be stored and read back verbatim, never interpreted as SQL.
HOSTILE = [
    "'; DROP TABLE t; --",
    "1 OR 1=1",
    "' OR '1'='1",
    "$1",
    "?1 ?",
    "\\x00\\' \\\\",
    'double "quotes" and `backticks`',
    "/* not a comment */ -- nor this",
    "héllo wörld ✓ 日本語 🎉",
    "line1\nline2\r\n\ttab",
    "",
]

# ---- the server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(spawn_module):
    return spawn_module(workers=1, name="sqlite",
                        env={"NEXUS_DATABASE_URL": "sqlite:///db/dbkit.db"})


def test_backend_and_no_error_before_a_call(srv):
    info = srv.get("/dbkit/info").json()
    assert info == {"backend": "sqlite", "error_kind": "ok"}


def test_relative_url_is_relative_to_the_working_directory(srv):
    ok(q(srv, "CREATE TABLE IF NOT EXISTS here (x INTEGER)"))
    assert os.path.isfile(os.path.join(srv.workdir, "db", "dbkit.db"))


# ---- values --------------------------------------------------------------------------------


def test_typed_params_round_trip(srv):
    ok(q(srv, "CREATE TABLE types (i INTEGER, f REAL, t TEXT, b BLOB, flag BOOLEAN, n TEXT)"))
    data = bytes(range(256))
    r = ok(q(srv, "INSERT INTO types VALUES ($1, $2, $3, $4, $5, $6)",
             -9007199254740993, 1.5, "text", blob(data), True, None))
    assert r["affected"] == 1
    ok(q(srv, "INSERT INTO types VALUES ($1, $2, $3, $4, $5, $6)",
         9223372036854775807, -0.1, "", blob(b""), False, {"cstr": None}))
    got = ok(q(srv, "SELECT i, f, t, b, flag, n FROM types ORDER BY i"))
    assert got["columns"] == ["i", "f", "t", "b", "flag", "n"]
    assert got["rows"] == [
        {"i": -9007199254740993, "f": 1.5, "t": "text",
         "b": base64.b64encode(data).decode(), "flag": True, "n": None},
        {"i": 9223372036854775807, "f": -0.1, "t": "", "b": "", "flag": False, "n": None},
    ]
    assert got["types"][0] == ["int", "float", "text", "blob", "bool", "null"]
    assert got["affected"] == 0


def test_getters(srv):
    g = ok(post(srv, "/dbkit/get", {
        "sql": "SELECT 42 AS i, 2.75 AS f, 'word' AS t, x'00ff41' AS b, NULL AS n, "
               "'17' AS num_text, ' 3.5' AS real_text, 'yes' AS yes, 0 AS zero",
        "params": []}))
    assert g["nrows"] == 1 and g["ncols"] == 9
    v = {c["name"]: c for c in g["values"]}
    assert [c["index_by_name"] for c in g["values"]] == list(range(9))
    assert v["i"]["i64"] == 42 and v["i"]["f64"] == 42.0 and v["i"]["bool"] is True
    assert v["i"]["text"] == "42" and not v["i"]["is_null"]
    assert v["f"]["f64"] == 2.75 and v["f"]["i64"] == 2 and v["f"]["text"] == "2.75"
    assert v["t"]["text"] == "word" and v["t"]["blob_b64"] == base64.b64encode(b"word").decode()
    assert v["b"]["type"] == "blob" and v["b"]["blob_len"] == 3
    assert base64.b64decode(v["b"]["blob_b64"]) == b"\x00\xffA"
    assert v["n"] == {**v["n"], "is_null": True, "i64": 0, "f64": 0.0, "bool": False,
                      "text": None, "blob_b64": None, "blob_len": 0}
    assert v["num_text"]["i64"] == 17 and v["real_text"]["f64"] == 3.5
    assert v["yes"]["bool"] is True and v["zero"]["bool"] is False
    # Out of range: a NULL value, never a crash.
    for past in (g["col_past_end"], g["row_past_end"]):
        assert past["is_null"] and past["text"] is None and past["i64"] == 0
    assert g["row_json_past_end_is_null"] is True
    assert g["missing_col"] == -1
    assert g["row_json"]["t"] == "word"


def test_hostile_text_is_stored_verbatim(srv):
    ok(q(srv, "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)"))
    for s in HOSTILE:
        ok(q(srv, "INSERT INTO t (s) VALUES ($1)", s))
    got = [r["s"] for r in rows(srv, "SELECT s FROM t ORDER BY id")]
    assert got == HOSTILE
    # Searching with them finds exactly the row stored, never more.
    for s in HOSTILE:
        assert rows(srv, "SELECT count(*) AS n FROM t WHERE s = $1", s) == [{"n": 1}]
    assert rows(srv, "SELECT count(*) AS n FROM t") == [{"n": len(HOSTILE)}]


def test_nul_in_text(srv):
    # SQLite text may hold NUL bytes: stored and read back whole, or refused cleanly.
    ok(q(srv, "CREATE TABLE nul (s TEXT)"))
    r = q(srv, "INSERT INTO nul VALUES ($1)", "a\x00b")
    if r.status_code == 200:
        assert rows(srv, "SELECT s, length(CAST(s AS BLOB)) AS n FROM nul") == \
            [{"s": "a\x00b", "n": 3}]
    else:
        assert_db_problem(r, 500, "query")


def test_non_finite_floats_keep_their_column(srv):
    # Regression (src/db/db.c, value_json), the bug was: json_real() refuses infinities and NaN and
    # returns NULL, so json_object_set_new() drops the key: the column vanishes from the row.
    got = rows(srv, "SELECT 1e999 AS inf, -1e999 AS ninf, 1 AS one")
    assert set(got[0]) == {"inf", "ninf", "one"}, got


def test_text_that_is_not_utf8_stays_json(srv):
    r = ok(q(srv, "SELECT $1 AS s", raw_text(b"\xff\xfeok")))
    assert isinstance(r["rows"][0]["s"], str)


def test_a_single_statement_is_not_taken_for_two(spawn):
    # Regression (src/db/sqlite.c, prepare): `tail` pointed into the translated text, which
    # was freed before `tail` was read to look for a second statement. With glibc, free()
    # writes its list pointers over the first 16 bytes, so every statement shorter than
    # that was refused with 500 "one statement per call".
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL": "sqlite:///single.db"})
    for sql, params in [("SELECT 1", []), ("SELECT $1", [5]), ("SELECT 1 AS x", []),
                        ("SELECT 2 AS n, $1 AS p FROM (SELECT 1) WHERE 1 = 1", [3])]:
        r = q(s, sql, *params)
        assert r.status_code == 200, (sql, r.headers.get("x-db-message"))


# ---- placeholders --------------------------------------------------------------------------


def test_placeholder_reused_and_out_of_order(srv):
    assert rows(srv, "SELECT $2 AS a, $1 AS b, $1 + 1 AS c, $2 || $2 AS d", 10, "x") == \
        [{"a": "x", "b": 10, "c": 11, "d": "xx"}]


def test_placeholders_in_literals_and_comments_are_text(srv):
    got = rows(srv, "SELECT '$1' AS lit, \"$2\" AS ident, $1 AS p -- $3\n", "v")
    # "$2" in double quotes is an identifier in SQL; SQLite falls back to a string when no
    # such column exists. Neither it nor the comment is a parameter.
    assert got == [{"lit": "$1", "ident": "$2", "p": "v"}]
    assert rows(srv, "SELECT /* $9 */ $1 AS p", 5) == [{"p": 5}]


@pytest.mark.parametrize("sql,params", [
    ("SELECT $1 AS a, $2 AS b", [1]),          # too few
    ("SELECT $1 AS a", [1, 2]),                # too many
    ("SELECT 1 AS a", [1]),                    # none expected
    ("SELECT $0 AS a", [1]),                   # $0 does not exist
    ("SELECT 1; SELECT 2", []),                # two statements
])
def test_misuse_is_a_500_not_a_crash(srv, sql, params):
    r = q(srv, sql, *params)
    assert_db_problem(r, 500, "misuse")
    assert rows(srv, "SELECT 1 AS one") == [{"one": 1}]
    assert not worker_deaths(srv)


def test_right_count_after_a_wrong_one(srv):
    sql = "SELECT $1 AS a, $2 AS b"
    assert_db_problem(q(srv, sql, 1), 500, "misuse")
    assert rows(srv, sql, 1, 2) == [{"a": 1, "b": 2}]
    assert_db_problem(q(srv, sql, 1, 2, 3), 500, "misuse")
    assert rows(srv, sql, 3, 4) == [{"a": 3, "b": 4}]


def test_trailing_semicolon_is_one_statement(srv):
    assert rows(srv, "SELECT 7 AS n;") == [{"n": 7}]
    assert rows(srv, "SELECT 8 AS n ;  \n") == [{"n": 8}]


# ---- affected rows, errors -----------------------------------------------------------------


def test_affected_rows(srv):
    ok(q(srv, "CREATE TABLE aff (k INTEGER)"))
    for k in range(5):
        ok(q(srv, "INSERT INTO aff VALUES ($1)", k))
    assert ok(q(srv, "UPDATE aff SET k = k + 10 WHERE k >= $1", 2))["affected"] == 3
    assert ok(q(srv, "DELETE FROM aff WHERE k < $1", 100))["affected"] == 5
    assert ok(q(srv, "DELETE FROM aff"))["affected"] == 0
    assert ok(q(srv, "SELECT 1 AS x"))["affected"] == 0
    assert ok(q(srv, "INSERT INTO aff VALUES ($1)", 1, exec=True)) == {"ok": True}


@pytest.fixture(scope="module")
def rules(srv):
    ok(q(srv, "CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
    ok(q(srv, "CREATE TABLE rules (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, "
              "age INTEGER CHECK (age >= 0), parent INTEGER REFERENCES parent(id))"))
    ok(q(srv, "INSERT INTO parent VALUES (1)"))
    ok(q(srv, "INSERT INTO rules (email, age, parent) VALUES ($1, $2, $3)", "a@x", 1, 1))
    return srv


def test_unique_violation_is_409(rules):
    r = q(rules, "INSERT INTO rules (email) VALUES ($1)", "a@x")
    assert_db_problem(r, 409, "constraint", "23505")


def test_primary_key_violation_is_409(rules):
    r = q(rules, "INSERT INTO parent VALUES ($1)", 1)
    assert_db_problem(r, 409, "constraint", "23505")


def test_not_null_is_422(rules):
    r = q(rules, "INSERT INTO rules (email) VALUES ($1)", None)
    assert_db_problem(r, 422, "constraint", "23502")


def test_check_is_422(rules):
    r = q(rules, "INSERT INTO rules (email, age) VALUES ($1, $2)", "c@x", -1)
    assert_db_problem(r, 422, "constraint", "23514")


def test_foreign_key_is_422(rules):
    r = q(rules, "INSERT INTO rules (email, parent) VALUES ($1, $2)", "d@x", 99)
    assert_db_problem(r, 422, "constraint", "23503")


def test_syntax_error_is_500_without_the_sql(srv):
    secret = "SELEC secret_column_xyz FROM nowhere"
    r = q(srv, secret)
    doc = assert_db_problem(r, 500, "query")
    assert "secret_column_xyz" not in r.text and "SELEC" not in doc["detail"]
    assert doc["request_id"] in doc["detail"]
    # ... but the operator finds it in the log under the request id.
    assert wait_for(lambda: any(doc["request_id"] in ln and "SELEC" in ln
                                for ln in srv.log().splitlines()), 2)


def test_unknown_table_is_500(srv):
    assert_db_problem(q(srv, "SELECT * FROM no_such_table_dbkit"), 500, "query")


# ---- batches and transactions ----------------------------------------------------------------


def test_batch_results_in_order(srv):
    ok(q(srv, "CREATE TABLE b (k INTEGER PRIMARY KEY, v TEXT)"))
    r = ok(post(srv, "/dbkit/batch", {"statements": [
        st("INSERT INTO b VALUES ($1, $2)", 1, "one"),
        st("INSERT INTO b VALUES ($1, $2)", 2, "two"),
        st("SELECT v FROM b ORDER BY k"),
    ]}))
    res = r["results"]
    assert [x["affected"] for x in res[:2]] == [1, 1]
    assert res[2]["rows"] == [{"v": "one"}, {"v": "two"}]


def test_batch_stops_at_the_first_failure(srv):
    ok(q(srv, "CREATE TABLE bf (k INTEGER PRIMARY KEY)"))
    r = post(srv, "/dbkit/batch", {"statements": [
        st("INSERT INTO bf VALUES ($1)", 1),
        st("INSERT INTO bf VALUES ($1)", 1),
        st("INSERT INTO bf VALUES ($1)", 3),
    ]})
    assert_db_problem(r, 409, "constraint", "23505")
    # SQLite runs a batch statement by statement: the first one's result is kept and its
    # change stays, the third never ran.
    assert r.headers["x-batch-results"] == "1,0,0"
    assert rows(srv, "SELECT k FROM bf") == [{"k": 1}]


def test_transaction_commit_and_rollback(srv):
    ok(q(srv, "CREATE TABLE tx (k INTEGER PRIMARY KEY)"))
    ok(post(srv, "/dbkit/tx", {"statements": [st("INSERT INTO tx VALUES ($1)", 1),
                                              st("INSERT INTO tx VALUES ($1)", 2)],
                               "end": "commit"}))
    ok(post(srv, "/dbkit/tx", {"statements": [st("INSERT INTO tx VALUES ($1)", 3)],
                               "end": "rollback"}))
    assert rows(srv, "SELECT k FROM tx ORDER BY k") == [{"k": 1}, {"k": 2}]


def test_transaction_left_open_is_rolled_back(srv):
    ok(q(srv, "CREATE TABLE txo (k INTEGER PRIMARY KEY)"))
    ok(post(srv, "/dbkit/tx", {"statements": [st("INSERT INTO txo VALUES ($1)", 1)],
                               "end": "none"}))
    assert rows(srv, "SELECT count(*) AS n FROM txo") == [{"n": 0}]
    assert wait_for(lambda: "transaction left open" in srv.log(), 2)
    # The write lock went with it: a new transaction gets it at once.
    ok(post(srv, "/dbkit/tx", {"statements": [st("INSERT INTO txo VALUES ($1)", 2)],
                               "end": "commit"}))
    assert rows(srv, "SELECT k FROM txo") == [{"k": 2}]


def test_failed_statement_in_transaction_rolls_back_the_rest(srv):
    ok(q(srv, "CREATE TABLE txf (k INTEGER PRIMARY KEY)"))
    r = post(srv, "/dbkit/tx", {"statements": [st("INSERT INTO txf VALUES ($1)", 1),
                                               st("INSERT INTO txf VALUES ($1)", 1)],
                                "end": "commit"})
    assert_db_problem(r, 409, "constraint", "23505")
    assert r.headers["x-failed-statement"] == "1"
    assert rows(srv, "SELECT count(*) AS n FROM txf") == [{"n": 0}]


def test_transaction_misuse(srv):
    out = steps(srv, op("commit"), op("rollback"), op("begin"), op("begin"),
                op("query", "SELECT 1 AS one"), op("commit"), op("commit"))
    assert [s["ok"] for s in out] == [False, False, True, False, True, True, False]
    for i in (0, 1, 3, 6):
        assert out[i]["error"]["kind"] == "misuse", out[i]
    assert out[4]["result"]["rows"] == [{"one": 1}]


def test_statements_of_a_transaction_see_its_changes(srv):
    ok(q(srv, "CREATE TABLE txv (k INTEGER)"))
    out = steps(srv, op("begin"), op("exec", "INSERT INTO txv VALUES ($1)", 5),
                op("query", "SELECT count(*) AS n FROM txv"), op("rollback"),
                op("query", "SELECT count(*) AS n FROM txv"))
    assert all(s["ok"] for s in out), out
    assert out[2]["result"]["rows"] == [{"n": 1}]
    assert out[4]["result"]["rows"] == [{"n": 0}]


def test_batch_inside_a_transaction(srv):
    ok(q(srv, "CREATE TABLE txb (k INTEGER PRIMARY KEY)"))
    out = steps(srv, op("begin"),
                op("batch", statements=[st("INSERT INTO txb VALUES ($1)", 1),
                                        st("INSERT INTO txb VALUES ($1)", 2)]),
                op("rollback"))
    assert all(s["ok"] for s in out), out
    assert rows(srv, "SELECT count(*) AS n FROM txb") == [{"n": 0}]


# ---- time limits and the pool --------------------------------------------------------------

SLOW_CTE = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 2000000000) SELECT count(*) AS n FROM c")


def test_statement_timeout_is_504(spawn):
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL": "sqlite:///t.db",
                              "NEXUS_DATABASE_STATEMENT_TIMEOUT": "1s"})
    r, took = timed(q, s, SLOW_CTE)
    assert_db_problem(r, 504, "timeout")
    assert 0.8 < took < 2.5, f"statement_timeout 1s answered after {took:.2f}s"
    assert rows(s, "SELECT 1 AS one") == [{"one": 1}]


def test_handler_timeout_bounds_a_statement(spawn):
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL": "sqlite:///t.db",
                              "NEXUS_DATABASE_STATEMENT_TIMEOUT": "30s",
                              "NEXUS_SERVER_HANDLER_TIMEOUT": "1s"})
    r, took = timed(q, s, SLOW_CTE)
    assert_db_problem(r, 504, "timeout")
    assert took < 2.5, f"handler_timeout 1s answered after {took:.2f}s"
    assert rows(s, "SELECT 1 AS one") == [{"one": 1}]


def test_write_lock_wait_is_bounded(spawn):
    # One transaction holds SQLite's write lock and waits; a second connection of the same
    # worker waits for the lock (parked, with backoff) only until its statement timeout.
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL": "sqlite:///lock.db",
                              "NEXUS_DATABASE_STATEMENT_TIMEOUT": "1s"})
    ok(q(s, "CREATE TABLE lk (k INTEGER)"))
    holder = threading.Thread(target=steps, args=(s, op("begin"),
                                                  op("exec", "INSERT INTO lk VALUES ($1)", 1),
                                                  op("sleep", ms=1500), op("commit")))
    holder.start()
    try:
        time.sleep(0.3)
        r, took = timed(post, s, "/dbkit/tx", {"statements": [
            st("INSERT INTO lk VALUES ($1)", 2)], "end": "commit"})
        assert_db_problem(r, 503, "unavailable")
        assert 0.6 < took < 2, f"waited {took:.2f}s for the write lock"
        # Reads go on beside the writer (WAL).
        r, took = timed(q, s, "SELECT count(*) AS n FROM lk")
        assert ok(r)["rows"] == [{"n": 0}] and took < 0.5
    finally:
        holder.join(10)
    assert rows(s, "SELECT k FROM lk") == [{"k": 1}]


@pytest.fixture
def pool1(spawn):
    return spawn(workers=1, env={"NEXUS_DATABASE_URL": "sqlite:///t.db",
                                 "NEXUS_DATABASE_POOL_SIZE": "1",
                                 "NEXUS_DATABASE_MAX_OVERFLOW": "0",
                                 "NEXUS_DATABASE_POOL_TIMEOUT": "500ms"})


def test_pool_exhausted_is_503_with_retry_after(pool1):
    holder = threading.Thread(target=steps, args=(pool1, op("begin"), op("sleep", ms=1500),
                                                  op("commit")))
    holder.start()
    try:
        time.sleep(0.3)
        r, took = timed(q, pool1, "SELECT 1 AS one")
        assert_db_problem(r, 503, "unavailable")
        assert r.headers.get("retry-after") == "1"
        assert 0.4 < took < 1.3, f"pool_timeout 500ms answered after {took:.2f}s"
    finally:
        holder.join(10)
    assert rows(pool1, "SELECT 1 AS one") == [{"one": 1}]


def test_waiter_gets_the_connection_when_it_is_returned(pool1):
    holder = threading.Thread(target=steps, args=(pool1, op("begin"), op("sleep", ms=200),
                                                  op("commit")))
    holder.start()
    time.sleep(0.05)
    r, took = timed(q, pool1, "SELECT 1 AS one")
    holder.join(10)
    assert ok(r)["rows"] == [{"one": 1}]
    assert took < 0.5


def test_client_gone_releases_the_connection(pool1):
    # The handler holds the only connection in a transaction and sleeps; the client leaves.
    c = Disconnecting(pool1, "/dbkit/steps", {"stop_on_error": True, "steps": [
        op("begin"), op("sleep", ms=30000), op("commit")]})
    time.sleep(0.5)
    c.close()
    r = wait_for(lambda: (lambda x: x if x.status_code == 200 else None)(
        q(pool1, "SELECT 1 AS one")), 3, interval=0.1)
    assert r is not None, "the connection of a request whose client left was not returned"
    assert timed(q, pool1, "SELECT 1 AS one")[1] < 0.3


# ---- several workers on one file -----------------------------------------------------------


def test_concurrent_writers_across_workers(spawn, tmp_path):
    path = tmp_path / "shared" / "many.db"
    s = spawn(workers=4, env={"NEXUS_DATABASE_URL": f"sqlite:///{path}"})
    assert str(path).startswith("/")  # sqlite:////abs/path
    ok(q(s, "CREATE TABLE w (id INTEGER PRIMARY KEY, who TEXT, n INTEGER)"))
    ok(q(s, "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
    ok(q(s, "INSERT INTO counter VALUES (1, 0)"))
    threads, per = 16, 25
    failures = []
    pids = set()

    def writer(t):
        with s.session() as sess:
            for i in range(per):
                try:
                    r = sess.post(s.url("/dbkit/query"), timeout=30, json={
                        "sql": "INSERT INTO w (who, n) VALUES ($1, $2)",
                        "params": [f"t{t}", i]})
                    if r.status_code != 200:
                        failures.append((r.status_code, r.headers.get("x-db-message")))
                    r = sess.post(s.url("/dbkit/tx"), timeout=30, json={"statements": [
                        st("UPDATE counter SET n = n + 1 WHERE id = 1")], "end": "commit"})
                    if r.status_code != 200:
                        failures.append((r.status_code, r.headers.get("x-db-message")))
                    pids.add(sess.get(s.url("/test/pid"), timeout=5).text)
                except requests.RequestException as e:
                    failures.append(repr(e))

    ts = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not failures, f"{len(failures)} failed writes, e.g. {failures[:5]}"
    assert rows(s, "SELECT count(*) AS n FROM w") == [{"n": threads * per}]
    assert rows(s, "SELECT n FROM counter") == [{"n": threads * per}]
    assert "database is locked" not in s.log()
    assert path.is_file()
    assert not worker_deaths(s)


def test_cold_start_many_first_connections(spawn):
    # Regression (src/db/sqlite.c, sq_script): every worker opens its first connections at
    # once on a new file; compiling "PRAGMA journal_mode = WAL" reads the schema and may
    # find it locked by another process switching the file to WAL. sqlite3_prepare_v2 then
    # answered SQLITE_BUSY, which failed at once (503 "database is locked") instead of
    # waiting with the same backoff as a busy step.
    s = spawn(workers=4, env={"NEXUS_DATABASE_URL": "sqlite:///cold.db"})
    n = 100
    barrier = threading.Barrier(n)
    results = []

    def first_use(i):
        with s.session() as sess:
            barrier.wait(5)
            r = sess.post(s.url("/dbkit/query"), timeout=30,
                          json={"sql": "SELECT $1 AS i", "params": [i]})
            results.append((r.status_code, r.headers.get("x-db-message")))

    ts = [threading.Thread(target=first_use, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    bad = [r for r in results if r[0] != 200]
    assert len(results) == n and not bad, f"{len(bad)} of {n} failed: {bad[:3]}"


# ---- configuration -------------------------------------------------------------------------


def test_database_path_variable(spawn, tmp_path):
    path = tmp_path / "viapath" / "p.db"
    s = spawn(workers=1, env={"NEXUS_DATABASE_PATH": str(path)})
    ok(q(s, "CREATE TABLE x (k INTEGER)"))
    assert path.is_file()


def test_database_url_alias_and_memory(spawn):
    s = spawn(workers=1, env={"DATABASE_URL": "sqlite:///:memory:"})
    ok(q(s, "CREATE TABLE m (k INTEGER)"))
    ok(q(s, "INSERT INTO m VALUES ($1)", 1))
    assert rows(s, "SELECT count(*) AS n FROM m")[0]["n"] in (0, 1)  # one memory db each


def test_ready_checks_the_database(srv):
    r = srv.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["database"] == "ok"


def test_unopenable_file_is_503_and_not_ready(spawn, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    s = spawn(workers=1, env={"NEXUS_DATABASE_PATH": str(blocker / "sub" / "x.db")})
    r, took = timed(q, s, "SELECT 1")
    assert_db_problem(r, 503, "unavailable")
    assert took < 1
    r = s.get("/ready")
    assert_problem(r, 503, detail_contains="database")
    assert not worker_deaths(s)


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "nosuchdb://x", "sqlite", "://"])
def test_bad_url_refuses_to_start(tmp_path, url):
    rc, err = run_bad_config([], {"NEXUS_DATABASE_URL": url}, tmp_path)
    assert rc == 78, f"exit {rc}: {err}"
    assert "database.url" in err and "NEXUS_DATABASE_URL" in err, err


def test_bad_url_in_the_config_file_names_file_and_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("database:\n  pool_size: 2\n  url: \"mysqlx://nope\"\n")
    rc, err = run_bad_config(["--config", str(cfg)], {}, tmp_path)
    assert rc == 78, f"exit {rc}: {err}"
    assert "database.url" in err and "c.yaml" in err, err
