"""The database layer (<nexus/db.h>) on PostgreSQL, through the dbkit test plugin.

Runs against the throwaway PostgreSQL of scripts/services.sh (the `pg_url` and `pg_server`
fixtures of conftest.py); each module gets a database of its own. Besides the cases every
backend shares (dbcases.py, imported below with this module's DIALECT), this covers what only
a server brings: pipelined batches, server-side timeouts and cancellation (a client that
leaves, a request deadline), the pool against a slow server, an outage and a restart, and the
URL forms of database.url. pg_stat_activity is read with psql to see what the server really
runs.
"""

import base64
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest

from conftest import assert_problem, wait_for

pytest.register_assert_rewrite("dbcases")

from dbcases import *  # noqa: E402,F401,F403 - the cases every backend runs (dbcases.__all__)
from dbcases import (Dialect, Disconnecting, assert_db_problem, blob,  # noqa: E402
                     db_error, get_values, in_threads, misuse_cases, ok, op, post, q,
                     raw_text, rows, run_bad_config, st, steps, timed, worker_deaths)
from dbcases import test_non_finite_floats_keep_their_column  # noqa: E402,F401

DIALECT = Dialect(
    backend="postgresql",
    autoid="serial PRIMARY KEY",
    table_count="SELECT count(*) AS n FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_name = $1",
    rules=("CREATE TABLE parent (id int PRIMARY KEY)",
           "CREATE TABLE rules (id serial PRIMARY KEY, "
           "email text NOT NULL CONSTRAINT rules_email_key UNIQUE, "
           "age int CONSTRAINT age_positive CHECK (age >= 0), "
           "parent int CONSTRAINT rules_parent_fk REFERENCES parent(id))"),
    constraints={"unique": "rules_email_key", "primary": "parent_pkey", "check": "age_positive",
                 "foreign": "rules_parent_fk"},
    two_params="SELECT $1::int AS a, $2::int AS b",
    reorder="SELECT $2::text AS a, $1::int AS b, $1::int + 1 AS c, $2 || $2 AS d",
    syntax_state="42601",
    unknown_table_state="42P01",
    sleep="SELECT pg_sleep({s})",
    non_finite=("SELECT 'NaN'::float8 AS nan, 'Infinity'::float8 AS inf, 1 AS one",
                ("nan", "inf", "one")),
)


