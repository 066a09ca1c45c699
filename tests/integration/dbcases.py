"""Helpers and backend-independent cases of the database tests (test_db_*.py).

dbkit (tests/plugins/dbkit) runs the SQL and parameters a test sends in a JSON body and
answers the rows, or nx_db_problem with the nx_db_error fields in X-Db-* headers. The test_*
functions here check promises of <nexus/db.h> written once for several backends, the SQL that
differs between them taken from the module's DIALECT. Each test_db_<backend>.py imports the
ones it runs and pytest collects them there, with that module's fixtures:

  srv      a server (one worker) on the module's database, shared by the module's tests
  pool1    a server whose worker has one connection (no overflow) and a 500ms pool_timeout
  DIALECT  (a module constant, not a fixture) the SQL and answers that differ per backend

and these fixtures of this file, which the module imports as well: `dialect` (its DIALECT)
and `rules` (srv with tables that break UNIQUE, NOT NULL, CHECK and FOREIGN KEY rules).

`from dbcases import *` brings the cases every backend runs, with those two fixtures
(__all__); a module imports the few that hold on some backends only (each says which) and the
helpers by name. The file is not named test_*.py, so that pytest collects its tests only
through the modules.
"""

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest

from conftest import NEXUS_BIN, PLUGINS_DIR, assert_problem, free_port, raw_request, wait_for

__all__ = [
    "dialect", "rules",
    "test_backend_and_no_error_before_a_call", "test_ready_checks_the_database",
    "test_hostile_text_is_stored_verbatim",
    "test_placeholder_reused_and_out_of_order", "test_right_count_after_a_wrong_one",
    "test_affected_rows", "test_unique_violation_is_409", "test_primary_key_violation_is_409",
    "test_not_null_is_422", "test_check_is_422", "test_foreign_key_is_422",
    "test_syntax_error_is_500_without_the_sql", "test_unknown_table_is_500",
    "test_batch_results_in_order", "test_transaction_commit_and_rollback",
    "test_transaction_left_open_is_rolled_back",
    "test_failed_statement_in_transaction_rolls_back_the_rest", "test_transaction_misuse",
    "test_statements_of_a_transaction_see_its_changes", "test_batch_inside_a_transaction",
    "test_pool_exhausted_is_503_with_retry_after",
    "test_waiter_gets_the_connection_when_it_is_returned",
    "test_client_gone_releases_the_connection",
]

# ---- requests to dbkit ----------------------------------------------------------------------


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


def get_values(srv, sql, ncols):
    """POST /dbkit/get of a one-row SELECT: (its answer, its values by column name)."""
    g = ok(post(srv, "/dbkit/get", {"sql": sql, "params": []}))
    assert g["nrows"] == 1 and g["ncols"] == ncols
    assert [c["index_by_name"] for c in g["values"]] == list(range(ncols))
    return g, {c["name"]: c for c in g["values"]}


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


def in_threads(target, args, join):
    """Runs target(*a) for each a of args side by side, each in a thread of its own, and
    waits for each thread up to join seconds."""
    ts = [threading.Thread(target=target, args=a) for a in args]
    for t in ts:
        t.start()
    for t in ts:
        t.join(join)


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

