"""Plugin migrations: `nexus migrate`, `nexus migrate status`, database.auto_migrate.

A plugin's migrations sit beside its .so in NAME/migrations/ (src/db/migrate.h). Each test
builds a plugins folder of its own: a copy of the migkit test plugin (tests/plugins/migkit)
or of loader cases (alpha depends on beta), with the migration files the test needs, then
runs the real binary against SQLite, PostgreSQL (the pg_url fixture) and, where it matters,
MariaDB. The helpers at the top are shared with test_backup.py.
"""

import hashlib
import os
import shutil
import sqlite3
import subprocess
import threading
import urllib.parse
import uuid

import pytest

from conftest import NEXUS_BIN, NEXUS_BUILD, Server

MIGKIT_SO = os.path.join(NEXUS_BUILD, "test-plugins", "migkit.so")
MIGKIT_MIGRATIONS = os.path.join(NEXUS_BUILD, "test-plugins", "migkit", "migrations")
CASES = os.path.join(NEXUS_BUILD, "plugin-cases")

# ---- helpers (imported by test_backup.py) ------------------------------------------------


def clean_env(extra=None):
    """Our environment without NEXUS_* variables, plus extra."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    e.update(extra or {})
    return e


def run_nexus(args, cwd, env=None, timeout=120, stdin=subprocess.DEVNULL):
    """Runs `nexus ARGS...` to completion: the CompletedProcess (text output)."""
    return subprocess.run([NEXUS_BIN] + [str(a) for a in args], cwd=str(cwd),
                          env=clean_env(env), stdin=stdin, capture_output=True, text=True,
                          timeout=timeout)


def plugins_dir(base, migrations=None, so=(MIGKIT_SO,), shipped=False):
    """A plugins folder: copies of the .so files, and for each plugin name in migrations a
    NAME/migrations/ folder with those files ({name: {filename: sql}}). shipped: migkit's own
    migrations (tests/plugins/migkit/migrations) are copied too."""
    d = os.path.join(str(base), f"plugins-{uuid.uuid4().hex[:8]}")
    os.makedirs(d)
    for path in so:
        shutil.copy(path, d)
    if shipped:
        shutil.copytree(MIGKIT_MIGRATIONS, os.path.join(d, "migkit", "migrations"))
    for plugin, files in (migrations or {}).items():
        write_migrations(d, plugin, files)
    return d


def write_migrations(pdir, plugin, files):
    mdir = os.path.join(pdir, plugin, "migrations")
    os.makedirs(mdir, exist_ok=True)
    for name, sql in files.items():
        with open(os.path.join(mdir, name), "w") as f:
            f.write(sql)
    return mdir


class Db:
    """One throwaway database and how to reach it: `env` configures nexus for it, `query`
    reads it from the test (sqlite3, psycopg2 or pymysql)."""

    def __init__(self, kind, env, connect, name):
        self.kind, self.env, self._connect, self.name = kind, env, connect, name

    def query(self, sql, *params):
        c = self._connect()
        try:
            cur = c.cursor()
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
            c.commit()
            return [tuple(r) for r in rows]
        finally:
            c.close()

    def tables(self):
        if self.kind == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        elif self.kind == "postgresql":
            sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        else:
            sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        return sorted(r[0].lower() for r in self.query(sql))


def sqlite_db(tmp_path, name="app.db"):
    path = os.path.join(str(tmp_path), name)
    return Db("sqlite", {"NEXUS_DATABASE_TYPE": "sqlite", "NEXUS_DATABASE_PATH": path},
              lambda: sqlite3.connect(path, timeout=30), path)


def _with_database(url, name):
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def pg_db(pg_url):
    """A new PostgreSQL database on the test server (dropped by drop_db)."""
    import psycopg2
    name = "mig_" + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(pg_url, connect_timeout=5)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    admin.close()
    url = _with_database(pg_url, name)
    return Db("postgresql", {"NEXUS_DATABASE_URL": url},
              lambda: psycopg2.connect(url, connect_timeout=5), name)


def mysql_db(mysql_url):
    import pymysql
    u = urllib.parse.urlsplit(mysql_url)
    name = "mig_" + uuid.uuid4().hex[:12]
    kw = dict(host=u.hostname, port=u.port, user=u.username, password=u.password,
              connect_timeout=5)
    admin = pymysql.connect(autocommit=True, **kw)
    admin.cursor().execute(f"CREATE DATABASE {name}")
    admin.close()
    return Db("mysql", {"NEXUS_DATABASE_URL": _with_database(mysql_url, name)},
              lambda: pymysql.connect(database=name, **kw), name)


def drop_db(db, admin_url):
    if db.kind == "postgresql":
        import psycopg2
        c = psycopg2.connect(admin_url, connect_timeout=5)
        c.autocommit = True
        c.cursor().execute(f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")
        c.close()
    elif db.kind == "mysql":
        import pymysql
        u = urllib.parse.urlsplit(admin_url)
        c = pymysql.connect(host=u.hostname, port=u.port, user=u.username, password=u.password,
                            autocommit=True, connect_timeout=5)
        c.cursor().execute(f"DROP DATABASE IF EXISTS {db.name}")
        c.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A fresh database of each backend the migrations promise the same behaviour on."""
    if request.param == "sqlite":
        yield sqlite_db(tmp_path)
        return
    url = request.getfixturevalue("pg_url")
    d = pg_db(url)
    yield d
    drop_db(d, url)