def psql(url, sql):
    """Runs sql with psql on url; its unaligned, tuples-only output."""
    r = subprocess.run(["psql", url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, f"psql {sql!r}: {r.stderr}"
    return r.stdout.strip()


def with_db(url, name):
    """url with its database replaced by name."""
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def running(url, app):
    """Queries that the server runs right now for connections named app."""
    out = psql(url, "SELECT query FROM pg_stat_activity WHERE application_name = "
                    f"'{app}' AND state = 'active'")
    return [ln for ln in out.splitlines() if ln]


@pytest.fixture(scope="module")
def pgdb(pg_url):
    """The URL of a database created for this module (dropped at its end)."""
    name = "dbkit_" + uuid.uuid4().hex[:10]
    psql(pg_url, f"CREATE DATABASE {name}")
    yield with_db(pg_url, name)
    psql(pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_env(url, app=None, **settings):
    env = {"NEXUS_DATABASE_URL": url}
    if app:
        env["NEXUS_DATABASE_APPLICATION_NAME"] = app
    for k, v in settings.items():
        env["NEXUS_" + k.upper()] = str(v)
    return env


@pytest.fixture(scope="module")
def srv(pgdb, spawn_module):
    return spawn_module(workers=1, name="pg", env=pg_env(pgdb, "dbkit-main"))


@pytest.fixture
def pool1(spawn, pgdb):
    return spawn(workers=1, env=pg_env(pgdb, "dbkit-pool", database_pool_size=1,
                                       database_max_overflow=0, database_pool_timeout="500ms"))


# ---- values --------------------------------------------------------------------------------


def test_typed_params_round_trip(srv):
    ok(q(srv, "CREATE TABLE types (i8 int8, i4 int4, i2 int2, f8 float8, f4 float4, t text, "
              "b bytea, flag boolean, num numeric, n text)"))
    data = bytes(range(256))
    r = ok(q(srv, "INSERT INTO types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
             -9007199254740993, 2147483647, -32768, 1.5, 0.25, "text", blob(data), True,
             "12.50", None))
    assert r["affected"] == 1
    ok(q(srv, "INSERT INTO types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
         9223372036854775807, 0, 0, -0.1, 0, "", blob(b""), False, 0, {"cstr": None}))
    got = ok(q(srv, "SELECT * FROM types ORDER BY i8"))
    assert got["columns"] == ["i8", "i4", "i2", "f8", "f4", "t", "b", "flag", "num", "n"]
    assert got["rows"] == [
        {"i8": -9007199254740993, "i4": 2147483647, "i2": -32768, "f8": 1.5, "f4": 0.25,
         "t": "text", "b": base64.b64encode(data).decode(), "flag": True, "num": "12.50",
         "n": None},
        {"i8": 9223372036854775807, "i4": 0, "i2": 0, "f8": -0.1, "f4": 0.0, "t": "",
         "b": "", "flag": False, "num": "0", "n": None},
    ]
    assert got["types"][0] == ["int", "int", "int", "float", "float", "text", "blob", "bool",
                               "text", "null"]


def test_getters(srv):
    g, v = get_values(srv, "SELECT 42::int8 AS i, 2.75::float8 AS f, 'word'::text AS t, "
                           "'\\x00ff41'::bytea AS b, NULL::int AS n, '17'::text AS num_text, "
                           "true AS yes, false AS no, 3.5::numeric AS num", ncols=9)
    assert v["i"]["i64"] == 42 and v["i"]["text"] == "42" and v["i"]["type"] == "int"
    assert v["f"]["f64"] == 2.75 and v["f"]["type"] == "float"
    assert v["t"]["text"] == "word"
    assert v["b"]["type"] == "blob" and base64.b64decode(v["b"]["blob_b64"]) == b"\x00\xffA"
    assert v["n"]["is_null"] and v["n"]["text"] is None and v["n"]["i64"] == 0
    assert v["num_text"]["i64"] == 17
    assert v["yes"]["type"] == "bool" and v["yes"]["bool"] is True and v["yes"]["i64"] == 1
    assert v["yes"]["text"] == "true" and v["no"]["bool"] is False
    assert v["num"]["f64"] == 3.5 and v["num"]["text"] == "3.5"
    assert g["col_past_end"]["is_null"] and g["row_past_end"]["is_null"]
    assert g["row_json_past_end_is_null"] is True


def test_nul_in_text_is_refused_cleanly(srv):
    ok(q(srv, "CREATE TABLE nul (s text)"))
    r = q(srv, "INSERT INTO nul VALUES ($1)", "a\x00b")
    assert_db_problem(r, 500, "query", "22021")
    assert rows(srv, "SELECT count(*) AS n FROM nul") == [{"n": 0}]
    assert not worker_deaths(srv)


def test_text_that_is_not_utf8_is_refused_cleanly(srv):
    assert_db_problem(q(srv, "SELECT $1::text AS s", raw_text(b"\xff\xfe")), 500, "query",
                      "22021")
    assert rows(srv, "SELECT 1 AS one") == [{"one": 1}]


# ---- placeholders --------------------------------------------------------------------------


def test_placeholders_in_literals_and_comments_are_text(srv):
    assert rows(srv, "SELECT '$1' AS lit, $1::text AS p -- $2\n", "v") == \
        [{"lit": "$1", "p": "v"}]
    assert rows(srv, "SELECT /* $9 */ $1::int AS p", 5) == [{"p": 5}]


def test_dollar_quoted_function_body(srv):
    # Regression (src/db/db.c, nx_db_translate, which pg.c uses to count parameters), the bug was:
    # "$1" inside a dollar-quoted string is counted as a parameter of the statement, so a SQL
    # function that uses its argument cannot be created (500 misuse), and passing the "missing"
    # parameter makes the server refuse the Bind (08P01, answered as 503 unavailable).
    ok(q(srv, "CREATE FUNCTION dbkit_add1(int) RETURNS int AS $$ SELECT $1 + 1 $$ "
              "LANGUAGE sql IMMUTABLE"))
    assert rows(srv, "SELECT dbkit_add1($1::int) AS n", 41) == [{"n": 42}]
    assert rows(srv, "SELECT $tag$ $1 $tag$ AS s, $1::int AS p", 7) == [{"s": " $1 ", "p": 7}]


test_misuse_is_a_500_not_a_crash = misuse_cases(
    ("SELECT $1::int AS a, $2::int AS b", [1], "misuse"),  # too few
    ("SELECT $1::int AS a", [1, 2], "misuse"),             # too many
    ("SELECT 1 AS a", [1], "misuse"),                      # none expected
    ("SELECT $0 AS a", [1], "misuse"),                     # $0 does not exist
)


def test_two_statements_in_one_call_are_refused(srv):
    r = q(srv, "SELECT 1; SELECT 2")
    assert r.status_code == 500 and db_error(r)[0] in ("query", "misuse"), r.text
    assert rows(srv, "SELECT 7 AS n;") == [{"n": 7}]


# ---- affected rows, errors -----------------------------------------------------------------


def test_affected_rows_of_set_and_returning_statements(srv):
    ok(q(srv, "CREATE TABLE affs (k int)"))
    assert ok(q(srv, "INSERT INTO affs SELECT generate_series(0, 4)"))["affected"] == 5
    assert ok(q(srv, "UPDATE affs SET k = k + 10 WHERE k >= $1", 2))["affected"] == 3
    assert ok(q(srv, "INSERT INTO affs VALUES ($1) RETURNING k", 99))["affected"] == 1
    assert ok(q(srv, "DELETE FROM affs WHERE k < $1", 100))["affected"] == 6
    assert ok(q(srv, "DELETE FROM affs"))["affected"] == 0


def test_select_changes_no_rows(srv):
    # Regression (src/db/pg.c, copy_result): PQcmdTuples() of a SELECT is the number of
    # rows returned, and it was reported as nx_db_affected, which db.h defines as the rows
    # changed by an INSERT, UPDATE or DELETE (SQLite answers 0 here).
    assert ok(q(srv, "SELECT generate_series(1, 3) AS n"))["affected"] == 0


@pytest.mark.parametrize("sql,state", [
    ("SELECT nope FROM rules", "42703"),
    ("SELECT 1 / 0 AS x", "22012"),
    ("SELECT 'abc'::int AS x", "22P02"),
    ("", None),
])
def test_query_errors_are_500(rules, sql, state):
    assert_db_problem(q(rules, sql), 500, "query", state)
    assert rows(rules, "SELECT 1 AS one") == [{"one": 1}]


def test_server_notices_do_not_bypass_the_log(srv):
    # Regression (src/db/pg.c, pg_connect), the bug was: no notice processor is set, so libpq prints
    # the server's notices (and its "terminating connection" goodbye) raw on the worker's stderr,
    # outside the structured log.
    ok(q(srv, "DROP TABLE IF EXISTS no_such_table_dbkit"))
    time.sleep(0.2)
    raw = [ln for ln in srv.log().splitlines() if ln.startswith(("NOTICE:", "WARNING:",
                                                                  "FATAL:"))]
    assert not raw, raw


# ---- batches -------------------------------------------------------------------------------


def test_failed_batch_commits_nothing(srv):
    ok(q(srv, "CREATE TABLE bf (k int PRIMARY KEY)"))
    batch = [st("INSERT INTO bf VALUES ($1)", 1),
             st("INSERT INTO bf VALUES ($1)", 1),
             st("INSERT INTO bf VALUES ($1 + 1)", 2)]
    r = post(srv, "/dbkit/batch", {"statements": batch})
    assert_db_problem(r, 409, "constraint", "23505")
    # The first statement's result is kept, the third never ran; outside a transaction the
    # pipeline is one implicit transaction, so the first insert is rolled back with it.
    assert r.headers["x-batch-results"] == "1,0,0"
    assert rows(srv, "SELECT count(*) AS n FROM bf") == [{"n": 0}]
    # The connection and its statement cache are sound afterwards.
    ok(q(srv, "INSERT INTO bf VALUES ($1 + 1)", 5))
    r = ok(post(srv, "/dbkit/batch", {"statements": [
        st("INSERT INTO bf VALUES ($1)", 1), st("INSERT INTO bf VALUES ($1)", 2)]}))
    assert rows(srv, "SELECT k FROM bf ORDER BY k") == [{"k": 1}, {"k": 2}, {"k": 6}]


def test_batch_with_a_syntax_error_then_again(srv):
    ok(q(srv, "CREATE TABLE bs (k int)"))
    r = post(srv, "/dbkit/batch", {"statements": [
        st("INSERT INTO bs VALUES ($1)", 1), st("INSERT INTO bs VALUE ($1)", 2),
        st("SELECT count(*) AS n FROM bs")]})
    assert_db_problem(r, 500, "query", "42601")
    assert rows(srv, "SELECT count(*) AS n FROM bs") == [{"n": 0}]
    r = ok(post(srv, "/dbkit/batch", {"statements": [
        st("INSERT INTO bs VALUES ($1)", 1), st("SELECT count(*) AS n FROM bs")]}))
    assert r["results"][1]["rows"] == [{"n": 1}]


def test_batch_larger_than_the_statement_cache(spawn, pgdb):
    # Regression (src/db/db.c nx_db_cache_add + src/db/pg.c pg_run), the bug was: a connection keeps
    # 512 statements; pg_run plans a whole batch first, and nx_db_cache_add empties the cache when
    # it is full -- freeing the entries that earlier plans of the same batch point to. A later entry
    # allocated at a freed address then looks like "the same statement used earlier in this batch",
    # is not prepared, and the server answers 26000 (prepared statement "nxN" does not exist); the
    # planner also reads freed memory.
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-cache"))
    stmts = [st(f"SELECT {i} AS n, $1::int AS p", i) for i in range(600)]
    r = post(s, "/dbkit/batch", {"statements": stmts}, timeout=30)
    assert r.status_code == 200, (r.status_code, r.headers.get("x-db-message"))
    assert [x["rows"][0]["n"] for x in r.json()["results"]] == list(range(600))


@pytest.fixture
def one_conn(spawn, pgdb):
    """A server whose worker has a single connection: every call reuses its statements."""
    return spawn(workers=1, env=pg_env(pgdb, "dbkit-oneconn", database_pool_size=1,
                                       database_max_overflow=0))


def test_schema_change_under_a_cached_statement(one_conn):
    # Regression (src/db/pg.c, pg_run), the bug was: after ALTER TABLE, PostgreSQL refuses to run a
    # statement prepared before it whose result columns changed ("cached plan must not change result
    # type", 0A000). The entry stays in the connection's cache, so the same statement fails on that
    # connection until it is recycled (pool_recycle, an hour by default): a schema migration applied
    # while the server runs breaks `SELECT *` for good. The call that meets the change may fail
    # (asyncpg retries it transparently outside a transaction); the ones after must not.
    s = one_conn
    name = "sch_" + uuid.uuid4().hex[:6]
    ok(q(s, f"CREATE TABLE {name} (a int)"))
    ok(q(s, f"INSERT INTO {name} VALUES (1)"))
    assert rows(s, f"SELECT * FROM {name}") == [{"a": 1}]
    ok(q(s, f"ALTER TABLE {name} ADD COLUMN b int"))
    q(s, f"SELECT * FROM {name}")  # may fail once
    r = q(s, f"SELECT * FROM {name}")
    assert r.status_code == 200, (r.status_code, db_error(r), r.headers.get("x-db-message"))
    assert r.json()["rows"] == [{"a": 1, "b": None}]


def test_statements_dropped_by_the_session(one_conn):
    # Regression (same as above), the bug was: DEALLOCATE ALL (or DISCARD ALL, or a pooler in
    # between) removes the session's prepared statements; every cached statement then fails with
    # 26000 ("prepared statement does not exist") until the connection is recycled.
    s = one_conn
    assert rows(s, "SELECT 5 AS n") == [{"n": 5}]
    ok(q(s, "DEALLOCATE ALL"))
    q(s, "SELECT 5 AS n")  # may fail once
    r = q(s, "SELECT 5 AS n")
    assert r.status_code == 200, (r.status_code, db_error(r), r.headers.get("x-db-message"))


def test_many_distinct_statements_one_by_one(srv):
    for i in range(560):
        assert rows(srv, f"SELECT {i} AS n") == [{"n": i}]
    assert rows(srv, "SELECT 0 AS n") == [{"n": 0}]


# ---- transactions --------------------------------------------------------------------------


def test_transaction_left_open_leaves_no_connection_in_it(srv, pg_url):
    # Commit, rollback and a transaction left open are the shared cases (dbcases.py); here the
    # server shows what became of the connection.
    ok(q(srv, "CREATE TABLE txl (k int PRIMARY KEY)"))
    seen = srv.log().count("transaction left open")
    ok(post(srv, "/dbkit/tx", {"statements": [st("INSERT INTO txl VALUES ($1)", 4)],
                               "end": "none"}))
    assert wait_for(lambda: srv.log().count("transaction left open") > seen, 2)
    assert rows(srv, "SELECT k FROM txl ORDER BY k") == []
    # No connection was left inside a transaction (it would hold its locks).
    assert psql(pg_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                        "'dbkit-main' AND state LIKE 'idle in transaction%'") == "0"


def test_failed_statement_aborts_the_transaction(srv):
    ok(q(srv, "CREATE TABLE txa (k int PRIMARY KEY)"))
    out = steps(srv, op("begin"), op("exec", "INSERT INTO txa VALUES ($1)", 1),
                op("exec", "INSERT INTO txa VALUES ($1)", 1),
                op("exec", "INSERT INTO txa VALUES ($1)", 2), op("commit"))
    assert [s["ok"] for s in out] == [True, True, False, False, False]
    assert out[2]["error"]["sqlstate"] == "23505"
    assert out[3]["error"]["sqlstate"] == "25P02"  # in_failed_sql_transaction
    assert out[4]["error"]["sqlstate"] == "25P02"  # COMMIT answered ROLLBACK
    assert rows(srv, "SELECT count(*) AS n FROM txa") == [{"n": 0}]


def test_concurrent_writers(spawn, pgdb):
    s = spawn(workers=2, env=pg_env(pgdb, "dbkit-conc", database_pool_size=4))
    ok(q(s, "CREATE TABLE cw (id serial PRIMARY KEY, who text)"))
    ok(q(s, "CREATE TABLE cc (id int PRIMARY KEY, n int NOT NULL)"))
    ok(q(s, "INSERT INTO cc VALUES (1, 0)"))
    threads, per = 12, 15
    failures = []

    def writer(t):
        with s.session() as sess:
            for i in range(per):
                for path, body in (
                        ("/dbkit/query", {"sql": "INSERT INTO cw (who) VALUES ($1)",
                                          "params": [f"t{t}"]}),
                        ("/dbkit/tx", {"statements": [
                            st("UPDATE cc SET n = n + 1 WHERE id = $1", 1)], "end": "commit"})):
                    r = sess.post(s.url(path), json=body, timeout=30)
                    if r.status_code != 200:
                        failures.append((r.status_code, r.headers.get("x-db-message")))

    in_threads(writer, [(t,) for t in range(threads)], join=60)
    assert not failures, failures[:5]
    assert rows(s, "SELECT count(*) AS n FROM cw") == [{"n": threads * per}]
    assert rows(s, "SELECT n FROM cc") == [{"n": threads * per}]


# ---- time limits, cancellation, the pool ---------------------------------------------------


def test_statement_timeout_is_504(spawn, pgdb, pg_url):
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-stmt", database_statement_timeout="1s",
                                    database_pool_size=1, database_max_overflow=0))
    r, took = timed(q, s, "SELECT pg_sleep(5)")
    assert_db_problem(r, 504, "timeout", "57014")
    assert 0.8 < took < 2.2, f"statement_timeout 1s answered after {took:.2f}s"
    assert not running(pg_url, "dbkit-stmt")
    r, took = timed(q, s, "SELECT 1 AS one")
    assert ok(r)["rows"] == [{"one": 1}] and took < 0.5


def test_handler_timeout_cancels_the_query(spawn, pgdb, pg_url):
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-deadline", server_handler_timeout="1s",
                                    database_statement_timeout="30s", database_pool_size=1,
                                    database_max_overflow=0))
    r, took = timed(q, s, "SELECT pg_sleep(5) /* deadline */")
    assert_db_problem(r, 504, "timeout")
    assert took < 2.2, f"handler_timeout 1s answered after {took:.2f}s"
    assert wait_for(lambda: not running(pg_url, "dbkit-deadline"), 2), \
        "the query outlived its request's deadline"
    r, took = timed(q, s, "SELECT 1 AS one")
    assert ok(r)["rows"] == [{"one": 1}] and took < 0.5


