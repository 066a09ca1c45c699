"""`nexus backup` and `nexus restore`: archives of the configured database, their checksum,
`--verify`, `--force`, and SQLite backups and restores while a server writes.

The migkit test plugin (tests/plugins/migkit) writes batches of rows in one transaction each,
every row knowing how many rows its batch has: a copy that caught a transaction half-way
would hold a "torn" batch. The helpers come from test_migrate.py.
"""

import os
import pty
import select
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import NEXUS_BIN
from test_migrate import (assert_ok, clean_env, drop_db, migrate, mysql_db, pg_db, plugins_dir,
                          run_nexus, sqlite_db)

ITEMS = "SELECT id, batch, seq, note FROM migkit_items ORDER BY id"
MIGRATIONS = "SELECT plugin, version, name, checksum FROM schema_migrations ORDER BY plugin, version"


def torn(conn_or_db):
    """Batches whose rows are not all there."""
    sql = ("SELECT batch FROM migkit_items GROUP BY batch HAVING COUNT(*) <> MAX(note)")
    if isinstance(conn_or_db, sqlite3.Connection):
        return conn_or_db.execute(sql).fetchall()
    return conn_or_db.query(sql)


def open_archive(path):
    """A read-only connection to a SQLite archive (the archive is never changed)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x20]))


def sha256sum_check(archive):
    return subprocess.run(["sha256sum", "-c", os.path.basename(archive) + ".sha256"],
                          cwd=os.path.dirname(archive), capture_output=True, text=True)


class Writers:
    """Threads posting batches to /migkit/batches; every acknowledged batch is recorded with
    the time it was acknowledged."""

    def __init__(self, srv, n=3, rows=40):
        self.srv, self.rows = srv, rows
        self.acks = []  # (monotonic time, batch)
        self.failures = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self):
        with self.srv.session() as s:
            while not self.stop_ev.is_set():
                try:
                    r = s.post(self.srv.url(f"/migkit/batches?rows={self.rows}"), timeout=60)
                except Exception as e:  # noqa: BLE001 - recorded
                    with self.lock:
                        self.failures.append(repr(e))
                    continue
                with self.lock:
                    if r.status_code == 201:
                        self.acks.append((time.monotonic(), r.json()["batch"]))
                    else:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")

    def count(self):
        with self.lock:
            return len(self.acks)

    def between(self, t0, t1):
        with self.lock:
            return {b for t, b in self.acks if t0 < t < t1}

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=60)


def start_server(spawn, tmp_path, db, workers=2, prefill=0):
    """A server on db with migkit's tables; prefill: rows of one big batch written first, so
    that copying the database takes a while."""
    pdir = plugins_dir(tmp_path, shipped=True)
    if prefill:
        assert_ok(migrate(db, pdir, tmp_path))
        c = sqlite3.connect(db.name)
        c.execute("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                  "INSERT INTO migkit_items (batch, seq, note) SELECT 0, i, ? FROM n",
                  (prefill - 1, prefill))
        c.commit()
        c.close()
    env = dict(db.env, NEXUS_DATABASE_AUTO_MIGRATE="true")
    return spawn(workers=workers, env=env, args=["--plugins-dir", pdir], wait=True)


# ---- SQLite ------------------------------------------------------------------------------


def test_sqlite_backup_while_the_server_writes_is_consistent_and_restores(tmp_path, spawn):
    db = sqlite_db(tmp_path)
    srv = start_server(spawn, tmp_path, db, prefill=300000)
    archives = []
    with Writers(srv) as w:
        assert wait_until(lambda: w.count() >= 20, 20), w.failures
        for i in range(3):
            out = os.path.join(str(tmp_path), f"backup{i}.db")
            r = assert_ok(run_nexus(["backup", "--output", out], tmp_path, db.env))
            assert "backup of the sqlite database written to" in r.stdout
            assert r.stderr == "", r.stderr  # no progress bar: stderr is not a terminal
            archives.append(out)
            time.sleep(0.2)
    assert not w.failures, w.failures[:5]

    for out in archives:
        assert os.stat(out).st_mode & 0o777 == 0o600
        check = sha256sum_check(out)
        assert check.returncode == 0 and ": OK" in check.stdout, check.stdout + check.stderr
        c = open_archive(out)
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert c.execute("SELECT COUNT(*) FROM migkit_items").fetchone()[0] > 0
        assert torn(c) == [], f"{out} caught a transaction half-way"
        c.close()
        assert not os.path.exists(out + "-wal")
        v = assert_ok(run_nexus(["restore", "--verify", out], tmp_path, db.env))
        assert "checksum ok" in v.stdout and "integrity ok" in v.stdout, v.stdout

    # Round trip into a new, empty database: the same rows, the same migrations.
    other = sqlite_db(tmp_path, "restored/other.db")
    r = assert_ok(run_nexus(["restore", archives[-1]], tmp_path, other.env))
    assert "restored the sqlite database" in r.stdout
    a = open_archive(archives[-1])
    assert other.query(ITEMS) == a.execute(ITEMS).fetchall()
    assert other.query(MIGRATIONS) == a.execute(MIGRATIONS).fetchall()
    a.close()
    assert other.query("PRAGMA integrity_check") == [("ok",)]


def wait_until(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_sqlite_restore_under_a_running_server_switches_at_once(tmp_path, spawn):
    db = sqlite_db(tmp_path)
    srv = start_server(spawn, tmp_path, db, workers=3, prefill=300000)
    archive = os.path.join(str(tmp_path), "snap.db")
    seen = []
    stop_reading = threading.Event()

    def reader():
        with srv.session() as s:
            while not stop_reading.is_set():
                r = s.get(srv.url("/migkit/summary"), timeout=60)
                seen.append((r.status_code, r.json() if r.status_code == 200 else r.text))

    with Writers(srv) as w:
        assert wait_until(lambda: w.count() >= 10, 20), w.failures
        assert_ok(run_nexus(["backup", "--output", archive], tmp_path, db.env))
        backup_done = time.monotonic()
        assert wait_until(lambda: len(w.between(backup_done, 1e18)) >= 10, 20), w.failures
        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        restore_start = time.monotonic()
        r = assert_ok(run_nexus(["restore", "--force", archive], tmp_path, db.env))
        restore_end = time.monotonic()
        assert wait_until(lambda: len(w.between(restore_end, 1e18)) >= 10, 20), w.failures
        stop_reading.set()
        rt.join(timeout=60)
    assert "restored the sqlite database" in r.stdout
    assert not w.failures, w.failures[:5]  # writers waited for the restore, none failed
    bad = [s for s in seen if s[0] != 200 or s[1]["torn"] != 0]
    assert not bad, bad[:5]
    assert len({s[1]["rows"] for s in seen}) > 1, "the readers saw the database only once"
    print(f"restore took {restore_end - restore_start:.3f}s; {len(seen)} reads, "
          f"{len(w.between(restore_start, restore_end))} writes acknowledged meanwhile")

    c = sqlite3.connect(db.name)
    batches = {b for (b,) in c.execute("SELECT DISTINCT batch FROM migkit_items")}
    a = open_archive(archive)
    in_archive = {b for (b,) in a.execute("SELECT DISTINCT batch FROM migkit_items")}
    assert in_archive <= batches  # the archive's rows are all back
    lost = w.between(backup_done, restore_start)  # committed before the restore began
    assert lost and not (lost - in_archive) & batches, "writes older than the restore survived"
    assert w.between(restore_end, 1e18) <= batches  # writes after it are kept
    assert torn(c) == []
    assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_sqlite_restore_refused_over_a_non_empty_database(tmp_path):
    db = sqlite_db(tmp_path)
    assert_ok(migrate(db, plugins_dir(tmp_path, shipped=True), tmp_path))
    db.query("INSERT INTO migkit_items (batch, seq, note) VALUES (1, 0, 1)")
    archive = os.path.join(str(tmp_path), "a.db")
    assert_ok(run_nexus(["backup", "-o", archive], tmp_path, db.env))
    db.query("INSERT INTO migkit_items (batch, seq, note) VALUES (2, 0, 1)")

    r = run_nexus(["restore", archive], tmp_path, db.env)
    assert r.returncode == 1, r
    assert "not empty" in r.stderr and "--force" in r.stderr and "migkit_items" in r.stderr, \
        r.stderr
    assert db.query("SELECT batch FROM migkit_items ORDER BY batch") == [(1,), (2,)]

    assert_ok(run_nexus(["restore", archive, "--force"], tmp_path, db.env))
    assert db.query("SELECT batch FROM migkit_items ORDER BY batch") == [(1,)]


def test_verify_good_corrupted_and_unchecked_archives(tmp_path):
    db = sqlite_db(tmp_path)
    assert_ok(migrate(db, plugins_dir(tmp_path, shipped=True), tmp_path))
    for i in range(200):
        db.query("INSERT INTO migkit_items (batch, seq, note) VALUES (?, 0, 1)", i)
    archive = os.path.join(str(tmp_path), "good.db")
    assert_ok(run_nexus(["backup", "--output", archive], tmp_path, db.env))
    target = sqlite_db(tmp_path, "target.db")

    r = assert_ok(run_nexus(["restore", "--verify", archive], tmp_path, target.env))
    assert f"{archive}: checksum ok" in r.stdout
    assert not os.path.exists(target.name), "--verify restored something"

    # One flipped bit: the checksum no longer matches.
    bad = os.path.join(str(tmp_path), "bad.db")
    shutil.copy(archive, bad)
    shutil.copy(archive + ".sha256", bad + ".sha256")
    with open(bad + ".sha256", "r+") as f:
        line = f.read().replace("good.db", "bad.db")
        f.seek(0)
        f.write(line)
    flip_byte(bad, os.path.getsize(bad) // 2)
    for args in (["restore", "--verify", bad], ["restore", bad]):
        r = run_nexus(args, tmp_path, target.env)
        assert r.returncode == 1, r
        assert "checksum mismatch" in r.stderr, r.stderr
        assert not os.path.exists(target.name)
    assert sha256sum_check(bad).returncode != 0

    # A checksum written for a damaged file: the archive must still open and pass the
    # integrity check.
    with open(bad, "r+b") as f:
        f.truncate(os.path.getsize(bad) // 2)
    digest = subprocess.run(["sha256sum", "bad.db"], cwd=str(tmp_path), capture_output=True,
                            text=True).stdout
    with open(bad + ".sha256", "w") as f:
        f.write(digest)
    r = run_nexus(["restore", "--verify", bad], tmp_path, target.env)
    assert r.returncode == 1 and "bad.db" in r.stderr, r
    assert "checksum ok" not in r.stdout

    # No checksum file: --verify cannot vouch for it; a restore warns and goes on.
    os.remove(archive + ".sha256")
    r = run_nexus(["restore", "--verify", archive], tmp_path, target.env)
    assert r.returncode == 1 and "no checksum file" in r.stderr, r
    r = assert_ok(run_nexus(["restore", archive], tmp_path, target.env))
    assert "warning" in r.stderr and "unchecked" in r.stderr
    assert len(target.query("SELECT * FROM migkit_items")) == 200


def test_backup_errors(tmp_path):
    r = run_nexus(["backup"], tmp_path)
    assert r.returncode == 64 and "--output FILE is required" in r.stderr, r
    r = run_nexus(["restore"], tmp_path)
    assert r.returncode == 64, r
    missing = sqlite_db(tmp_path, "nothing-here.db")
    out = os.path.join(str(tmp_path), "x.db")
    r = run_nexus(["backup", "--output", out], tmp_path, missing.env)
    assert r.returncode == 1 and "no SQLite database at" in r.stderr, r
    assert os.listdir(str(tmp_path)) == [], "a failed backup left files behind"
    r = run_nexus(["backup", "--output", out], tmp_path, {"NEXUS_DATABASE_URL": "nosuch://"})
    assert r.returncode == 78, r
    r = run_nexus(["restore", "--verify", os.path.join(str(tmp_path), "absent.db")], tmp_path)
    assert r.returncode == 1 and "absent.db" in r.stderr, r
    with open(os.path.join(str(tmp_path), "junk.bin"), "wb") as f:
        f.write(b"not an archive at all\n" * 10)
    r = run_nexus(["restore", "--verify", "junk.bin"], tmp_path)
    assert r.returncode == 1 and "not an archive of nexus backup" in r.stderr, r


def test_progress_bar_only_on_a_terminal(tmp_path):
    db = sqlite_db(tmp_path)
    assert_ok(migrate(db, plugins_dir(tmp_path, shipped=True), tmp_path))
    out = os.path.join(str(tmp_path), "p.db")
    r = assert_ok(run_nexus(["backup", "--output", out], tmp_path, db.env))
    assert r.stderr == ""

    # The same with stderr on a pseudo-terminal.
    os.remove(out)
    os.remove(out + ".sha256")
    master, slave = pty.openpty()
    p = subprocess.Popen([NEXUS_BIN, "backup", "--output", out], cwd=str(tmp_path),
                         env=clean_env(db.env), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    tty = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        tty += chunk
    p.wait(timeout=30)
    os.close(master)
    assert p.returncode == 0
    assert b"\rbackup" in tty and b"100%" in tty, tty


# ---- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture
def pg(pg_url):
    made = []

    def make():
        d = pg_db(pg_url)
        made.append(d)
        return d

    yield make
    for d in made:
        drop_db(d, pg_url)


def fake_tool(tmp_path, name, real):
    """A wrapper named name, first in PATH, that records its arguments and PG* variables."""
    bindir = os.path.join(str(tmp_path), "bin")
    os.makedirs(bindir, exist_ok=True)
    path = os.path.join(bindir, name)
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {bindir}/{name}.args\n"
                f"env | grep '^PG' > {bindir}/{name}.env\nexec {real} \"$@\"\n")
    os.chmod(path, 0o755)
    return bindir


def test_pg_backup_verify_and_restore_round_trip(tmp_path, pg):
    src = pg()
    assert_ok(migrate(src, plugins_dir(tmp_path, shipped=True), tmp_path))
    for b in range(1, 21):
        for s in range(b % 4 + 1):
            src.query("INSERT INTO migkit_items (batch, seq, note) VALUES (%s, %s, %s)", b, s,
                      b % 4 + 1)
    archive = os.path.join(str(tmp_path), "pg.dump")
    bindir = fake_tool(tmp_path, "pg_dump", shutil.which("pg_dump") or
                       "/usr/lib/postgresql/15/bin/pg_dump")
    env = dict(src.env, PATH=bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
    r = assert_ok(run_nexus(["backup", "--output", archive], tmp_path, env))
    assert "backup of the postgresql database" in r.stdout
    args = open(os.path.join(bindir, "pg_dump.args")).read()
    penv = open(os.path.join(bindir, "pg_dump.env")).read()
    password = src.env["NEXUS_DATABASE_URL"].split(":")[2].split("@")[0]
    assert "--format=custom" in args and password not in args, args
    assert f"PGPASSWORD={password}" in penv and f"PGDATABASE={src.name}" in penv, penv
    with open(archive, "rb") as f:
        assert f.read(5) == b"PGDMP"
    assert sha256sum_check(archive).returncode == 0

    v = assert_ok(run_nexus(["restore", "--verify", archive], tmp_path, src.env))
    assert "checksum ok" in v.stdout and "PostgreSQL archive" in v.stdout, v.stdout

    # Into an empty database: the same rows and migrations.
    dst = pg()
    r = assert_ok(run_nexus(["restore", archive], tmp_path, dst.env))
    assert f"restored the postgresql database {dst.name}" in r.stdout
    assert dst.query(ITEMS) == src.query(ITEMS)
    assert dst.query(MIGRATIONS) == src.query(MIGRATIONS)
    assert "up to date" in assert_ok(
        migrate(dst, plugins_dir(tmp_path, shipped=True), tmp_path)).stdout

    # Over a database with tables: refused without --force; with it, the archive's tables
    # come back as they were.
    before = src.query(ITEMS)
    src.query("DELETE FROM migkit_items WHERE batch > 10")
    src.query("INSERT INTO migkit_items (batch, seq, note) VALUES (99, 0, 1)")
    r = run_nexus(["restore", archive], tmp_path, src.env)
    assert r.returncode == 1 and "not empty" in r.stderr and "--force" in r.stderr, r
    assert len(src.query("SELECT * FROM migkit_items WHERE batch = 99")) == 1
    assert_ok(run_nexus(["restore", "--force", archive], tmp_path, src.env))
    assert src.query(ITEMS) == before


def test_pg_corrupted_archive_is_refused(tmp_path, pg):
    src = pg()
    assert_ok(migrate(src, plugins_dir(tmp_path, shipped=True), tmp_path))
    archive = os.path.join(str(tmp_path), "pg.dump")
    assert_ok(run_nexus(["backup", "--output", archive], tmp_path, src.env))
    flip_byte(archive, os.path.getsize(archive) - 40)
    dst = pg()
    for args in (["restore", "--verify", archive], ["restore", archive]):
        r = run_nexus(args, tmp_path, dst.env)
        assert r.returncode == 1 and "checksum mismatch" in r.stderr, r
    assert dst.tables() == []


def test_archive_of_another_backend_is_refused(tmp_path, pg):
    lite = sqlite_db(tmp_path)
    assert_ok(migrate(lite, plugins_dir(tmp_path, shipped=True), tmp_path))
    archive = os.path.join(str(tmp_path), "lite.db")
    assert_ok(run_nexus(["backup", "--output", archive], tmp_path, lite.env))
    dst = pg()
    r = run_nexus(["restore", archive], tmp_path, dst.env)
    assert r.returncode == 1, r
    assert "the configured database is postgresql" in r.stderr, r.stderr
    assert dst.tables() == []


# ---- MySQL ---------------------------------------------------------------------------------


def test_mysql_backup_and_restore_round_trip(tmp_path, request):
    url = request.getfixturevalue("mysql_url")
    src, dst = mysql_db(url), mysql_db(url)
    try:
        assert_ok(migrate(src, plugins_dir(tmp_path, shipped=True), tmp_path))
        for b in range(1, 11):
            src.query("INSERT INTO migkit_items (batch, seq, note) VALUES (%s, 0, 1)", b)
        archive = os.path.join(str(tmp_path), "my.sql")
        assert_ok(run_nexus(["backup", "--output", archive], tmp_path, src.env))
        assert sha256sum_check(archive).returncode == 0
        assert "complete MySQL dump" in assert_ok(
            run_nexus(["restore", "--verify", archive], tmp_path, dst.env)).stdout
        assert_ok(run_nexus(["restore", archive], tmp_path, dst.env))
        assert dst.query(ITEMS) == src.query(ITEMS)
        assert dst.query(MIGRATIONS) == src.query(MIGRATIONS)
        r = run_nexus(["restore", archive], tmp_path, src.env)
        assert r.returncode == 1 and "not empty" in r.stderr, r
        assert_ok(run_nexus(["restore", "--force", archive], tmp_path, src.env))
        assert src.query(ITEMS) == dst.query(ITEMS)
    finally:
        drop_db(src, url)
        drop_db(dst, url)