# ---- what differs per backend ---------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """The SQL and answers of the shared cases that differ per backend (a module's DIALECT).

    A None answer is not checked: the backend does not give it, or gives one of its own."""
    backend: str  # /dbkit/info's "backend"
    autoid: str  # an integer PRIMARY KEY column that numbers the rows itself
    table_count: str  # SELECT count(*) AS n of the tables named $1 in the module's database
    rules: tuple  # CREATE TABLE parent (id) and rules (id, email, age, parent): see `rules`
    two_params: str  # SELECT of the integers $1 AS a and $2 AS b
    reorder: str  # SELECT $2 AS a, $1 AS b (an integer), $1 + 1 AS c, $2 twice joined AS d
    constraints: dict = field(default_factory=dict)  # X-Db-Constraint of each rule broken
    unique_code: str = None  # X-Db-Code of a duplicate key
    syntax_state: str = None  # SQLSTATE of a syntax error
    unknown_table_state: str = None  # SQLSTATE of a table that does not exist
    sleep: str = None  # a statement that sleeps {s} seconds on the server, if there is one
    non_finite: tuple = None  # (a SELECT answering infinities or NaN, its column names)
    echo_text: str = None  # SELECT $1 AS s, answering text of any bytes as it is


@pytest.fixture(scope="module")
def dialect(request):
    """The DIALECT of the module whose tests run."""
    return request.module.DIALECT


def hold(srv, dialect, ms):
    """Keeps one connection of srv busy for ms: in a statement that sleeps on the server
    where the backend has one, else in a transaction during which the handler sleeps."""
    if dialect.sleep:
        return q(srv, dialect.sleep.format(s=ms / 1000))
    return steps(srv, op("begin"), op("sleep", ms=ms), op("commit"))


# ---- the server ----------------------------------------------------------------------------


def test_backend_and_no_error_before_a_call(srv, dialect):
    assert srv.get("/dbkit/info").json() == {"backend": dialect.backend, "error_kind": "ok"}


def test_ready_checks_the_database(srv):
    r = srv.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["database"] == "ok"


# ---- values --------------------------------------------------------------------------------


def test_hostile_text_is_stored_verbatim(srv, dialect):
    ok(q(srv, f"CREATE TABLE hostile (id {dialect.autoid}, s TEXT)"))
    for s in HOSTILE:
        ok(q(srv, "INSERT INTO hostile (s) VALUES ($1)", s))
    got = [r["s"] for r in rows(srv, "SELECT s FROM hostile ORDER BY id")]
    assert got == HOSTILE
    # Searching with them finds exactly the row stored, never more.
    for s in HOSTILE:
        assert rows(srv, "SELECT count(*) AS n FROM hostile WHERE s = $1", s) == [{"n": 1}]
    assert rows(srv, "SELECT count(*) AS n FROM hostile") == [{"n": len(HOSTILE)}]
    # The table is still there: nothing was executed.
    assert rows(srv, dialect.table_count, "hostile") == [{"n": 1}]


def test_non_finite_floats_keep_their_column(srv, dialect):
    # SQLite and PostgreSQL (MySQL has no infinities or NaN).
    # Regression (src/db/db.c, value_json), the bug was: json_real() refuses infinities and NaN and
    # returns NULL, so json_object_set_new() drops the key: the column vanishes from the row.
    sql, columns = dialect.non_finite
    got = rows(srv, sql)
    assert set(got[0]) == set(columns), got


def test_text_that_is_not_utf8_stays_json(srv, dialect):
    # SQLite and MySQL (PostgreSQL refuses such text: test_db_pg.py).
    r = ok(q(srv, dialect.echo_text, raw_text(b"\xff\xfeok")))
    assert isinstance(r["rows"][0]["s"], str)


# ---- placeholders --------------------------------------------------------------------------


def test_placeholder_reused_and_out_of_order(srv, dialect):
    assert rows(srv, dialect.reorder, 10, "x") == [{"a": "x", "b": 10, "c": 11, "d": "xx"}]
    ok(q(srv, "CREATE TABLE ph (a INTEGER, b TEXT)"))
    ok(q(srv, "INSERT INTO ph VALUES ($2, $1), ($2 + 1, $1)", "same", 1))
    assert rows(srv, "SELECT a, b FROM ph WHERE b = $1 AND a >= $2 ORDER BY a", "same", 1) == \
        [{"a": 1, "b": "same"}, {"a": 2, "b": "same"}]


# Calls with the wrong parameters, each (sql, params, kind): refused before the database sees
# them, whatever the backend.
MISUSE = [
    ("SELECT $1 AS a, $2 AS b", [1], "misuse"),          # too few
    ("SELECT $1 AS a", [1, 2], "misuse"),                # too many
    ("SELECT 1 AS a", [1], "misuse"),                    # none expected
    ("SELECT $0 AS a", [1], "misuse"),                   # $0 does not exist
]


def misuse_cases(*cases):
    """test_misuse_is_a_500_not_a_crash over a module's cases, each (sql, params, kind)."""

    @pytest.mark.parametrize("sql,params,kind", cases)
    def test_misuse_is_a_500_not_a_crash(srv, sql, params, kind):
        assert_db_problem(q(srv, sql, *params), 500, kind)
        assert rows(srv, "SELECT 1 AS one") == [{"one": 1}]
        assert not worker_deaths(srv)

    return test_misuse_is_a_500_not_a_crash