def migrate(db, pdir, cwd, *args, timeout=120):
    return run_nexus(["migrate", *args, "--plugins-dir", pdir], cwd, db.env, timeout=timeout)


def applied(db):
    """The rows of schema_migrations: [(plugin, version, name, checksum)] in order."""
    return db.query("SELECT plugin, version, name, checksum FROM schema_migrations "
                    "ORDER BY plugin, version")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def assert_ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


# ---- applying ------------------------------------------------------------------------------


def test_applies_in_order_records_and_second_run_changes_nothing(db, tmp_path):
    pdir = plugins_dir(tmp_path, shipped=True)
    r = assert_ok(migrate(db, pdir, tmp_path))
    lines = [ln.split() for ln in r.stdout.splitlines() if ": applied " in ln]
    assert [ln[:3] for ln in lines] == [["migkit:", "applied", "0001_items"],
                                        ["migkit:", "applied", "0002_runs"],
                                        ["migkit:", "applied", "0003_backend"]], r.stdout

    mdir = os.path.join(pdir, "migkit", "migrations")
    variant = {"sqlite": "sqlite", "postgresql": "postgresql"}[db.kind]
    files = {1: f"0001_items.{variant}.sql", 2: "0002_runs.sql", 3: f"0003_backend.{variant}.sql"}
    assert applied(db) == [("migkit", v, n, sha256(os.path.join(mdir, files[v])))
                           for v, n in ((1, "items"), (2, "runs"), (3, "backend"))]
    stamps = db.query("SELECT applied_at FROM schema_migrations")
    assert all(s[0] for s in stamps)
    assert db.query("SELECT migration FROM migkit_runs ORDER BY migration") == [
        ("0002_runs",), ("0003_backend",)]

    # A second run finds everything recorded and runs nothing again.
    r2 = assert_ok(migrate(db, pdir, tmp_path))
    assert "up to date" in r2.stdout and ": applied " not in r2.stdout, r2.stdout
    assert len(db.query("SELECT * FROM migkit_runs")) == 2
    assert len(applied(db)) == 3


def test_backend_variant_wins_over_the_plain_file(db, tmp_path):
    pdir = plugins_dir(tmp_path, shipped=True)
    assert_ok(migrate(db, pdir, tmp_path))
    assert db.query("SELECT v FROM migkit_meta WHERE k = 'backend'") == [(db.kind,)]


