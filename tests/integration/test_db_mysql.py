"""The database layer (<nexus/db.h>) on MariaDB/MySQL (src/db/mysql.c), through dbkit.

The promises every backend shares (dbcases.py, imported below with this module's DIALECT)
and MySQL's own, checked against the session's MariaDB (scripts/services.sh:
NEXUS_TEST_MYSQL_URL, or a server the conftest starts for the session): typed values, $N
placeholders translated to ? (reused, out of order, inside literals), MySQL error numbers
mapped to the API's SQLSTATEs and statuses, server-side statement timeouts, abandoned
statements killed on the server, a server killed or stopped under load, and the
prepared-statement cache. Every module works in a database of its own, created here and
dropped at the end.
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

pytest.register_assert_rewrite("dbcases")

from dbcases import *  # noqa: E402,F401,F403 - the cases every backend runs (dbcases.__all__)
from dbcases import (MISUSE, Dialect, Disconnecting, assert_db_problem, blob,  # noqa: E402
                     db_error, get_values, in_threads, misuse_cases, ok, op, q, rows, st,
                     steps, timed, worker_deaths)
from dbcases import (test_batch_stops_at_the_first_failure,  # noqa: E402,F401
                     test_text_that_is_not_utf8_stays_json)

DIALECT = Dialect(
    backend="mysql",
    autoid="INT AUTO_INCREMENT PRIMARY KEY",
    table_count="SELECT count(*) AS n FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name = $1",
    rules=("CREATE TABLE parent (id INT PRIMARY KEY)",
           "CREATE TABLE rules (id INT AUTO_INCREMENT PRIMARY KEY, "
           "email VARCHAR(100) NOT NULL, age INT, parent INT, "
           "CONSTRAINT rules_email_key UNIQUE (email), "
           "CONSTRAINT rules_age_check CHECK (age >= 0), "
           "CONSTRAINT rules_parent_fk FOREIGN KEY (parent) REFERENCES parent(id))"),
    constraints={"unique": "rules_email_key", "primary": "PRIMARY", "check": "rules_age_check",
                 "foreign": "rules_parent_fk"},
    unique_code="1062",
    two_params="SELECT $1 AS a, $2 AS b",
    reorder="SELECT $2 AS a, $1 AS b, $1 + 1 AS c, CONCAT($2, $2) AS d",
    syntax_state="42000",
    unknown_table_state="42S02",
    sleep="SELECT SLEEP({s}) AS z",
    echo_text="SELECT CAST($1 AS BINARY) AS s",
)

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


@pytest.fixture
def pool1(spawn, mydb):
    return spawn(workers=1, env=env_for(mydb, database_pool_size=1, database_max_overflow=0,
                                        database_pool_timeout="500ms"))


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
    g, v = get_values(srv, "SELECT 42 AS i, 2.75e0 AS f, 'word' AS t, x'00ff41' AS b, "
                           "NULL AS n, '17' AS num_text, 3.5 AS dec_text, 'yes' AS yes, "
                           "0 AS zero", ncols=9)
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


def test_nul_and_large_values(srv):
    ok(q(srv, "CREATE TABLE big (id INT PRIMARY KEY, s LONGTEXT, b LONGBLOB)"))
    text = "a\x00b" + "é" * 300000
    data = os.urandom(1 << 20)
    ok(q(srv, "INSERT INTO big VALUES ($1, $2, $3)", 1, text, blob(data)))
    ok(q(srv, "INSERT INTO big VALUES ($1, $2, $3)", 2, "short", blob(b"x")))
    got = rows(srv, "SELECT id, s, b FROM big ORDER BY id")
    assert got[0]["s"] == text and base64.b64decode(got[0]["b"]) == data
    assert got[1] == {"id": 2, "s": "short", "b": base64.b64encode(b"x").decode()}


# ---- placeholders --------------------------------------------------------------------------


def test_placeholders_in_literals_and_comments_are_text(srv):
    got = rows(srv, "SELECT '$1' AS lit, 'it\\'s $2' AS esc, `$1` AS p -- $3\n"
                    "FROM (SELECT $1 AS `$1`) AS x", "v")
    assert got == [{"lit": "$1", "esc": "it's $2", "p": "v"}]
    assert rows(srv, "SELECT /* $9 */ $1 AS p", 5) == [{"p": 5}]


test_misuse_is_a_500_not_a_crash = misuse_cases(
    *MISUSE,
    ("SELECT ? AS a", [1], "misuse"),                # MySQL's own placeholder
    ("SELECT 1; SELECT 2", [], "query"),             # two statements: refused by prepare
)


# ---- affected rows, errors -----------------------------------------------------------------


def test_insert_returning(srv):
    ok(q(srv, "CREATE TABLE ret (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)"))
    a = ok(q(srv, "INSERT INTO ret (v) VALUES ($1) RETURNING id, v", "one"))["rows"]
    b = ok(q(srv, "INSERT INTO ret (v) VALUES ($1) RETURNING id, v", "two"))["rows"]
    assert a[0]["v"] == "one" and b == [{"id": a[0]["id"] + 1, "v": "two"}]
    r = ok(q(srv, "/* two */ INSERT INTO ret (v) VALUES ($1), ($2) RETURNING v", "x", "y"))
    assert r["rows"] == [{"v": "x"}, {"v": "y"}] and r["affected"] == 2
    r = ok(q(srv, "DELETE FROM ret WHERE v IN ($1, $2) RETURNING id", "x", "y"))
    assert len(r["rows"]) == 2 and r["affected"] == 2


def test_general_errors_are_500(srv):
    # Errors whose SQLSTATE is MySQL's catch-all HY000 are statement errors, not an outage.
    ok(q(srv, "CREATE TABLE ints (n INT)"))
    r = q(srv, "INSERT INTO ints VALUES ($1)", "not a number")
    assert r.status_code in (422, 500), r.text
    assert db_error(r)[0] in ("query", "constraint")
    assert rows(srv, "SELECT 1 AS one") == [{"one": 1}]


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

    in_threads(tx, [("a", 1, 2), ("b", 2, 1)], join=30)
    failed = [s for name in out for s in out[name] if not s["ok"]]
    assert len(failed) == 1, out
    assert failed[0]["error"]["kind"] == "conflict" and failed[0]["error"]["sqlstate"] == "40001"
    assert failed[0]["error"]["code"] == 1213
    # The winner's changes are in, the loser's are not.
    assert rows(srv, "SELECT SUM(n) AS s FROM dl") == [{"s": "2"}]


# ---- procedures and the statement cache ------------------------------------------------------


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

    in_threads(writer, [()] * threads, join=60)
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
    in_threads(q, [(s, "SELECT SLEEP(0.3) AS z")] * 3, join=10)
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


