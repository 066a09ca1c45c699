"""The TechEmpower database shapes of the bundled hello plugin: /db, /queries, /fortunes and
/updates (https://github.com/TechEmpower/FrameworkBenchmarks, rounds 20 and later).

Each test runs once per backend (SQLite, PostgreSQL, MariaDB) against a fresh database of
this module, migrated by `nexus migrate`: hello's migrations create World (10000 rows) and
Fortune (the 12 standard fortunes). What the server answers is checked against the
database itself, read directly.
"""

import html
import json
import os
import re
import signal
import threading

import pytest

from conftest import assert_problem, raw_request
from test_todo import BACKENDS, fresh_database, migrate

WORLD_RE = re.compile(r'^\{"id":(\d+),"randomNumber":(\d+)\}$')

FORTUNES = {
    1: "fortune: No such file or directory",
    2: "A computer scientist is someone who fixes things that aren't broken.",
    3: "After enough decimal places, nobody gives a damn.",
    4: "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1",
    5: "A computer program does what you tell it to do, not what you want it to do.",
    6: "Emacs is a nice operating system, but I prefer UNIX. \u2014 Tom Christaensen",
    7: "Any program that runs right is obsolete.",
    8: "A list is only as strong as its weakest link. \u2014 Donald Knuth",
    9: "Feature: A bug with seniority.",
    10: "Computers make very fast, very accurate mistakes.",
    11: '<script>alert("This should not be displayed in a browser alert box.");</script>',
    12: "フレームワークのベンチマーク",
}
EXTRA = "Additional fortune added at request time."

# The page the benchmark's verifier expects, with this server's choice of escapes.
FORTUNES_HTML = (
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
    "<tr><td>11</td><td>&lt;script&gt;alert(&quot;This should not be displayed in a browser "
    "alert box.&quot;);&lt;/script&gt;</td></tr>"
    "<tr><td>4</td><td>A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1</td></tr>"
    "<tr><td>5</td><td>A computer program does what you tell it to do, not what you want it to "
    "do.</td></tr>"
    "<tr><td>2</td><td>A computer scientist is someone who fixes things that aren&#39;t "
    "broken.</td></tr>"
    "<tr><td>8</td><td>A list is only as strong as its weakest link. \u2014 Donald Knuth</td></tr>"
    "<tr><td>0</td><td>Additional fortune added at request time.</td></tr>"
    "<tr><td>3</td><td>After enough decimal places, nobody gives a damn.</td></tr>"
    "<tr><td>7</td><td>Any program that runs right is obsolete.</td></tr>"
    "<tr><td>10</td><td>Computers make very fast, very accurate mistakes.</td></tr>"
    "<tr><td>6</td><td>Emacs is a nice operating system, but I prefer UNIX. \u2014 Tom "
    "Christaensen</td></tr>"
    "<tr><td>9</td><td>Feature: A bug with seniority.</td></tr>"
    "<tr><td>1</td><td>fortune: No such file or directory</td></tr>"
    "<tr><td>12</td><td>フレームワークのベンチマーク</td></tr>"
    "</table></body></html>")


@pytest.fixture(scope="module", params=BACKENDS)
def database(request, tmp_path_factory):
    db = fresh_database(request, request.param, tmp_path_factory, "tfb")
    migrate(db, tmp_path_factory.mktemp("migrate"))
    yield db
    db.drop()


@pytest.fixture(scope="module")
def srv(spawn_module, database):
    s = spawn_module(workers=2, name=f"tfb-{database.backend}", env=database.env)
    yield s
    s.stop()  # before the database is dropped


def worlds(database):
    """{id: randomNumber} of the whole World table, read directly."""
    return dict(database.rows("SELECT id, randomNumber FROM World"))


def world(r):
    """The rows of a /db, /queries or /updates answer, checked for shape: [(id, number)]."""
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0].strip() == "application/json"
    doc = r.json()
    rows = doc if isinstance(doc, list) else [doc]
    out = []
    for item in rows:
        assert list(item) == ["id", "randomNumber"], item  # exact keys, in order
        assert type(item["id"]) is int and type(item["randomNumber"]) is int, item
        assert 1 <= item["id"] <= 10000 and 1 <= item["randomNumber"] <= 10000, item
        out.append((item["id"], item["randomNumber"]))
    return out


# ---- the tables ----------------------------------------------------------------------------

def test_migrations_seed_world_and_fortune(database):
    w = worlds(database)
    assert sorted(w) == list(range(1, 10001))
    assert all(1 <= n <= 10000 for n in w.values())
    assert len(set(w.values())) > 5000  # drawn at random, not one value for all
    assert dict(database.rows("SELECT id, message FROM Fortune")) == FORTUNES


# ---- /db -----------------------------------------------------------------------------------

def test_db_answers_one_random_row(srv, database):
    w = worlds(database)
    seen = set()
    for _ in range(30):
        r = srv.get("/db")
        assert WORLD_RE.match(r.text), r.text
        ((wid, number),) = world(r)
        assert w[wid] == number
        seen.add(wid)
    assert len(seen) > 20


def test_workers_draw_different_rows(spawn, database):
    """Each worker seeds its generator itself: two workers forked from one master do not
    answer the same sequence of rows."""
    s = spawn(workers=2, env=database.env)
    s.wait_workers(2)
    conns, stopped = [], []
    try:
        for _ in range(2):  # a connection on each worker (see test_todo's steering)
            c = s.raw(timeout=10)
            conns.append(c)
            c.send(raw_request("GET", "/test/pid"))
            pid = int(c.read_response().body)
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    try:
        assert stopped[0] != stopped[1]
        seqs = []
        for c in conns:
            ids = []
            for _ in range(20):
                c.send(raw_request("GET", "/db"))
                ids.append(json.loads(c.read_response().body)["id"])
            seqs.append(ids)
        assert seqs[0] != seqs[1]
    finally:
        for c in conns:
            c.close()