def test_mysql_without_a_variant_runs_the_plain_file(request, tmp_path):
    url = request.getfixturevalue("mysql_url")
    d = mysql_db(url)
    try:
        pdir = plugins_dir(tmp_path, shipped=True)
        assert_ok(migrate(d, pdir, tmp_path))
        assert d.query("SELECT v FROM migkit_meta WHERE k = 'backend'") == [("plain",)]
        assert [r[:3] for r in applied(d)] == [("migkit", 1, "items"), ("migkit", 2, "runs"),
                                               ("migkit", 3, "backend")]
        assert "up to date" in assert_ok(migrate(d, pdir, tmp_path)).stdout
    finally:
        drop_db(d, url)


def test_plugins_in_dependency_order_then_by_number(tmp_path):
    """alpha depends on beta: beta's migrations run first although alpha sorts first by name;
    within a plugin 2 comes before 10 (numbers, not text)."""
    db = sqlite_db(tmp_path)
    pdir = plugins_dir(tmp_path, so=[os.path.join(CASES, "alpha.so"),
                                     os.path.join(CASES, "beta.so")], migrations={
        "beta": {"2_log.sql": "CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                              "who TEXT NOT NULL);\nINSERT INTO log (who) VALUES ('beta 2');",
                 "10_more.sql": "INSERT INTO log (who) VALUES ('beta 10');"},
        "alpha": {"0001_uses_log.sql": "INSERT INTO log (who) VALUES ('alpha 1');"},
    })
    r = assert_ok(migrate(db, pdir, tmp_path))
    assert db.query("SELECT who FROM log ORDER BY id") == [("beta 2",), ("beta 10",),
                                                            ("alpha 1",)], r.stdout
    assert [ln.split(":")[0] for ln in r.stdout.splitlines() if ": applied " in ln] == [
        "beta", "beta", "alpha"]


FAILING = {
    "0001_first.sql": "CREATE TABLE first_t (x INTEGER);",
    "0002_broken.sql": "CREATE TABLE second_t (x INTEGER);\n"
                       "INSERT INTO second_t (x) VALUES (1);\n"
                       "INSERT INTO no_such_table (x) VALUES (1);\n",
    "0003_after.sql": "CREATE TABLE third_t (x INTEGER);",
}


def test_failing_migration_rolls_back_and_stops(db, tmp_path):
    pdir = plugins_dir(tmp_path, migrations={"migkit": FAILING})
    r = migrate(db, pdir, tmp_path)
    assert r.returncode == 1, r
    err = r.stderr
    assert "migration failed" in err and "plugin migkit" in err, err
    assert os.path.join(pdir, "migkit", "migrations", "0002_broken.sql") in err, err
    assert "no_such_table" in err, err  # the database's own message
    assert "rolled back" in err, err
    # 0001 stays applied; 0002 left nothing behind (not even its first statements); 0003 never
    # ran.
    assert [r[1] for r in applied(db)] == [1]
    assert db.tables() == ["first_t", "schema_migrations"]

    # Once the file is fixed, the next run goes on from there.
    write_migrations(pdir, "migkit", {"0002_broken.sql": "CREATE TABLE second_t (x INTEGER);"})
    assert_ok(migrate(db, pdir, tmp_path))
    assert [r[1] for r in applied(db)] == [1, 2, 3]
    assert db.tables() == ["first_t", "schema_migrations", "second_t", "third_t"]


@pytest.mark.parametrize("files, says", [
    ({"0001-dash.sql": "SELECT 1;"}, "must start with a number and '_'"),
    ({"0001_x.postgres.sql": "SELECT 1;"}, "'postgres' is not a backend"),
    ({"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;"}, "have the same number"),
    ({"0001_a b.sql": "SELECT 1;"}, "letters, digits"),
])
def test_malformed_migration_folder_is_refused_before_anything_runs(tmp_path, files, says):
    db = sqlite_db(tmp_path)
    pdir = plugins_dir(tmp_path, migrations={"migkit": {"0000_ok.sql": "CREATE TABLE t (x);",
                                                        **files}})
    r = migrate(db, pdir, tmp_path)
    assert r.returncode == 1, r
    assert says in r.stderr and "plugin migkit" in r.stderr, r.stderr
    assert not os.path.exists(db.name) or db.tables() == []