def test_a_late_cancel_never_hits_the_next_request(spawn, pgdb):
    # Regression (src/db/pg.c, send_cancel / pg_run), the bug was: at its deadline a statement is
    # cancelled by a PQcancel() on a detached thread, and the connection goes back to the pool as
    # soon as the statement's results are in -- also when the statement ended on its own before the
    # cancel request reached the server. The request then lands on whatever runs next on that
    # connection: another client's query fails with 57014 "canceling statement due to user request"
    # (504). Here requests A end around their deadline, and requests B, queued for the connections
    # the As hold, must never be the ones cancelled.
    pairs = 5
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-latecancel", database_pool_size=pairs,
                                    database_max_overflow=0, server_handler_timeout="200ms"))
    victims = []

    def b_query():
        r = q(s, "SELECT 1 AS one FROM pg_sleep(0.02)")
        if r.status_code != 200:
            victims.append((r.status_code, r.headers.get("x-db-message")))

    for k in range(14):
        a = [threading.Thread(target=q, args=(
            s, f"SELECT pg_sleep({0.198 + ((k * pairs + j) % 13) * 0.0005:.4f})"))
            for j in range(pairs)]
        b = [threading.Thread(target=b_query) for _ in range(pairs)]
        for t in a:
            t.start()
        time.sleep(0.15)
        for t in b:
            t.start()
        for t in a + b:
            t.join(5)
    assert not victims, f"{len(victims)} innocent requests were cancelled: {victims[:3]}"


