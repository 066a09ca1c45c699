"""The database layer (<nexus/db.h>) on MariaDB/MySQL (src/db/mysql.c), through dbkit.

The same promises as on SQLite (test_db_sqlite.py, whose helpers are used here), checked
against the session's MariaDB (scripts/services.sh: NEXUS_TEST_MYSQL_URL, or a server the
conftest starts for the session): typed values, $N placeholders translated to ? (reused, out
of order, inside literals), MySQL error numbers mapped to the API's SQLSTATEs and statuses,
server-side statement timeouts, abandoned statements killed on the server, a server killed
or stopped under load, and the prepared-statement cache. Every module works in a database of
its own, created here and dropped at the end.
"""

import base64
import os
import socket
import threading
import time
import urllib.parse
import uuid

import pytest

from conftest import wait_for
from test_db_sqlite import (HOSTILE, Disconnecting, assert_db_problem, blob, ok, op, post, q,
                            raw_text, rows, st, steps, timed, worker_deaths)

# ---- the database and the servers -----------------------------------------------------------


@pytest.fixture(scope="module")
def mydb(_mysql_server):
    """(url, DbServer): a fresh utf8mb4 database of this module on the session's MariaDB."""
    mysql_server = _mysql_server
    name = f"nx_mysql_{uuid.uuid4().hex[:10]}"
    admin = mysql_server.connect()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        admin.close()
    u = urllib.parse.urlsplit(mysql_server.url)
    url = urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, ""))
    yield url, mysql_server
    try:
        mysql_server.start()
        admin = mysql_server.connect()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()
    except Exception:  # noqa: BLE001 - cleanup must not hide the tests' outcome
        pass