def test_config_error_exits_78(tmp_path):
    pdir = plugins_dir(tmp_path, shipped=True)
    r = run_nexus(["migrate", "--plugins-dir", pdir], tmp_path,
                  {"NEXUS_DATABASE_URL": "nosuch://x"})
    assert r.returncode == 78, r
    assert "database.url" in r.stderr


def test_unreachable_database_exits_1(tmp_path):
    pdir = plugins_dir(tmp_path, shipped=True)
    r = run_nexus(["migrate", "--plugins-dir", pdir], tmp_path,
                  {"NEXUS_DATABASE_URL": "postgresql://u:p@127.0.0.1:1/x?connect_timeout=2",
                   "NEXUS_DATABASE_POOL_TIMEOUT": "3s"}, timeout=60)
    assert r.returncode == 1, r
    assert "127.0.0.1" in r.stderr, r.stderr


# ---- status ------------------------------------------------------------------------------


def status_rows(out):
    """{(plugin, version): state} from the table `nexus migrate status` prints."""
    rows = {}
    for ln in out.splitlines()[1:]:
        parts = ln.split()
        if len(parts) >= 4 and parts[1].isdigit():
            rows[(parts[0], parts[1])] = parts[3]
    return rows


def test_status_lists_applied_pending_and_changed(db, tmp_path):
    pdir = plugins_dir(tmp_path, migrations={"migkit": {
        "0001_one.sql": "CREATE TABLE one_t (x INTEGER);",
        "0002_two.sql": "CREATE TABLE two_t (x INTEGER);"}})
    r = assert_ok(migrate(db, pdir, tmp_path, "status"))
    assert status_rows(r.stdout) == {("migkit", "0001"): "pending",
                                     ("migkit", "0002"): "pending"}, r.stdout
    assert "0 applied, 2 pending" in r.stdout
    assert db.kind != "sqlite" or "schema_migrations" not in db.tables()  # status writes nothing

    assert_ok(migrate(db, pdir, tmp_path))
    write_migrations(pdir, "migkit", {"0003_three.sql": "CREATE TABLE three_t (x INTEGER);",
                                      "0001_one.sql": "CREATE TABLE one_t (x BIGINT);"})
    r = assert_ok(migrate(db, pdir, tmp_path, "status"))
    assert status_rows(r.stdout) == {("migkit", "0001"): "changed",
                                     ("migkit", "0002"): "applied",
                                     ("migkit", "0003"): "pending"}, r.stdout
    assert "2 applied, 1 pending" in r.stdout
    assert "warning" in r.stderr and "0001_one.sql changed since it was applied" in r.stderr, \
        r.stderr
    # The applied row has a time.
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("migkit") and "0002" in ln)
    assert line.rstrip().endswith("Z"), line

    # A changed file is not run again; migrate warns about it too.
    r = assert_ok(migrate(db, pdir, tmp_path))
    assert "0001_one.sql changed since it was applied" in r.stderr
    assert [x[1] for x in applied(db)] == [1, 2, 3]

    # A recorded migration whose file is gone is listed as missing.
    os.remove(os.path.join(pdir, "migkit", "migrations", "0002_two.sql"))
    r = assert_ok(migrate(db, pdir, tmp_path, "status"))
    assert status_rows(r.stdout)[("migkit", "0002")] == "missing", r.stdout


# ---- many replicas at once -----------------------------------------------------------------