def test_client_disconnect_cancels_the_query(spawn, pgdb, pg_url):
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-gone", database_pool_size=1,
                                    database_max_overflow=0, database_pool_timeout="2s"))
    c = Disconnecting(s, "/dbkit/query", {"sql": "SELECT pg_sleep(30) /* gone */"})
    assert wait_for(lambda: running(pg_url, "dbkit-gone"), 3), "the query never started"
    time.sleep(0.3)
    c.close()
    t0 = time.monotonic()
    assert wait_for(lambda: not running(pg_url, "dbkit-gone"), 2), \
        "the query of a client that left is still running"
    assert time.monotonic() - t0 < 2
    # The only connection of the pool came back clean.
    r, took = timed(q, s, "SELECT 1 AS one")
    assert ok(r)["rows"] == [{"one": 1}] and took < 0.5
    assert psql(pg_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                        "'dbkit-gone'") == "1"


def test_client_disconnect_inside_a_transaction(spawn, pgdb, pg_url):
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-gonetx", database_pool_size=1,
                                    database_max_overflow=0, database_pool_timeout="2s"))
    ok(q(s, "CREATE TABLE gonetx (k int)"))
    c = Disconnecting(s, "/dbkit/steps", {"stop_on_error": True, "steps": [
        op("begin"), op("exec", "INSERT INTO gonetx VALUES ($1)", 1),
        op("query", "SELECT pg_sleep(30) /* gonetx */"), op("commit")]})
    assert wait_for(lambda: running(pg_url, "dbkit-gonetx"), 3), "the query never started"
    c.close()
    assert wait_for(lambda: not running(pg_url, "dbkit-gonetx"), 2)
    r, took = timed(q, s, "SELECT count(*) AS n FROM gonetx")
    assert ok(r)["rows"] == [{"n": 0}] and took < 0.5