def test_right_count_after_a_wrong_one(srv, dialect):
    sql = dialect.two_params
    assert_db_problem(q(srv, sql, 1), 500, "misuse")
    assert rows(srv, sql, 1, 2) == [{"a": 1, "b": 2}]
    assert_db_problem(q(srv, sql, 1, 2, 3), 500, "misuse")
    assert rows(srv, sql, 3, 4) == [{"a": 3, "b": 4}]


# ---- affected rows, errors -----------------------------------------------------------------


def test_affected_rows(srv):
    ok(q(srv, "CREATE TABLE aff (k INTEGER)"))
    for k in range(5):
        ok(q(srv, "INSERT INTO aff VALUES ($1)", k))
    assert ok(q(srv, "UPDATE aff SET k = k + 10 WHERE k >= $1", 2))["affected"] == 3
    # Rows matched, as PostgreSQL counts them, even when no value changes.
    assert ok(q(srv, "UPDATE aff SET k = k WHERE k >= $1", 0))["affected"] == 5
    assert ok(q(srv, "DELETE FROM aff WHERE k < $1", 100))["affected"] == 5
    assert ok(q(srv, "DELETE FROM aff"))["affected"] == 0
    assert ok(q(srv, "SELECT 1 AS x"))["affected"] == 0
    assert ok(q(srv, "INSERT INTO aff VALUES ($1)", 1, exec=True)) == {"ok": True}
    # A SELECT changes nothing, however many rows it answers.
    assert ok(q(srv, "SELECT k FROM aff UNION ALL SELECT 2"))["affected"] == 0


@pytest.fixture(scope="module")
def rules(srv, dialect):
    for ddl in dialect.rules:
        ok(q(srv, ddl))
    ok(q(srv, "INSERT INTO parent VALUES (1)"))
    ok(q(srv, "INSERT INTO rules (email, age, parent) VALUES ($1, $2, $3)", "a@x", 1, 1))
    return srv


def assert_constraint(resp, dialect, rule):
    """The X-Db-Constraint naming the rule broken, on a backend that names it."""
    name = dialect.constraints.get(rule)
    if name is not None:
        assert resp.headers.get("x-db-constraint") == name, dict(resp.headers)


def test_unique_violation_is_409(rules, dialect):
    r = q(rules, "INSERT INTO rules (email) VALUES ($1)", "a@x")
    assert_db_problem(r, 409, "constraint", "23505")
    assert_constraint(r, dialect, "unique")
    if dialect.unique_code is not None:
        assert r.headers["x-db-code"] == dialect.unique_code
    assert "a@x" not in r.text  # the detail does not echo the client's data


def test_primary_key_violation_is_409(rules, dialect):
    r = q(rules, "INSERT INTO parent VALUES ($1)", 1)
    assert_db_problem(r, 409, "constraint", "23505")
    assert_constraint(r, dialect, "primary")


def test_not_null_is_422(rules):
    assert_db_problem(q(rules, "INSERT INTO rules (email) VALUES ($1)", None), 422,
                      "constraint", "23502")
    # A NOT NULL column left out (strict mode on MySQL): the same class.
    assert_db_problem(q(rules, "INSERT INTO rules (age) VALUES ($1)", 3), 422,
                      "constraint", "23502")