def start_together(cmds, cwd, env, timeout=120):
    """Starts every command at once (after all are forked) and returns their results."""
    barrier = threading.Barrier(len(cmds))
    results = [None] * len(cmds)

    def one(i):
        barrier.wait()
        results[i] = run_nexus(cmds[i], cwd, env, timeout=timeout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(cmds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def slow_migrations(kind):
    """migkit's migrations plus a slow one, so that the racers overlap for a while."""
    slow = ("SELECT pg_sleep(0.3);" if kind == "postgresql" else
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) "
            "SELECT count(*) FROM n;")
    return {"0004_slow.sql": slow + "\nINSERT INTO migkit_runs (migration) VALUES ('0004_slow');"}


def test_eight_migrate_processes_apply_each_migration_once(db, tmp_path):
    pdir = plugins_dir(tmp_path, shipped=True, migrations={"migkit": slow_migrations(db.kind)})
    results = start_together([["migrate", "--plugins-dir", pdir]] * 8, tmp_path, db.env)
    for r in results:
        assert_ok(r)
    assert sorted(db.query("SELECT migration FROM migkit_runs")) == [
        ("0002_runs",), ("0003_backend",), ("0004_slow",)]
    assert [r[1] for r in applied(db)] == [1, 2, 3, 4]
    applied_lines = sum(r.stdout.count(": applied ") for r in results)
    raced = sum(r.stdout.count("by another process meanwhile") for r in results)
    assert applied_lines == 4, [r.stdout for r in results]
    assert raced <= 4 * 7


def test_two_servers_with_auto_migrate_apply_each_migration_once(db, tmp_path, spawn):
    pdir = plugins_dir(tmp_path, shipped=True, migrations={"migkit": slow_migrations(db.kind)})
    env = dict(db.env, NEXUS_DATABASE_AUTO_MIGRATE="true")
    servers = [spawn(workers=2, env=env, args=["--plugins-dir", pdir], wait=False)
               for _ in range(2)]
    for s in servers:
        s.wait_healthy(timeout=60)
    assert sorted(db.query("SELECT migration FROM migkit_runs")) == [
        ("0002_runs",), ("0003_backend",), ("0004_slow",)]
    assert [r[1] for r in applied(db)] == [1, 2, 3, 4]
    for s in servers:
        r = s.request("POST", "/migkit/batches?rows=3")
        assert r.status_code == 201, r.text
        assert "database.auto_migrate" in s.log()
    assert servers[0].get("/migkit/summary").json() == {"rows": 6, "batches": 2, "torn": 0}


def test_auto_migrate_failure_stops_the_server_before_workers(tmp_path):
    db = sqlite_db(tmp_path)
    pdir = plugins_dir(tmp_path, migrations={"migkit": FAILING})
    srv = Server(os.path.join(str(tmp_path), "srv"), workers=2, args=["--plugins-dir", pdir],
                 env=dict(db.env, NEXUS_DATABASE_AUTO_MIGRATE="true"))
    srv.start(wait=False)
    rc = srv.wait_exit(30)
    if rc is None:
        srv.kill_all()
    assert rc not in (None, 0), srv.log_tail()
    log = srv.log()
    assert "0002_broken.sql" in log and "no_such_table" in log, log
    assert "not starting" in log
    assert "listening" not in log  # the master stopped before its workers
    assert [r[1] for r in applied(db)] == [1]


def test_auto_migrate_off_by_default(tmp_path, spawn):
    db = sqlite_db(tmp_path)
    pdir = plugins_dir(tmp_path, shipped=True)
    spawn(env=db.env, args=["--plugins-dir", pdir])
    assert not os.path.exists(db.name) or "schema_migrations" not in db.tables()


def test_help_and_unknown_subcommand(tmp_path):
    r = run_nexus(["migrate", "--help"], tmp_path)
    assert r.returncode == 0 and "nexus migrate status" in r.stdout
    r = run_nexus(["migrate", "sideways"], tmp_path)
    assert r.returncode == 64 and "unknown subcommand" in r.stderr