def test_overflow_connections(spawn, pgdb, pg_url):
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-overflow", database_pool_size=1,
                                    database_max_overflow=2, database_pool_timeout="500ms"))
    results = []
    t0 = time.monotonic()
    in_threads(lambda: results.append(q(s, "SELECT pg_sleep(0.8)")), [()] * 3, join=10)
    assert [r.status_code for r in results] == [200] * 3
    assert time.monotonic() - t0 < 1.6, "overflow connections did not run side by side"
    # Overflow connections are closed when given back: one stays.
    assert wait_for(lambda: psql(pg_url, "SELECT count(*) FROM pg_stat_activity WHERE "
                                         "application_name = 'dbkit-overflow'") == "1", 2)


def test_client_leaving_the_pool_queue(spawn, pgdb):
    # A request queued for a connection whose client leaves must leave the queue: the
    # connection given back later goes to the next live request, not to a dead coroutine.
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-queue", database_pool_size=1,
                                    database_max_overflow=0, database_pool_timeout="5s"))
    holder = threading.Thread(target=q, args=(s, "SELECT pg_sleep(1)"))
    holder.start()
    time.sleep(0.2)
    c = Disconnecting(s, "/dbkit/query", {"sql": "SELECT 2 AS queued"})
    time.sleep(0.2)
    c.close()
    r, took = timed(q, s, "SELECT 3 AS n")
    holder.join(10)
    assert ok(r)["rows"] == [{"n": 3}]
    assert took < 1.5
    assert rows(s, "SELECT 4 AS n") == [{"n": 4}]
    assert not worker_deaths(s)


