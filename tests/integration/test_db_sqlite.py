"""The database layer (<nexus/db.h>) on SQLite, through the dbkit test plugin.

dbkit (tests/plugins/dbkit) runs the SQL and parameters a test sends in a JSON body and
answers the rows, or nx_db_problem with the nx_db_error fields in X-Db-* headers. These tests
check what a plugin author is promised: typed parameters and getters, placeholders, errors
mapped to HTTP statuses, transactions, batches, timeouts, the pool, several workers writing
one file, and the database.url forms. The helpers and the cases that every backend shares are
in dbcases.py (imported below, run here against this module's `srv` and DIALECT).
"""

import base64
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import assert_problem

pytest.register_assert_rewrite("dbcases")

from dbcases import *  # noqa: E402,F401,F403 - the cases every backend runs (dbcases.__all__)
from dbcases import (MISUSE, Dialect, assert_db_problem, blob, get_values,  # noqa: E402
                     in_threads, misuse_cases, ok, op, post, q, rows, run_bad_config, st,
                     steps, timed, worker_deaths)
from dbcases import (test_batch_stops_at_the_first_failure,  # noqa: E402,F401
                     test_non_finite_floats_keep_their_column,
                     test_text_that_is_not_utf8_stays_json)

DIALECT = Dialect(
    backend="sqlite",
    autoid="INTEGER PRIMARY KEY",
    table_count="SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = $1",
    rules=("CREATE TABLE parent (id INTEGER PRIMARY KEY)",
           "CREATE TABLE rules (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, "
           "age INTEGER CHECK (age >= 0), parent INTEGER REFERENCES parent(id))"),
    two_params="SELECT $1 AS a, $2 AS b",
    reorder="SELECT $2 AS a, $1 AS b, $1 + 1 AS c, $2 || $2 AS d",
    non_finite=("SELECT 1e999 AS inf, -1e999 AS ninf, 1 AS one", ("inf", "ninf", "one")),
    echo_text="SELECT $1 AS s",
)

# ---- the server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(spawn_module):
    return spawn_module(workers=1, name="sqlite",
                        env={"NEXUS_DATABASE_URL": "sqlite:///db/dbkit.db"})


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
    g, v = get_values(srv, "SELECT 42 AS i, 2.75 AS f, 'word' AS t, x'00ff41' AS b, "
                           "NULL AS n, '17' AS num_text, ' 3.5' AS real_text, 'yes' AS yes, "
                           "0 AS zero", ncols=9)
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


def test_nul_in_text(srv):
    # SQLite text may hold NUL bytes: stored and read back whole, or refused cleanly.
    ok(q(srv, "CREATE TABLE nul (s TEXT)"))
    r = q(srv, "INSERT INTO nul VALUES ($1)", "a\x00b")
    if r.status_code == 200:
        assert rows(srv, "SELECT s, length(CAST(s AS BLOB)) AS n FROM nul") == \
            [{"s": "a\x00b", "n": 3}]
    else:
        assert_db_problem(r, 500, "query")


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


def test_placeholders_in_literals_and_comments_are_text(srv):
    got = rows(srv, "SELECT '$1' AS lit, \"$2\" AS ident, $1 AS p -- $3\n", "v")
    # "$2" in double quotes is an identifier in SQL; SQLite falls back to a string when no
    # such column exists. Neither it nor the comment is a parameter.
    assert got == [{"lit": "$1", "ident": "$2", "p": "v"}]
    assert rows(srv, "SELECT /* $9 */ $1 AS p", 5) == [{"p": 5}]


test_misuse_is_a_500_not_a_crash = misuse_cases(
    *MISUSE,
    ("SELECT 1; SELECT 2", [], "misuse"),                # two statements
)


def test_trailing_semicolon_is_one_statement(srv):
    assert rows(srv, "SELECT 7 AS n;") == [{"n": 7}]
    assert rows(srv, "SELECT 8 AS n ;  \n") == [{"n": 8}]


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

    in_threads(writer, [(t,) for t in range(threads)], join=60)
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

    in_threads(first_use, [(i,) for i in range(n)], join=30)
    bad = [r for r in results if r[0] != 200]
    assert len(results) == n and not bad, f"{len(bad)} of {n} failed: {bad[:3]}"


# SQLite's unix VFS keeps the WAL locks as fcntl byte locks in the -shm file, at offset 120 +
# the lock's index; index 2 is the recovery lock, which the first connection to open a WAL
# database takes while it rebuilds the wal-index from the WAL file.
WAL_RECOVER_LOCK_BYTE = 122
HOLD_SHM_BYTE = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, int(sys.argv[2]))
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


def test_first_connection_waits_out_another_process_recovering_the_wal(spawn, tmp_path):
    # Regression (src/db/sqlite.c): a worker opening its first connection while another
    # process recovers the WAL got SQLITE_BUSY_RECOVERY, an extended code, from compiling
    # "PRAGMA journal_mode = WAL"; the retry loop compared with plain SQLITE_BUSY, so the
    # request failed at once with 503 "database is locked". Seen when several workers of a
    # new server opened one file together. The same code must be waited out like any lock.
    path = tmp_path / "recover.db"
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("CREATE TABLE r (x INTEGER)")
    c.execute("INSERT INTO r VALUES (7)")
    c.commit()
    c.close()
    assert not os.path.exists(f"{path}-shm")  # the last close removed it: the next opener recovers
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL": f"sqlite:///{path}"})
    hold_s = 1.0
    holder = subprocess.Popen([sys.executable, "-c", HOLD_SHM_BYTE, f"{path}-shm",
                               str(WAL_RECOVER_LOCK_BYTE), str(hold_s)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r, took = timed(q, s, "SELECT x FROM r")
    finally:
        holder.kill()
        holder.wait()
    assert ok(r)["rows"] == [{"x": 7}]
    # It answered because it waited for the lock, not because the lock was never in its way.
    assert took > hold_s / 2, f"answered after {took:.2f}s while the lock was held {hold_s}s"
    assert "database is locked" not in s.log()


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