# ---- /queries ------------------------------------------------------------------------------

@pytest.mark.parametrize("value,count", [
    (None, 1), ("", 1), ("0", 1), ("-1", 1), ("abc", 1), ("5abc", 1), ("1.5", 1),
    ("-99999999999999999999", 1), ("1", 1), ("2", 2), ("20", 20), ("500", 500), ("501", 500),
    ("1000", 500), ("99999999999999999999", 500),
])
def test_queries_count_is_clamped(srv, database, value, count):
    path = "/queries" if value is None else f"/queries?queries={value}"
    r = srv.get(path)
    rows = world(r)
    assert isinstance(r.json(), list) and len(rows) == count, (path, len(rows))
    w = worlds(database)
    assert all(w[wid] == number for wid, number in rows)


def test_queries_rows_are_random(srv):
    rows = world(srv.get("/queries?queries=500"))
    assert len({wid for wid, _ in rows}) > 450  # 500 draws of 10000: ~12 repeats expected


@pytest.mark.parametrize("value,count", [
    (None, 1), ("0", 1), ("abc", 1), ("2", 2), ("20", 20), ("500", 500), ("501", 500),
])
def test_cached_queries_count_is_clamped(srv, database, value, count):
    path = "/cached-queries" if value is None else f"/cached-queries?count={value}"
    rows = world(srv.get(path))
    assert len(rows) == count, (path, len(rows))
    w = worlds(database)
    assert all(w[wid] == number for wid, number in rows)


def test_cached_queries_fill_the_cache_and_then_read_it(srv, database):
    # 500 draws twice: the second pass finds (nearly) every row in the cache, and the
    # values it hands out are still the table's.
    for _ in range(3):
        rows = world(srv.get("/cached-queries?count=500"))
        w = worlds(database)
        assert all(w[wid] == number for wid, number in rows)


# ---- /fortunes -----------------------------------------------------------------------------

def test_fortunes_page(srv):
    r = srv.get("/fortunes")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.content.decode("utf-8") == FORTUNES_HTML


def test_fortunes_are_escaped_sorted_and_complete(srv):
    body = srv.get("/fortunes").content.decode("utf-8")
    assert "<script>" not in body and "&lt;script&gt;" in body
    cells = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td></tr>", body)
    rows = [(int(i), html.unescape(m)) for i, m in cells]
    assert dict(rows) == {**FORTUNES, 0: EXTRA}
    messages = [m for _, m in rows]
    assert messages == sorted(messages)  # code point order
    assert rows[0][0] == 11 and rows[-1][0] == 12


def test_the_added_fortune_is_not_stored(srv, database):
    for _ in range(3):
        assert srv.get("/fortunes").status_code == 200
    assert dict(database.rows("SELECT id, message FROM Fortune")) == FORTUNES


def test_head_fortunes(srv):
    with srv.raw() as c:
        c.send(raw_request("HEAD", "/fortunes"))
        r = c.read_response("HEAD")
    assert r.status == 200 and r.body == b""
    assert int(r.headers["content-length"]) == len(FORTUNES_HTML.encode())


# ---- /updates ------------------------------------------------------------------------------

def check_updates(database, before, rows):
    """Every row answered is stored with its new number (for an id drawn twice, the later
    one), which differs from the number it had; no other row changed."""
    after = worlds(database)
    last = dict(rows)
    for wid, number in last.items():
        assert after[wid] == number, (wid, after[wid], number)
        assert number != before[wid], wid
    assert {k: v for k, v in after.items() if k not in last} == \
        {k: v for k, v in before.items() if k not in last}


@pytest.mark.parametrize("n", [1, 20, 500])
def test_updates_change_the_rows(srv, database, n):
    before = worlds(database)
    rows = world(srv.get(f"/updates?queries={n}"))
    assert len(rows) == n
    check_updates(database, before, rows)


@pytest.mark.parametrize("value,count", [
    (None, 1), ("0", 1), ("-1", 1), ("abc", 1), ("501", 500),
])
def test_updates_count_is_clamped(srv, database, value, count):
    before = worlds(database)
    path = "/updates" if value is None else f"/updates?queries={value}"
    rows = world(srv.get(path))
    assert len(rows) == count, (path, len(rows))
    check_updates(database, before, rows)


def test_concurrent_updates_all_succeed(srv, database):
    """Overlapping /updates from many clients: no deadlock, no lost request (rows are
    written in id order, in one transaction per request)."""
    failures, answered = [], []
    lock = threading.Lock()

    def run():
        with srv.session() as session:
            for _ in range(10):
                try:
                    r = session.get(srv.url("/updates?queries=20"), timeout=30)
                    with lock:
                        if r.status_code == 200:
                            answered.append(len(r.json()))
                        else:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                except Exception as e:  # noqa: BLE001 - every failure is recorded
                    with lock:
                        failures.append(repr(e))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures[:5]
    assert answered == [20] * 80
    assert len(worlds(database)) == 10000


# ---- without the tables --------------------------------------------------------------------

def test_without_migrations_the_routes_answer_500(spawn, request, tmp_path_factory):
    db = fresh_database(request, "sqlite", tmp_path_factory, "bare")
    s = spawn(workers=1, env=db.env)
    for path in ("/db", "/queries?queries=3", "/updates?queries=3", "/fortunes"):
        assert_problem(s.get(path), 500, instance=path.split("?")[0])
    assert s.get("/plaintext").text == "Hello, World!"