def test_deadlock_is_a_retryable_503(spawn, pgdb):
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-deadlock", database_pool_size=4))
    ok(q(s, "CREATE TABLE dl (id int PRIMARY KEY, n int)"))
    ok(q(s, "INSERT INTO dl VALUES (1, 0), (2, 0)"))
    results = []

    def tx(first, second):
        results.append(post(s, "/dbkit/steps", {"stop_on_error": True, "problem": True,
                                                "steps": [
            op("begin"), op("exec", "UPDATE dl SET n = n + 1 WHERE id = $1", first),
            op("sleep", ms=300), op("exec", "UPDATE dl SET n = n + 1 WHERE id = $1", second),
            op("commit")]}))

    in_threads(tx, [(1, 2), (2, 1)], join=15)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 503], [(r.status_code, r.text[:200]) for r in results]
    loser = next(r for r in results if r.status_code == 503)
    assert_db_problem(loser, 503, "conflict", "40P01")
    assert loser.headers.get("retry-after")
    assert rows(s, "SELECT sum(n) AS n FROM dl") == [{"n": 2}]


def test_pool_recycle_replaces_old_connections(spawn, pgdb):
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-recycle", database_pool_size=1,
                                    database_pool_recycle="500ms"))
    first = rows(s, "SELECT pg_backend_pid() AS pid")[0]["pid"]
    assert rows(s, "SELECT pg_backend_pid() AS pid")[0]["pid"] == first
    time.sleep(0.7)
    assert rows(s, "SELECT pg_backend_pid() AS pid")[0]["pid"] != first


