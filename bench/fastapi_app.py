"""The TechEmpower database shapes in FastAPI, the reference bench/db.sh measures Nexus against.

    GET /db                    {"id": N, "randomNumber": M}, one random World row
    GET /queries?queries=20    a JSON array of that many rows (1..500), one query each
    GET /fortunes              the Fortune table plus one row added per request, sorted by
                               message, as an escaped HTML table
    GET /updates?queries=20    that many rows read one by one, given new random numbers and
                               written back with one executemany; the new rows as JSON
    GET /health                200, for the start-up check

Written the way a FastAPI user would write it (and the way TechEmpower's FastAPI entry does):
asyncpg with one pool per worker process, opened at start-up; a statement prepared once
per request and run per row; explicit JSONResponse (no jsonable_encoder pass); jinja2 with
autoescape for the HTML (html.escape if jinja2 is missing). orjson is not packaged for
Debian 12, so the JSON is Starlette's json.dumps.

    BENCH_DATABASE_URL=postgresql://user:pw@127.0.0.1:5432/db BENCH_DB_POOL=16 \\
        /usr/bin/python3 -m uvicorn --app-dir bench fastapi_app:app --host 127.0.0.1 \\
        --port 8080 --workers 1 --no-access-log --log-level warning

uvicorn picks uvloop and httptools when they are installed (Debian python3-uvloop,
python3-httptools), as its "standard" install does; /health reports what it runs with.
"""

import asyncio
import importlib.util
import os
import random

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

try:
    import jinja2
except ImportError:  # plain html.escape gives the same bytes for this template
    jinja2 = None
    import html

DATABASE_URL = os.environ.get("BENCH_DATABASE_URL") or os.environ["DATABASE_URL"]
POOL_SIZE = int(os.environ.get("BENCH_DB_POOL", "16"))

READ_ROW_SQL = "SELECT id, randomnumber FROM world WHERE id = $1"
WRITE_ROW_SQL = "UPDATE world SET randomnumber = $2 WHERE id = $1"
FORTUNES_SQL = "SELECT id, message FROM fortune"
ADDITIONAL_FORTUNE = (0, "Additional fortune added at request time.")

TEMPLATE = (
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
    "{% for id, message in fortunes %}<tr><td>{{ id }}</td><td>{{ message }}</td></tr>"
    "{% endfor %}</table></body></html>"
)

if jinja2 is not None:
    _template = jinja2.Environment(autoescape=True).from_string(TEMPLATE)

    def render_fortunes(fortunes):
        return _template.render(fortunes=fortunes)

else:

    def render_fortunes(fortunes):
        rows = "".join(
            "<tr><td>%d</td><td>%s</td></tr>" % (i, html.escape(m)) for i, m in fortunes
        )
        return (
            "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
            "<tr><th>id</th><th>message</th></tr>" + rows + "</table></body></html>"
        )


app = FastAPI()
pool = None


@app.on_event("startup")
async def open_pool():
    global pool
    pool = await asyncpg.create_pool(DATABASE_URL, min_size=POOL_SIZE, max_size=POOL_SIZE)


@app.on_event("shutdown")
async def close_pool():
    await pool.close()


def query_count(raw):
    """TechEmpower's rule: an integer clamped to 1..500; anything else counts as 1."""
    try:
        n = int(raw)
    except (TypeError, ValueError):
        return 1
    return min(max(n, 1), 500)


@app.get("/health")
async def health():
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"  # uvicorn's auto
    templates = "jinja2" if jinja2 is not None else "html.escape"
    return PlainTextResponse(f"loop={loop} http={http} templates={templates} pool={POOL_SIZE}\n")


@app.get("/db")
async def single_query():
    row_id = random.randint(1, 10000)
    async with pool.acquire() as conn:
        number = await conn.fetchval(READ_ROW_SQL, row_id)
    return JSONResponse({"id": row_id, "randomNumber": number})


@app.get("/queries")
async def multiple_queries(queries: str = None):
    ids = random.sample(range(1, 10001), query_count(queries))
    async with pool.acquire() as conn:
        stmt = await conn.prepare(READ_ROW_SQL)
        worlds = []
        for row_id in ids:
            row = await stmt.fetchrow(row_id)
            worlds.append({"id": row[0], "randomNumber": row[1]})
    return JSONResponse(worlds)


@app.get("/fortunes")
async def fortunes(request: Request):
    async with pool.acquire() as conn:
        rows = await conn.fetch(FORTUNES_SQL)
    rows = [(r[0], r[1]) for r in rows]
    rows.append(ADDITIONAL_FORTUNE)
    rows.sort(key=lambda r: r[1])
    return HTMLResponse(render_fortunes(rows))


@app.get("/updates")
async def updates(queries: str = None):
    # sorted ids: concurrent requests then lock their rows in the same order (no deadlocks)
    ids = sorted(random.sample(range(1, 10001), query_count(queries)))
    async with pool.acquire() as conn:
        stmt = await conn.prepare(READ_ROW_SQL)
        worlds = []
        for row_id in ids:
            row = await stmt.fetchrow(row_id)
            worlds.append({"id": row[0], "randomNumber": random.randint(1, 10000)})
        await conn.executemany(WRITE_ROW_SQL, [(w["id"], w["randomNumber"]) for w in worlds])
    return JSONResponse(worlds)
