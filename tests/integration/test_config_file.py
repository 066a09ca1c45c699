"""The YAML config file against the real binary: `nexus serve --config F` applies it, a bad
file stops start-up with exit 78 and nothing listening, `nexus config check|show` (exit
codes, sources, secrets never printed), unknown NEXUS_* variables warned about, and the
example configs shipped in config/ valid."""

import os
import socket
import subprocess

import pytest
import yaml

from conftest import EX_CONFIG, NEXUS_BIN, PLUGINS_DIR, ROOT, free_port, wait_for

JWT = "integration-jwt-secret-0123456789abcdef"  # 39 bytes


def _clean_env(extra=None):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("NEXUS_") and k != "DATABASE_URL"}
    e.update(extra or {})
    return e


def _nexus(args, cwd, env=None, timeout=10):
    """Runs `nexus ARGS` to completion: (returncode, stdout, stderr)."""
    p = subprocess.Popen([NEXUS_BIN] + [str(a) for a in args], cwd=str(cwd),
                         env=_clean_env(env), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        p.communicate()
        raise AssertionError(f"nexus {args} kept running")
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _write(path, text):
    path.write_text(text)
    return str(path)


def _listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid_of_new_connection(srv):
    with srv.raw() as c:
        c.send(b"GET /test/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return int(c.read_response().body)


# ---- serve --config ------------------------------------------------------------------------

def test_serve_applies_file(spawn, tmp_path):
    port = free_port()
    cfg = _write(tmp_path / "nexus.yaml", f"""
app:
  host: 127.0.0.1
  port: {port}
  workers: 3
server:
  large_client_header_buffer: 1k
logging:
  access_log: "off"
""")
    srv = spawn(flags=False, port=port, access_log=None, args=["--config", cfg])
    assert srv.get("/health").json() == {"status": "ok"}
    pids = srv.wait_workers(3)
    seen = {_pid_of_new_connection(srv) for _ in range(60)}
    assert seen <= set(pids), (seen, pids)
    assert srv.pid not in seen
    # (which worker accepts is the kernel's choice: one may take them all, so the count
    # of workers is checked by wait_workers, the exact number of the master's children)
    # a header field over the file's 1k limit is refused; the default (8k) would take it
    r = srv.get("/health", headers={"X-Long": "a" * 2000})
    assert r.status_code == 431, r.status_code
    # access log off: nothing about the requests on stdout
    srv.stop()
    assert "/test/pid" not in srv.stdout(), srv.stdout()[-2000:]


def test_serve_file_access_log_path(spawn, tmp_path):
    """The positive control of the previous test: the file's access_log is used."""
    port = free_port()
    log = tmp_path / "access.log"
    cfg = _write(tmp_path / "nexus.yaml", f"""
app: {{host: 127.0.0.1, port: {port}, workers: 1}}
logging: {{access_log: "{log}"}}
""")
    srv = spawn(flags=False, port=port, access_log=None, args=["--config", cfg])
    srv.get("/test/pid")
    assert wait_for(lambda: log.exists() and "/test/pid" in log.read_text(), 5), \
        f"no access log line in {log}"


def test_flags_beat_file(spawn, tmp_path):
    other = free_port()
    cfg = _write(tmp_path / "nexus.yaml", f"app:\n  port: {other}\n  workers: 3\n")
    srv = spawn(workers=1, args=["--config", cfg])
    srv.wait_workers(1)
    assert not _listening(other), "listening on the file's port despite --port"


def test_nexus_config_variable(spawn, tmp_path):
    port = free_port()
    cfg = _write(tmp_path / "nexus.yaml", f"app:\n  host: 127.0.0.1\n  port: {port}\n"
                                          f"  workers: 2\n")
    srv = spawn(flags=False, port=port, env={"NEXUS_CONFIG": cfg})
    srv.wait_workers(2)


BAD_FILES = [
    ("unknown key", "app:\n  prot: {port}\n", ["app.prot", "did you mean 'app.port'", ":2"]),
    ("type", "app:\n  port: {port}\n  workers: many\n", ["app.workers", "'many'", ":3"]),
    ("yaml", "app:\n  port: {port}\n bad: 1\n", ["invalid YAML", ":3"]),
    ("unset var", "app:\n  port: {port}\n  host: ${{NX_IT_UNSET_VAR}}\n",
     ["NX_IT_UNSET_VAR", ":3"]),
    ("production", "app:\n  port: {port}\n  environment: production\n", ["auth.jwt_secret"]),
    ("duplicate key", "app:\n  port: {port}\n  workers: 1\n  port: {port}\n",
     ["app.port is given twice (first on line 2)", ":4"]),
]


@pytest.mark.parametrize("name,text,needles", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_exit_78(tmp_path, name, text, needles):
    port = free_port()
    cfg = _write(tmp_path / "bad.yaml", text.format(port=port))
    rc, out, err = _nexus(["serve", "--config", cfg, "--plugins-dir", PLUGINS_DIR,
                           "--workers", "1"], tmp_path)
    assert rc == EX_CONFIG, (rc, err)
    assert cfg in err, err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    assert not _listening(port)


def test_missing_file_exit_78(tmp_path):
    rc, _, err = _nexus(["serve", "--config", tmp_path / "nope.yaml", "--workers", "1",
                         "--port", str(free_port())], tmp_path)
    assert rc == EX_CONFIG
    assert "nope.yaml" in err, err


# ---- config check ----------------------------------------------------------------------------

def test_config_check_exit_codes(tmp_path):
    good = _write(tmp_path / "good.yaml", "app:\n  port: 8123\n")
    rc, out, err = _nexus(["config", "check", "--config", good], tmp_path)
    assert rc == 0, err
    assert good in out
    assert err == "", err

    bad = _write(tmp_path / "bad.yaml", "app:\n  port: 0\n")
    rc, out, err = _nexus(["config", "check", "--config", bad], tmp_path)
    assert rc == EX_CONFIG
    assert f"{bad}:2" in err and "app.port" in err, err

    # flags and variables are checked too
    rc, _, err = _nexus(["config", "check", "--config", good, "--port", "http"], tmp_path)
    assert rc == EX_CONFIG and "--port" in err, err
    rc, _, err = _nexus(["config", "check"], tmp_path, env={"NEXUS_APP_WORKERS": "-1"})
    assert rc == EX_CONFIG and "NEXUS_APP_WORKERS" in err, err

    # no file at all: defaults are valid
    rc, out, err = _nexus(["config", "check"], tmp_path)
    assert rc == 0, err


def test_config_check_discovers_config_dir(tmp_path):
    (tmp_path / "config").mkdir()
    _write(tmp_path / "config" / "config.yaml", "app:\n  workers: lots\n")
    rc, _, err = _nexus(["config", "check"], tmp_path)
    assert rc == EX_CONFIG
    assert "config/config.yaml:2" in err, err


def test_config_usage_errors(tmp_path):
    rc, _, _ = _nexus(["config"], tmp_path)
    assert rc == 64
    rc, _, err = _nexus(["config", "frobnicate"], tmp_path)
    assert rc == 64 and "frobnicate" in err


# ---- config show -----------------------------------------------------------------------------

def test_config_show_never_prints_secrets(tmp_path):
    secrets = {
        "file": "file-secret-redis-PW-1234567890",
        "file_dsn": "https://dsn-secret-abcdef@sentry.example/1",
        "env": "env-secret-db-PW-0987654321",
        "file_var": "filevar-secret-jwt-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "alias": "alias-secret-cache-PW-55555",
        "url": "url-secret-in-database-url",
    }
    jwt_file = _write(tmp_path / "jwt", secrets["file_var"] + "\n")
    cfg = _write(tmp_path / "nexus.yaml", f"""
app:
  environment: production
cache:
  redis:
    password: "{secrets['file']}"
monitoring:
  sentry_dsn: "{secrets['file_dsn']}"
""")
    env = {
        "NEXUS_DATABASE_PASSWORD": secrets["env"],
        "NEXUS_AUTH_JWT_SECRET_FILE": jwt_file,
        "DATABASE_URL": f"postgresql://u:{secrets['url']}@db/x",
    }
    rc, out, err = _nexus(["config", "show", "--config", cfg], tmp_path, env=env)
    assert rc == 0, err
    for what, s in secrets.items():
        assert s not in out and s not in err, f"{what} secret printed"
    assert out.count("(redacted)") >= 5, out
    assert "# environment NEXUS_DATABASE_PASSWORD" in out
    assert "NEXUS_AUTH_JWT_SECRET_FILE" in out
    assert "# environment DATABASE_URL" in out
    assert f"# {cfg}:6" in out, out
    assert f"# {cfg}:3" in out, out
    assert "# default" in out

    # the alias variable of a secret is a secret too
    env2 = {"NEXUS_CACHE_PASSWORD": secrets["alias"]}
    rc, out, err = _nexus(["config", "show"], tmp_path, env=env2)
    assert rc == 0, err
    assert secrets["alias"] not in out + err
    assert "# environment NEXUS_CACHE_PASSWORD" in out


def test_config_show_is_yaml_with_values(tmp_path):
    cfg = _write(tmp_path / "nexus.yaml", "app:\n  port: 9876\ncache:\n  host: redis-service\n")
    rc, out, err = _nexus(["config", "show", "--config", cfg, "--workers", "5"], tmp_path,
                          env={"NEXUS_LOGGING_LEVEL": "warn"})
    assert rc == 0, err
    doc = yaml.safe_load(out)
    assert doc["app"]["port"] == "9876"
    assert doc["app"]["workers"] == "5"
    assert doc["logging"]["level"] == "warn"
    assert doc["cache"]["redis"]["host"] == "redis-service"
    assert doc["server"]["graceful_timeout"] == "30s"
    lines = out.splitlines()
    for expected in (f'  port: "9876"  # {cfg}:2', '  workers: "5"  # flag --workers',
                     '  level: "warn"  # environment NEXUS_LOGGING_LEVEL',
                     f'    host: "redis-service"  # {cfg}:4'):
        assert expected in lines, f"{expected!r} not a line of:\n{out}"


def test_config_show_bad_config_exit_78(tmp_path):
    rc, out, err = _nexus(["config", "show"], tmp_path, env={"NEXUS_APP_PORT": "x"})
    assert rc == EX_CONFIG
    assert "NEXUS_APP_PORT" in err


# ---- unknown variables -----------------------------------------------------------------------

def test_unknown_variable_warns_but_serves(spawn):
    srv = spawn(env={"NEXUS_APP_PROT": "1234", "NEXUS_CACHE_REDIS_HOTS": "x"})
    assert srv.get("/health").status_code == 200
    log = srv.log()
    assert "unknown variable NEXUS_APP_PROT" in log, log
    assert "NEXUS_APP_PORT" in log
    assert "unknown variable NEXUS_CACHE_REDIS_HOTS" in log
    assert "NEXUS_CACHE_REDIS_HOST" in log


# ---- the shipped configs ---------------------------------------------------------------------

def test_shipped_dev_config_valid(tmp_path):
    rc, out, err = _nexus(["config", "check", "--config", os.path.join(ROOT, "config",
                                                                       "config.yaml")], tmp_path)
    assert rc == 0, err
    assert err == "", err
    # and found by default from the repo root
    rc, out, err = _nexus(["config", "check"], ROOT)
    assert rc == 0, err
    assert "config/config.yaml" in out, out


def test_shipped_prod_config_valid(tmp_path):
    prod = os.path.join(ROOT, "config", "config.prod.yaml")
    rc, _, err = _nexus(["config", "check", "--config", prod], tmp_path)
    assert rc == EX_CONFIG, "production config accepted without a JWT secret"
    assert "auth.jwt_secret" in err

    secret = _write(tmp_path / "jwt", JWT + "\n")
    env = {"NEXUS_AUTH_JWT_SECRET_FILE": secret}
    rc, out, err = _nexus(["config", "check", "--config", prod], tmp_path, env=env)
    assert rc == 0, err
    assert err == "", err
    rc, out, err = _nexus(["config", "show", "--config", prod], tmp_path, env=env)
    assert rc == 0, err
    doc = yaml.safe_load(out)
    assert doc["app"]["environment"] == "production"
    assert doc["database"]["host"] == "db.production.local"
    assert doc["cache"]["redis"]["host"] == "redis.production.local"
    assert JWT not in out


def test_shipped_prod_config_variables_not_warned(tmp_path):
    """config.prod.yaml reads ${DB_HOST} and ${REDIS_HOST}: setting them, as the file
    invites, must work without any warning."""
    prod = os.path.join(ROOT, "config", "config.prod.yaml")
    env = {"NEXUS_AUTH_JWT_SECRET_FILE": _write(tmp_path / "jwt", JWT),
           "DB_HOST": "db.example", "REDIS_HOST": "redis.example"}
    rc, out, err = _nexus(["config", "show", "--config", prod], tmp_path, env=env)
    assert rc == 0, err
    doc = yaml.safe_load(out)
    assert doc["database"]["host"] == "db.example"
    assert doc["cache"]["redis"]["host"] == "redis.example"
    assert "warning" not in err, err