def test_unix_socket_url(spawn, pgdb, db_services):
    sock = db_services.get("NEXUS_TEST_PG_SOCKET_DIR")
    if not sock:
        pytest.skip("the test PostgreSQL has no known socket folder")
    u = urllib.parse.urlsplit(pgdb)
    url = f"postgresql://{u.username}:{u.password}@:{u.port}{u.path}?host={sock}"
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL": url})
    # inet_server_addr() is NULL over a Unix socket.
    assert rows(s, "SELECT inet_server_addr() AS a") == [{"a": None}]


def test_large_values_and_results(srv):
    big = "é" * 300000
    assert rows(srv, "SELECT length($1::text) AS n", big) == [{"n": 300000}]
    data = bytes(range(256)) * 4096
    got = rows(srv, "SELECT $1::bytea AS b", blob(data))[0]["b"]
    assert base64.b64decode(got) == data
    r = ok(q(srv, "SELECT generate_series(1, 50000) AS n"))
    assert len(r["rows"]) == 50000 and r["rows"][-1] == {"n": 50000}
    n = 2000
    sql = "SELECT " + " + ".join(f"${i}::int" for i in range(1, n + 1)) + " AS s"
    assert rows(srv, sql, *range(n)) == [{"s": n * (n - 1) // 2}]


def test_graceful_stop_lets_a_running_query_finish(spawn, pgdb):
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-stop"))
    ok(q(s, "SELECT 1"))
    out = []
    t = threading.Thread(target=lambda: out.append(q(s, "SELECT true AS done FROM pg_sleep(1)")))
    t.start()
    time.sleep(0.3)
    s.stop()  # SIGTERM: exit status 0, no worker left behind
    t.join(10)
    assert ok(out[0])["rows"] == [{"done": True}]


def test_ready_while_every_connection_is_busy(spawn, pgdb):
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-busyready", database_pool_size=1,
                                    database_max_overflow=0))
    t = threading.Thread(target=q, args=(s, "SELECT pg_sleep(1)"))
    t.start()
    time.sleep(0.2)
    r, took = timed(s.get, "/ready")
    t.join(10)
    assert r.status_code == 200, r.text
    assert took < 0.5


# ---- outages -------------------------------------------------------------------------------


def test_outage_fast_503_then_recovery(spawn, pgdb, pg_server):
    s = spawn(workers=2, env=pg_env(pgdb, "dbkit-outage", database_pool_size=2))
    assert rows(s, "SELECT 1 AS one") == [{"one": 1}]
    pg_server.stop()
    for _ in range(6):
        r, took = timed(q, s, "SELECT 1 AS one")
        assert_db_problem(r, 503, "unavailable")
        assert r.headers.get("retry-after")
        assert took < 1, f"a request during the outage took {took:.2f}s"
    r = s.get("/ready")
    assert_problem(r, 503, detail_contains="database")
    pg_server.start()
    assert wait_for(lambda: q(s, "SELECT 1 AS one").status_code == 200, 5, interval=0.2), \
        "requests kept failing after the database came back"
    assert wait_for(lambda: s.get("/ready").status_code == 200, 5, interval=0.2)
    assert not worker_deaths(s), worker_deaths(s)


def test_restart_costs_no_request_with_pre_ping(spawn, pgdb, pg_server):
    # Regression (src/db/pg.c, pg_alive), the bug was: when PostgreSQL shuts down it sends each idle
    # session an ErrorResponse ("terminating connection due to administrator command") and closes
    # it. pg_alive sees bytes waiting, PQconsumeInput() reads the message without noticing the end
    # of file behind it, PQstatus() stays CONNECTION_OK, and the dead connection is handed out: the
    # first request on each pooled connection after a restart gets a 503 although pool_pre_ping is
    # on and the server is back.
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-restart", database_pool_pre_ping="true"))
    assert rows(s, "SELECT 1 AS one") == [{"one": 1}]
    pg_server.restart()
    r = q(s, "SELECT 1 AS one")
    assert r.status_code == 200, (r.status_code, r.headers.get("x-db-message"))