def env_for(mydb, **extra):
    env = {"NEXUS_DATABASE_URL": mydb[0]}
    env.update({f"NEXUS_{k.upper()}": str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="module")
def srv(spawn_module, mydb):
    return spawn_module(workers=1, name="mysql", env=env_for(mydb))


def sql_client(mydb):
    """A pymysql connection to the module's database, the caller's to close."""
    url, server = mydb
    c = server.connect()
    c.select_db(urllib.parse.urlsplit(url).path.lstrip("/"))
    return c


def scalar(mydb, sql, *args):
    c = sql_client(mydb)
    try:
        with c.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()[0]
    finally:
        c.close()


def running(mydb, marker):
    """How many of the server's threads run a statement containing marker."""
    return scalar(mydb, "SELECT COUNT(*) FROM information_schema.processlist "
                        "WHERE info LIKE %s AND info NOT LIKE %s",
                  f"%{marker}%", "%information_schema%")


def test_backend_and_no_error_before_a_call(srv):
    assert srv.get("/dbkit/info").json() == {"backend": "mysql", "error_kind": "ok"}


# ---- values --------------------------------------------------------------------------------


def test_typed_params_round_trip(srv):
    ok(q(srv, "CREATE TABLE types (k INT PRIMARY KEY, i BIGINT, f DOUBLE, t TEXT, "
              "b LONGBLOB, flag BOOLEAN, n TEXT)"))
    data = bytes(range(256))
    r = ok(q(srv, "INSERT INTO types VALUES ($1, $2, $3, $4, $5, $6, $7)",
             1, -9223372036854775808, 1.5, "text", blob(data), True, None))
    assert r["affected"] == 1
    ok(q(srv, "INSERT INTO types VALUES ($1, $2, $3, $4, $5, $6, $7)",
         2, 9223372036854775807, -0.1, "", blob(b""), False, {"cstr": None}))
    got = ok(q(srv, "SELECT i, f, t, b, flag, n FROM types ORDER BY k"))
    assert got["columns"] == ["i", "f", "t", "b", "flag", "n"]
    # BOOLEAN is TINYINT(1) in MySQL: it comes back as an integer.
    assert got["rows"] == [
        {"i": -9223372036854775808, "f": 1.5, "t": "text",
         "b": base64.b64encode(data).decode(), "flag": 1, "n": None},
        {"i": 9223372036854775807, "f": -0.1, "t": "", "b": "", "flag": 0, "n": None},
    ]
    assert got["types"][0] == ["int", "float", "text", "blob", "int", "null"]


def test_column_types(srv):
    ok(q(srv, "CREATE TABLE kinds (u BIGINT UNSIGNED, ti TINYINT UNSIGNED, si SMALLINT, "
              "fl FLOAT, de DECIMAL(12,3), dt DATETIME(3), d DATE, tm TIME, y YEAR, "
              "bits BIT(12), vb VARBINARY(10), e ENUM('a','b'), j JSON, c CHAR(3))"))
    ok(q(srv, "INSERT INTO kinds VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, b'101000000101', "
              "$10, $11, $12, $13)",
         "18446744073709551615", 255, -32768, 0.1, "123456789.125", "2024-02-29 23:59:58.125",
         "2024-02-29", "-838:59:59", 2024, blob(b"\x00\x01"), "b", '{"k": [1, 2]}', "abc"))
    got = ok(q(srv, "SELECT * FROM kinds"))
    row, types = got["rows"][0], dict(zip(got["columns"], got["types"][0]))
    # Beyond int64: exact, as text.
    assert row["u"] == "18446744073709551615" and types["u"] == "text"
    assert row["ti"] == 255 and row["si"] == -32768 and row["y"] == 2024
    # A FLOAT comes back as the decimal the server shows, not float32 noise.
    assert row["fl"] == 0.1 and types["fl"] == "float"
    assert row["de"] == "123456789.125" and types["de"] == "text"
    assert row["dt"] == "2024-02-29 23:59:58.125" and row["d"] == "2024-02-29"
    assert row["tm"] == "-838:59:59"
    assert row["bits"] == 0b101000000101 and types["bits"] == "int"
    assert base64.b64decode(row["vb"]) == b"\x00\x01" and types["vb"] == "blob"
    assert row["e"] == "b" and row["c"] == "abc"
    assert row["j"].replace(" ", "") == '{"k":[1,2]}'


def test_getters(srv):
    g = ok(post(srv, "/dbkit/get", {
        "sql": "SELECT 42 AS i, 2.75e0 AS f, 'word' AS t, x'00ff41' AS b, NULL AS n, "
               "'17' AS num_text, 3.5 AS dec_text, 'yes' AS yes, 0 AS zero",
        "params": []}))
    assert g["nrows"] == 1 and g["ncols"] == 9
    v = {c["name"]: c for c in g["values"]}
    assert [c["index_by_name"] for c in g["values"]] == list(range(9))
    assert v["i"]["i64"] == 42 and v["i"]["type"] == "int" and v["i"]["text"] == "42"
    assert v["f"]["f64"] == 2.75 and v["f"]["type"] == "float" and v["f"]["i64"] == 2
    assert v["t"]["text"] == "word" and v["t"]["type"] == "text"
    assert v["b"]["type"] == "blob" and base64.b64decode(v["b"]["blob_b64"]) == b"\x00\xffA"
    assert v["n"]["is_null"] and v["n"]["text"] is None and v["n"]["i64"] == 0
    assert v["num_text"]["i64"] == 17
    assert v["dec_text"]["f64"] == 3.5 and v["dec_text"]["text"] == "3.5"
    assert v["yes"]["bool"] is True and v["zero"]["bool"] is False
    for past in (g["col_past_end"], g["row_past_end"]):
        assert past["is_null"] and past["text"] is None
    assert g["missing_col"] == -1


def test_hostile_text_is_stored_verbatim(srv):
    ok(q(srv, "CREATE TABLE hostile (id INT AUTO_INCREMENT PRIMARY KEY, s TEXT)"))
    for s in HOSTILE:
        ok(q(srv, "INSERT INTO hostile (s) VALUES ($1)", s))
    got = [r["s"] for r in rows(srv, "SELECT s FROM hostile ORDER BY id")]
    assert got == HOSTILE
    for s in HOSTILE:
        assert rows(srv, "SELECT count(*) AS n FROM hostile WHERE s = $1", s) == [{"n": 1}]
    assert rows(srv, "SELECT count(*) AS n FROM hostile") == [{"n": len(HOSTILE)}]
    # The table is still there: nothing was executed.
    assert rows(srv, "SELECT count(*) AS n FROM information_schema.tables "
                     "WHERE table_schema = DATABASE() AND table_name = 'hostile'") == [{"n": 1}]


def test_nul_and_large_values(srv):
    ok(q(srv, "CREATE TABLE big (id INT PRIMARY KEY, s LONGTEXT, b LONGBLOB)"))
    text = "a\x00b" + "é" * 300000
    data = os.urandom(1 << 20)
    ok(q(srv, "INSERT INTO big VALUES ($1, $2, $3)", 1, text, blob(data)))
    ok(q(srv, "INSERT INTO big VALUES ($1, $2, $3)", 2, "short", blob(b"x")))
    got = rows(srv, "SELECT id, s, b FROM big ORDER BY id")
    assert got[0]["s"] == text and base64.b64decode(got[0]["b"]) == data
    assert got[1] == {"id": 2, "s": "short", "b": base64.b64encode(b"x").decode()}


def test_text_that_is_not_utf8_stays_json(srv):
    r = ok(q(srv, "SELECT CAST($1 AS BINARY) AS s", raw_text(b"\xff\xfeok")))
    assert isinstance(r["rows"][0]["s"], str)


# ---- placeholders --------------------------------------------------------------------------


def test_placeholder_reused_and_out_of_order(srv):
    assert rows(srv, "SELECT $2 AS a, $1 AS b, $1 + 1 AS c, CONCAT($2, $2) AS d", 10, "x") == \
        [{"a": "x", "b": 10, "c": 11, "d": "xx"}]
    ok(q(srv, "CREATE TABLE ph (a INT, b TEXT)"))
    ok(q(srv, "INSERT INTO ph VALUES ($2, $1), ($2 + 1, $1)", "same", 1))
    assert rows(srv, "SELECT a, b FROM ph WHERE b = $1 AND a >= $2 ORDER BY a", "same", 1) == \
        [{"a": 1, "b": "same"}, {"a": 2, "b": "same"}]


def test_placeholders_in_literals_and_comments_are_text(srv):
    got = rows(srv, "SELECT '$1' AS lit, 'it\\'s $2' AS esc, `$1` AS p -- $3\n"
                    "FROM (SELECT $1 AS `$1`) AS x", "v")
    assert got == [{"lit": "$1", "esc": "it's $2", "p": "v"}]
    assert rows(srv, "SELECT /* $9 */ $1 AS p", 5) == [{"p": 5}]


@pytest.mark.parametrize("sql,params,kind", [
    ("SELECT $1 AS a, $2 AS b", [1], "misuse"),      # too few
    ("SELECT $1 AS a", [1, 2], "misuse"),            # too many
    ("SELECT 1 AS a", [1], "misuse"),                # none expected
    ("SELECT $0 AS a", [1], "misuse"),               # $0 does not exist
    ("SELECT ? AS a", [1], "misuse"),                # MySQL's own placeholder
    ("SELECT 1; SELECT 2", [], "query"),             # two statements: refused by prepare
])
def test_misuse_is_a_500_not_a_crash(srv, sql, params, kind):
    assert_db_problem(q(srv, sql, *params), 500, kind)
    assert rows(srv, "SELECT 1 AS one") == [{"one": 1}]
    assert not worker_deaths(srv)


def test_right_count_after_a_wrong_one(srv):
    sql = "SELECT $1 AS a, $2 AS b"
    assert_db_problem(q(srv, sql, 1), 500, "misuse")
    assert rows(srv, sql, 1, 2) == [{"a": 1, "b": 2}]
    assert_db_problem(q(srv, sql, 1, 2, 3), 500, "misuse")
    assert rows(srv, sql, 3, 4) == [{"a": 3, "b": 4}]


# ---- affected rows, errors -----------------------------------------------------------------


def test_affected_rows(srv):
    ok(q(srv, "CREATE TABLE aff (k INT)"))
    for k in range(5):
        ok(q(srv, "INSERT INTO aff VALUES ($1)", k))
    assert ok(q(srv, "UPDATE aff SET k = k + 10 WHERE k >= $1", 2))["affected"] == 3
    # Rows matched, as PostgreSQL counts them, even when no value changes.
    assert ok(q(srv, "UPDATE aff SET k = k WHERE k >= $1", 0))["affected"] == 5
    assert ok(q(srv, "DELETE FROM aff WHERE k < $1", 100))["affected"] == 5
    assert ok(q(srv, "DELETE FROM aff"))["affected"] == 0
    assert ok(q(srv, "INSERT INTO aff VALUES ($1)", 1, exec=True)) == {"ok": True}
    # A SELECT changes nothing, however many rows it answers.
    assert ok(q(srv, "SELECT k FROM aff UNION ALL SELECT 2"))["affected"] == 0


def test_insert_returning(srv):
    ok(q(srv, "CREATE TABLE ret (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)"))
    a = ok(q(srv, "INSERT INTO ret (v) VALUES ($1) RETURNING id, v", "one"))["rows"]
    b = ok(q(srv, "INSERT INTO ret (v) VALUES ($1) RETURNING id, v", "two"))["rows"]
    assert a[0]["v"] == "one" and b == [{"id": a[0]["id"] + 1, "v": "two"}]
    r = ok(q(srv, "/* two */ INSERT INTO ret (v) VALUES ($1), ($2) RETURNING v", "x", "y"))
    assert r["rows"] == [{"v": "x"}, {"v": "y"}] and r["affected"] == 2
    r = ok(q(srv, "DELETE FROM ret WHERE v IN ($1, $2) RETURNING id", "x", "y"))
    assert len(r["rows"]) == 2 and r["affected"] == 2


@pytest.fixture(scope="module")
def rules(srv):
    ok(q(srv, "CREATE TABLE parent (id INT PRIMARY KEY)"))
    ok(q(srv, "CREATE TABLE rules (id INT AUTO_INCREMENT PRIMARY KEY, "
              "email VARCHAR(100) NOT NULL, age INT, parent INT, "
              "CONSTRAINT rules_email_key UNIQUE (email), "
              "CONSTRAINT rules_age_check CHECK (age >= 0), "
              "CONSTRAINT rules_parent_fk FOREIGN KEY (parent) REFERENCES parent(id))"))
    ok(q(srv, "INSERT INTO parent VALUES (1)"))
    ok(q(srv, "INSERT INTO rules (email, age, parent) VALUES ($1, $2, $3)", "a@x", 1, 1))
    return srv


def test_unique_violation_is_409(rules):
    r = q(rules, "INSERT INTO rules (email) VALUES ($1)", "a@x")
    assert_db_problem(r, 409, "constraint", "23505")
    assert r.headers["x-db-code"] == "1062"
    assert r.headers["x-db-constraint"] == "rules_email_key"


def test_primary_key_violation_is_409(rules):
    r = q(rules, "INSERT INTO parent VALUES ($1)", 1)
    assert_db_problem(r, 409, "constraint", "23505")
    assert r.headers["x-db-constraint"] == "PRIMARY"


def test_not_null_is_422(rules):
    assert_db_problem(q(rules, "INSERT INTO rules (email) VALUES ($1)", None), 422,
                      "constraint", "23502")
    # A NOT NULL column left out (strict mode): the same class.
    assert_db_problem(q(rules, "INSERT INTO rules (age) VALUES ($1)", 3), 422,
                      "constraint", "23502")


def test_check_is_422(rules):
    r = q(rules, "INSERT INTO rules (email, age) VALUES ($1, $2)", "c@x", -1)
    assert_db_problem(r, 422, "constraint", "23514")
    assert r.headers["x-db-constraint"] == "rules_age_check"


def test_foreign_key_is_422(rules):
    r = q(rules, "INSERT INTO rules (email, parent) VALUES ($1, $2)", "d@x", 99)
    assert_db_problem(r, 422, "constraint", "23503")
    assert r.headers["x-db-constraint"] == "rules_parent_fk"
    # Deleting a row still referred to: the same class.
    assert_db_problem(q(rules, "DELETE FROM parent WHERE id = $1", 1), 422, "constraint",
                      "23503")


def test_syntax_error_is_500_without_the_sql(srv):
    r = q(srv, "SELEC secret_column_xyz FROM nowhere")
    doc = assert_db_problem(r, 500, "query", "42000")
    assert "secret_column_xyz" not in r.text.replace(r.headers.get("x-db-message", ""), "")
    assert "SELEC" not in doc["detail"]
    assert wait_for(lambda: any(doc["request_id"] in ln and "SELEC" in ln
                                for ln in srv.log().splitlines()), 2)


def test_unknown_table_and_general_errors_are_500(srv):
    assert_db_problem(q(srv, "SELECT * FROM no_such_table_dbkit"), 500, "query", "42S02")
    # Errors whose SQLSTATE is MySQL's catch-all HY000 are statement errors, not an outage.
    ok(q(srv, "CREATE TABLE ints (n INT)"))
    r = q(srv, "INSERT INTO ints VALUES ($1)", "not a number")
    assert r.status_code in (422, 500), r.text
    assert db_kind(r) in ("query", "constraint")
    assert rows(srv, "SELECT 1 AS one") == [{"one": 1}]


def db_kind(resp):
    return resp.headers.get("x-db-error")


def test_deadlock_is_503_conflict(srv):
    ok(q(srv, "CREATE TABLE dl (id INT PRIMARY KEY, n INT)"))
    ok(q(srv, "INSERT INTO dl VALUES (1, 0), (2, 0)"))
    out = {}

    def tx(name, first, second):
        out[name] = steps(srv, op("begin"),
                          op("exec", "UPDATE dl SET n = n + 1 WHERE id = $1", first),
                          op("sleep", ms=400),
                          op("exec", "UPDATE dl SET n = n + 1 WHERE id = $1", second),
                          op("commit"), stop_on_error=True, timeout=30)

    a = threading.Thread(target=tx, args=("a", 1, 2))
    b = threading.Thread(target=tx, args=("b", 2, 1))
    a.start()
    b.start()
    a.join(30)
    b.join(30)
    failed = [s for name in out for s in out[name] if not s["ok"]]
    assert len(failed) == 1, out
    assert failed[0]["error"]["kind"] == "conflict" and failed[0]["error"]["sqlstate"] == "40001"
    assert failed[0]["error"]["code"] == 1213
    # The winner's changes are in, the loser's are not.
    assert rows(srv, "SELECT SUM(n) AS s FROM dl") == [{"s": "2"}]


# ---- batches and transactions ----------------------------------------------------------------


def test_batch_results_in_order(srv):
    ok(q(srv, "CREATE TABLE b (k INT PRIMARY KEY, v TEXT)"))
    r = ok(post(srv, "/dbkit/batch", {"statements": [
        st("INSERT INTO b VALUES ($1, $2)", 1, "one"),
        st("INSERT INTO b VALUES ($1, $2)", 2, "two"),
        st("SELECT v FROM b ORDER BY k"),
    ]}))
    res = r["results"]
    assert [x["affected"] for x in res[:2]] == [1, 1]
    assert res[2]["rows"] == [{"v": "one"}, {"v": "two"}]


def test_batch_stops_at_the_first_failure(srv):
    ok(q(srv, "CREATE TABLE bf (k INT PRIMARY KEY)"))
    r = post(srv, "/dbkit/batch", {"statements": [
        st("INSERT INTO bf VALUES ($1)", 1),
        st("INSERT INTO bf VALUES ($1)", 1),
        st("INSERT INTO bf VALUES ($1)", 3),
    ]})
    assert_db_problem(r, 409, "constraint", "23505")
    assert r.headers["x-batch-results"] == "1,0,0"
    assert rows(srv, "SELECT k FROM bf") == [{"k": 1}]


def test_transaction_commit_and_rollback(srv):
    ok(q(srv, "CREATE TABLE tx (k INT PRIMARY KEY)"))
    ok(post(srv, "/dbkit/tx", {"statements": [st("INSERT INTO tx VALUES ($1)", 1),
                                              st("INSERT INTO tx VALUES ($1)", 2)],
                               "end": "commit"}))
    ok(post(srv, "/dbkit/tx", {"statements": [st("INSERT INTO tx VALUES ($1)", 3)],
                               "end": "rollback"}))
    assert rows(srv, "SELECT k FROM tx ORDER BY k") == [{"k": 1}, {"k": 2}]


def test_transaction_left_open_is_rolled_back(srv):
    ok(q(srv, "CREATE TABLE txo (k INT PRIMARY KEY)"))
    ok(post(srv, "/dbkit/tx", {"statements": [st("INSERT INTO txo VALUES ($1)", 1)],
                               "end": "none"}))
    assert rows(srv, "SELECT count(*) AS n FROM txo") == [{"n": 0}]
    assert wait_for(lambda: "transaction left open" in srv.log(), 2)
    ok(post(srv, "/dbkit/tx", {"statements": [st("INSERT INTO txo VALUES ($1)", 2)],
                               "end": "commit"}))
    assert rows(srv, "SELECT k FROM txo") == [{"k": 2}]


def test_failed_statement_in_transaction_rolls_back_the_rest(srv):
    ok(q(srv, "CREATE TABLE txf (k INT PRIMARY KEY)"))
    r = post(srv, "/dbkit/tx", {"statements": [st("INSERT INTO txf VALUES ($1)", 1),
                                               st("INSERT INTO txf VALUES ($1)", 1)],
                                "end": "commit"})
    assert_db_problem(r, 409, "constraint", "23505")
    assert r.headers["x-failed-statement"] == "1"
    assert rows(srv, "SELECT count(*) AS n FROM txf") == [{"n": 0}]


def test_statements_of_a_transaction_see_its_changes(srv):
    ok(q(srv, "CREATE TABLE txv (k INT)"))
    out = steps(srv, op("begin"), op("exec", "INSERT INTO txv VALUES ($1)", 5),
                op("query", "SELECT count(*) AS n FROM txv"), op("rollback"),
                op("query", "SELECT count(*) AS n FROM txv"))
    assert all(s["ok"] for s in out), out
    assert out[2]["result"]["rows"] == [{"n": 1}]
    assert out[4]["result"]["rows"] == [{"n": 0}]


def test_stored_procedure_results(srv):
    # A CALL answers its rows and then a status result, which must be read as well.
    ok(q(srv, "CREATE PROCEDURE two_rows(IN x INT) SELECT x AS a UNION ALL SELECT x + 1"))
    for _ in range(3):
        assert rows(srv, "CALL two_rows($1)", 7) == [{"a": 7}, {"a": 8}]
    assert rows(srv, "SELECT 1 AS one") == [{"one": 1}]


def test_cached_statement_follows_a_changed_table(srv):
    ok(q(srv, "CREATE TABLE alt (a INT)"))
    ok(q(srv, "INSERT INTO alt VALUES (1)"))
    assert rows(srv, "SELECT * FROM alt") == [{"a": 1}]
    ok(q(srv, "ALTER TABLE alt ADD COLUMN b INT DEFAULT 7"))
    assert rows(srv, "SELECT * FROM alt") == [{"a": 1, "b": 7}]
    ok(q(srv, "ALTER TABLE alt DROP COLUMN a"))
    assert rows(srv, "SELECT * FROM alt") == [{"b": 7}]


def test_many_distinct_statements_on_one_connection(spawn, mydb):
    s = spawn(workers=1, env=env_for(mydb, database_pool_size=1, database_max_overflow=0))
    with s.session() as sess:
        for i in range(600):
            r = sess.post(s.url("/dbkit/query"), timeout=10,
                          json={"sql": f"SELECT {i} AS x, $1 AS y", "params": [i]})
            assert r.status_code == 200 and r.json()["rows"] == [{"x": i, "y": i}], r.text
    # The statement cache is bounded, and the statements it evicts are closed on the server.
    assert not worker_deaths(s)
    c = sql_client(mydb)
    try:
        with c.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")
            assert int(cur.fetchone()[1]) < 560
    finally:
        c.close()


def test_server_limit_on_prepared_statements(spawn, mydb):
    # max_prepared_stmt_count is shared by every client of the server: when it is reached,
    # a connection gives back the statements it keeps and tries once more.
    s = spawn(workers=1, env=env_for(mydb, database_pool_size=1, database_max_overflow=0))
    ok(q(s, "SELECT 1 AS warm"))
    c = sql_client(mydb)
    try:
        with c.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.max_prepared_stmt_count")
            before = cur.fetchone()[0]
            cur.execute("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")
            used = int(cur.fetchone()[1])
            cur.execute("SET GLOBAL max_prepared_stmt_count = %s", (used + 10,))
        try:
            for i in range(40):
                assert rows(s, f"SELECT {i} AS limit_probe") == [{"limit_probe": i}]
        finally:
            with c.cursor() as cur:
                cur.execute("SET GLOBAL max_prepared_stmt_count = %s", (before,))
    finally:
        c.close()
    assert not worker_deaths(s)


# ---- time limits, cancellation --------------------------------------------------------------


def test_statement_timeout_is_504_and_the_connection_stays(spawn, mydb):
    s = spawn(workers=1, env=env_for(mydb, database_statement_timeout="1s",
                                     database_pool_size=1, database_max_overflow=0))
    pid = rows(s, "SELECT CONNECTION_ID() AS id")[0]["id"]
    r, took = timed(q, s, "SELECT SLEEP(5) AS z")
    assert_db_problem(r, 504, "timeout", "57014")
    # The server stopped it (max_statement_time), so the connection is kept.
    assert r.headers["x-db-code"] == "1969"
    assert 0.8 < took < 2.5, f"statement_timeout 1s answered after {took:.2f}s"
    assert rows(s, "SELECT CONNECTION_ID() AS id") == [{"id": pid}]


def test_handler_timeout_kills_the_statement_on_the_server(spawn, mydb):
    s = spawn(workers=1, env=env_for(mydb, database_statement_timeout="0",
                                     server_handler_timeout="1s"))
    r, took = timed(q, s, "SELECT SLEEP(20) AS handler_timeout_marker")
    assert_db_problem(r, 504, "timeout")
    assert took < 2.5, f"handler_timeout 1s answered after {took:.2f}s"
    assert wait_for(lambda: running(mydb, "handler_timeout_marker") == 0, 3), \
        "the abandoned statement still runs on the server"
    assert rows(s, "SELECT 1 AS one") == [{"one": 1}]


def test_client_gone_cancels_the_statement(spawn, mydb):
    s = spawn(workers=1, env=env_for(mydb, database_statement_timeout="0"))
    c = Disconnecting(s, "/dbkit/query", {"sql": "SELECT SLEEP(20) AS client_gone_marker"})
    assert wait_for(lambda: running(mydb, "client_gone_marker") == 1, 3)
    c.close()
    assert wait_for(lambda: running(mydb, "client_gone_marker") == 0, 3), \
        "the statement of a client that left still runs"
    assert rows(s, "SELECT 1 AS one") == [{"one": 1}]


def test_slow_statement_does_not_block_the_worker(spawn, mydb):
    s = spawn(workers=1, env=env_for(mydb))
    slow = threading.Thread(target=q, args=(s, "SELECT SLEEP(1.5) AS z"))
    slow.start()
    time.sleep(0.2)
    r, took = timed(q, s, "SELECT 1 AS one")
    slow.join(10)
    assert ok(r)["rows"] == [{"one": 1}]
    assert took < 0.5, f"a quick statement waited {took:.2f}s behind a slow one"


def test_concurrent_transactions_across_workers(spawn, mydb):
    s = spawn(workers=2, env=env_for(mydb, database_pool_size=4))
    ok(q(s, "CREATE TABLE counter (id INT PRIMARY KEY, n INT NOT NULL)"))
    ok(q(s, "INSERT INTO counter VALUES (1, 0)"))
    threads, per = 12, 20
    failures = []

    def writer():
        with s.session() as sess:
            for _ in range(per):
                r = sess.post(s.url("/dbkit/tx"), timeout=30, json={"statements": [
                    st("SELECT n FROM counter WHERE id = $1 FOR UPDATE", 1),
                    st("UPDATE counter SET n = n + $1 WHERE id = $2", 1, 1)], "end": "commit"})
                if r.status_code != 200:
                    failures.append((r.status_code, r.headers.get("x-db-message")))

    ts = [threading.Thread(target=writer) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not failures, failures[:5]
    assert rows(s, "SELECT n FROM counter") == [{"n": threads * per}]
    assert not worker_deaths(s)


# ---- outages ----------------------------------------------------------------------------------


def recovers(s, timeout=15):
    return wait_for(lambda: q(s, "SELECT 1 AS one", timeout=5).status_code == 200, timeout,
                    interval=0.2)


def test_server_killed_mid_statement_then_restarted(spawn, mydb, mysql_server):
    server = mysql_server  # started again after the test, whatever happens
    s = spawn(workers=1, env=env_for(mydb, database_statement_timeout="0"))
    workers = s.worker_pids()
    ok(q(s, "SELECT 1 AS warm"))
    box = {}
    t = threading.Thread(target=lambda: box.update(r=q(s, "SELECT SLEEP(10) AS z", timeout=20)))
    t.start()
    time.sleep(0.5)
    server.kill()
    t.join(20)
    assert_db_problem(box["r"], 503, "unavailable")
    assert box["r"].headers.get("retry-after") == "1"
    # Down: every request answers 503 at once, nothing hangs.
    r, took = timed(q, s, "SELECT 1 AS one")
    assert_db_problem(r, 503, "unavailable")
    assert took < 2
    server.start()
    assert recovers(s), f"no recovery after the restart\n{s.log()[-2000:]}"
    assert s.worker_pids() == workers and not worker_deaths(s)


def test_server_stopped_while_connections_idle(spawn, mydb, mysql_server):
    server = mysql_server  # started again after the test, whatever happens
    s = spawn(workers=1, env=env_for(mydb, database_pool_size=3))
    workers = s.worker_pids()
    # Fill the pool with idle connections.
    threads = [threading.Thread(target=q, args=(s, "SELECT SLEEP(0.3) AS z")) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    server.stop()
    for _ in range(3):
        assert_db_problem(q(s, "SELECT 1 AS one"), 503, "unavailable")
    server.start()
    assert recovers(s)
    # Every pooled connection is a fresh one that works.
    for _ in range(5):
        assert rows(s, "SELECT 2 AS two") == [{"two": 2}]
    assert s.worker_pids() == workers and not worker_deaths(s)


def test_server_restarted_under_load(spawn, mydb, mysql_server):
    server = mysql_server  # started again after the test, whatever happens
    s = spawn(workers=2, env=env_for(mydb, database_pool_size=2))
    stop = threading.Event()
    statuses = []

    def load():
        with s.session() as sess:
            while not stop.is_set():
                try:
                    r = sess.post(s.url("/dbkit/query"), timeout=10,
                                  json={"sql": "SELECT $1 AS v", "params": [1]})
                    statuses.append(r.status_code)
                except Exception as e:  # noqa: BLE001 - recorded
                    statuses.append(repr(e))

    ts = [threading.Thread(target=load) for _ in range(4)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    server.restart()
    time.sleep(1.0)
    stop.set()
    for t in ts:
        t.join(20)
    assert set(statuses) <= {200, 503}, sorted(set(map(str, statuses)))
    assert statuses[-1] == 200 or recovers(s)
    assert not worker_deaths(s)


# ---- connecting -------------------------------------------------------------------------------


def test_wrong_password_is_503_naming_the_server(spawn, mydb):
    u = urllib.parse.urlsplit(mydb[0])
    bad = urllib.parse.urlunsplit((u.scheme, f"{u.username}:wrong@{u.hostname}:{u.port}",
                                   u.path, "", ""))
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL": bad})
    r = q(s, "SELECT 1")
    assert_db_problem(r, 503, "unavailable")
    assert f"{u.hostname}:{u.port}" in r.headers["x-db-message"]
    assert "denied" in r.headers["x-db-message"]
    assert not worker_deaths(s)


def test_silent_server_is_503_within_pool_timeout(spawn):
    # A port that accepts TCP connections but never says a word: the connect must give up
    # at database.pool_timeout, and the worker must go on serving meanwhile.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    try:
        port = lsock.getsockname()[1]
        s = spawn(workers=1, env={
            "NEXUS_DATABASE_URL": f"mysql://u:p@127.0.0.1:{port}/x",
            "NEXUS_DATABASE_POOL_TIMEOUT": "1s"})
        box = {}
        t = threading.Thread(target=lambda: box.update(r=timed(q, s, "SELECT 1")))
        t.start()
        time.sleep(0.3)
        health, took_health = timed(s.get, "/health")
        t.join(10)
        assert health.status_code == 200 and took_health < 0.5
        r, took = box["r"]
        assert_db_problem(r, 503, "unavailable")
        assert 0.8 < took < 2.5, f"pool_timeout 1s answered after {took:.2f}s"
        assert f"127.0.0.1:{port}" in r.headers["x-db-message"]
        assert not worker_deaths(s)
    finally:
        lsock.close()


def test_unix_socket_url(spawn, mydb):
    url, server = mydb
    if not server.dir:
        pytest.skip("the MariaDB socket path is known only for a scripts/services.sh server")
    sock = os.path.join(server.dir, "my", "sock")
    u = urllib.parse.urlsplit(url)
    via_socket = urllib.parse.urlunsplit((u.scheme, f"{u.username}:{u.password}@localhost",
                                          u.path, "host=" + sock, ""))
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL": via_socket})
    assert rows(s, "SELECT 1 AS one") == [{"one": 1}]


def test_url_options(spawn, mydb):
    u = urllib.parse.urlsplit(mydb[0])
    good = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path,
                                    "ssl-mode=disabled&charset=utf8mb4", ""))
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL": good})
    assert rows(s, "SELECT @@character_set_client AS cs") == [{"cs": "utf8mb4"}]
    bad = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path, "frobnicate=1", ""))
    s2 = spawn(workers=1, env={"NEXUS_DATABASE_URL": bad})
    r = q(s2, "SELECT 1")
    assert_db_problem(r, 503, "unavailable")
    assert "frobnicate" in r.headers["x-db-message"]


def test_required_tls_is_never_silently_plain(spawn, mydb):
    # libmariadb falls back to plain text when the server offers no TLS and certificates
    # are not checked; ssl-mode=required must refuse such a server instead.
    url, server = mydb
    c = sql_client(mydb)
    try:
        with c.cursor() as cur:
            cur.execute("SHOW VARIABLES LIKE 'have_ssl'")
            have_ssl = cur.fetchone()[1]
    finally:
        c.close()
    u = urllib.parse.urlsplit(url)
    s = spawn(workers=1, env={"NEXUS_DATABASE_URL": urllib.parse.urlunsplit(
        (u.scheme, u.netloc, u.path, "ssl-mode=required", ""))})
    if have_ssl == "YES":
        assert rows(s, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")[0]["Value"]
    else:
        r = q(s, "SELECT 1")
        assert_db_problem(r, 503, "unavailable")
        assert "TLS" in r.headers["x-db-message"]


def test_ready_checks_the_database(srv):
    r = srv.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["database"] == "ok"