def test_check_is_422(rules, dialect):
    r = q(rules, "INSERT INTO rules (email, age) VALUES ($1, $2)", "c@x", -1)
    assert_db_problem(r, 422, "constraint", "23514")
    assert_constraint(r, dialect, "check")


def test_foreign_key_is_422(rules, dialect):
    r = q(rules, "INSERT INTO rules (email, parent) VALUES ($1, $2)", "d@x", 99)
    assert_db_problem(r, 422, "constraint", "23503")
    assert_constraint(r, dialect, "foreign")
    # Deleting a row still referred to: the same class.
    assert_db_problem(q(rules, "DELETE FROM parent WHERE id = $1", 1), 422, "constraint",
                      "23503")


def test_syntax_error_is_500_without_the_sql(srv, dialect):
    r = q(srv, "SELEC secret_column_xyz FROM nowhere")
    doc = assert_db_problem(r, 500, "query", dialect.syntax_state)
    assert "secret_column_xyz" not in r.text and "SELEC" not in doc["detail"]
    assert doc["request_id"] in doc["detail"]
    # ... but the operator finds it in the log under the request id.
    assert wait_for(lambda: any(doc["request_id"] in ln and "SELEC" in ln
                                for ln in srv.log().splitlines()), 2)


def test_unknown_table_is_500(srv, dialect):
    assert_db_problem(q(srv, "SELECT * FROM no_such_table_dbkit"), 500, "query",
                      dialect.unknown_table_state)


# ---- batches and transactions ----------------------------------------------------------------


def test_batch_results_in_order(srv):
    ok(q(srv, "CREATE TABLE b (k INTEGER PRIMARY KEY, v TEXT)"))
    r = ok(post(srv, "/dbkit/batch", {"statements": [
        st("INSERT INTO b VALUES ($1, $2)", 1, "one"),
        st("INSERT INTO b VALUES ($1, $2)", 2, "two"),  # the same text twice, first use
        st("SELECT v FROM b ORDER BY k"),
    ]}))
    res = r["results"]
    assert [x["affected"] for x in res[:2]] == [1, 1]
    assert res[2]["rows"] == [{"v": "one"}, {"v": "two"}]


def test_batch_stops_at_the_first_failure(srv):
    # SQLite and MySQL (PostgreSQL runs a batch as one transaction: test_db_pg.py).
    ok(q(srv, "CREATE TABLE bf (k INTEGER PRIMARY KEY)"))
    r = post(srv, "/dbkit/batch", {"statements": [
        st("INSERT INTO bf VALUES ($1)", 1),
        st("INSERT INTO bf VALUES ($1)", 1),
        st("INSERT INTO bf VALUES ($1)", 3),
    ]})
    assert_db_problem(r, 409, "constraint", "23505")
    # They run a batch statement by statement: the first one's result is kept and its change
    # stays, the third never ran.
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
    # Its locks (SQLite's write lock) went with it: a new transaction gets them at once.
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


@pytest.mark.parametrize("table,second,oks", [
    ("txb", 2, [True, True, True]),
    ("txbf", 1, [True, False, True]),  # the batch fails: the transaction is still rolled back
], ids=["ok", "failed"])
def test_batch_inside_a_transaction(srv, table, second, oks):
    ok(q(srv, f"CREATE TABLE {table} (k INTEGER PRIMARY KEY)"))
    out = steps(srv, op("begin"),
                op("batch", statements=[st(f"INSERT INTO {table} VALUES ($1)", 1),
                                        st(f"INSERT INTO {table} VALUES ($1)", second)]),
                op("rollback"))
    assert [s["ok"] for s in out] == oks, out
    assert rows(srv, f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]


# ---- the pool --------------------------------------------------------------------------------


def test_pool_exhausted_is_503_with_retry_after(pool1, dialect):
    holder = threading.Thread(target=hold, args=(pool1, dialect, 1500))
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