def test_restart_under_load_costs_only_the_requests_of_the_outage(spawn, pgdb, pg_server):
    # Four clients keep querying through two workers while PostgreSQL restarts: requests
    # in flight or sent while it is down get a 503, nothing hangs or crashes, and every
    # request sent once the server is back succeeds (no dead pooled connection handed out).
    s = spawn(workers=2, env=pg_env(pgdb, "dbkit-restart-load", database_pool_size=3))
    stop = threading.Event()
    seen = []  # (start time, status or exception)

    def load():
        with s.session() as sess:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = sess.post(s.url("/dbkit/query"), timeout=10,
                                  json={"sql": "SELECT $1::int AS v", "params": [7]})
                    seen.append((t0, r.status_code))
                except Exception as e:  # noqa: BLE001 - recorded and asserted on
                    seen.append((t0, repr(e)))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    pg_server.restart()
    back = time.monotonic()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(20)
    statuses = {st for _, st in seen}
    assert statuses <= {200, 503}, sorted(map(str, statuses))
    after = [st for t0, st in seen if t0 > back + 0.1]
    assert after and set(after) == {200}, f"{len(after)} requests after the restart: {after[:20]}"
    assert sum(1 for _, st in seen if st == 200) > 50
    assert not worker_deaths(s), worker_deaths(s)


def test_crash_then_recovery(spawn, pgdb, pg_server):
    s = spawn(workers=1, env=pg_env(pgdb, "dbkit-crash"))
    assert rows(s, "SELECT 1 AS one") == [{"one": 1}]
    pg_server.kill()
    r, took = timed(q, s, "SELECT 1 AS one")
    assert_db_problem(r, 503, "unavailable")
    assert took < 1
    pg_server.start()
    assert wait_for(lambda: q(s, "SELECT 1 AS one").status_code == 200, 5, interval=0.2)
    assert not worker_deaths(s)


# ---- database.url --------------------------------------------------------------------------


def test_url_with_a_driver_suffix(spawn, pgdb):
    u = urllib.parse.urlsplit(pgdb)
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL": urllib.parse.urlunsplit(
        ("postgres+asyncpg",) + tuple(u)[1:])})
    assert rows(s, "SELECT current_database() AS d") == [{"d": u.path[1:]}]
    assert s.get("/dbkit/info").json()["backend"] == "postgresql"


def test_database_url_alias_and_percent_encoded_password(spawn, pgdb, pg_url):
    user = "dbkit_" + uuid.uuid4().hex[:8]
    password = "p@ss:w/rd%?#"
    psql(pg_url, f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
    try:
        u = urllib.parse.urlsplit(pgdb)
        url = (f"postgresql://{user}:{urllib.parse.quote(password, safe='')}@{u.hostname}:"
               f"{u.port}{u.path}")
        s = spawn(workers=1, env={"DATABASE_URL": url})
        assert rows(s, "SELECT current_user AS u") == [{"u": user}]
        s.stop()
    finally:
        psql(pg_url, f"DROP ROLE IF EXISTS {user}")


def test_separate_keys_without_url(spawn, pgdb):
    u = urllib.parse.urlsplit(pgdb)
    s = spawn(workers=1, env={"NEXUS_DATABASE_TYPE": "postgresql",
                              "NEXUS_DATABASE_HOST": u.hostname,
                              "NEXUS_DATABASE_PORT": str(u.port),
                              "NEXUS_DATABASE_NAME": u.path[1:],
                              "NEXUS_DATABASE_USER": u.username,
                              "NEXUS_DATABASE_PASSWORD": u.password or ""})
    assert rows(s, "SELECT current_database() AS d") == [{"d": u.path[1:]}]


def test_wrong_password_is_503_not_a_crash(spawn, pgdb):
    u = urllib.parse.urlsplit(pgdb)
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL":
                              f"postgresql://{u.username}:wrong@{u.hostname}:{u.port}{u.path}"})
    r = q(s, "SELECT 1")
    if r.status_code == 200:
        pytest.skip("the test server trusts loopback connections: no password is checked")
    assert_db_problem(r, 503, "unavailable")
    assert not worker_deaths(s)


@pytest.mark.parametrize("url", [
    "postgresql://u@127.0.0.1:99999/db",
    "postgresql://u@127.0.0.1:port/db",
    "postgresql://u@[::1/db",
    "oracle://u@h/db",
])
def test_bad_url_refuses_to_start(tmp_path, url):
    rc, err = run_bad_config([], {"NEXUS_DATABASE_URL": url}, tmp_path)
    assert rc == 78, f"exit {rc}: {err}"
    assert "database.url" in err or "database.host" in err, err
    assert "NEXUS_DATABASE_URL" in err, err


def test_empty_host_names_its_variable(tmp_path):
    # Regression (src/db/settings.c, nx_db_settings_load), the bug was: the message names the source
    # of the last key read (database.url: "default") instead of the variable that emptied
    # database.host.
    rc, err = run_bad_config([], {"NEXUS_DATABASE_TYPE": "postgresql",
                                  "NEXUS_DATABASE_HOST": ""}, tmp_path)
    assert rc == 78, f"exit {rc}: {err}"
    assert "database.host" in err and "NEXUS_DATABASE_HOST" in err, err
