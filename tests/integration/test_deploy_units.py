"""The deployment files in deploy/: the systemd unit, the Supervisor program and the
production environment example are checked against the real binary and its defaults.

systemd-analyze comes from the Debian package `systemd`; no service manager needs to run.
"""

import configparser
import os
import re
import shutil
import subprocess

import pytest

from conftest import NEXUS_BIN, ROOT, config_values

DEPLOY = os.path.join(ROOT, "deploy")
UNIT = os.path.join(DEPLOY, "systemd", "nexus.service")
SUPERVISOR = os.path.join(DEPLOY, "supervisor", "nexus.conf")
ENV_PRODUCTION = os.path.join(DEPLOY, "env", ".env.production")

# The guide's .env.production, every variable of which the example must keep.
GUIDE_VARS = """
NEXUS_APP_NAME NEXUS_APP_ENVIRONMENT NEXUS_APP_DEBUG NEXUS_APP_HOST NEXUS_APP_PORT
NEXUS_APP_WORKERS NEXUS_DATABASE_TYPE NEXUS_DATABASE_HOST NEXUS_DATABASE_PORT
NEXUS_DATABASE_NAME NEXUS_DATABASE_USER NEXUS_DATABASE_PASSWORD NEXUS_DATABASE_POOL_SIZE
NEXUS_DATABASE_MAX_OVERFLOW NEXUS_CACHE_TYPE NEXUS_CACHE_REDIS_HOST NEXUS_CACHE_REDIS_PORT
NEXUS_CACHE_REDIS_PASSWORD NEXUS_CACHE_REDIS_DB NEXUS_CACHE_REDIS_MAX_CONNECTIONS
NEXUS_AUTH_JWT_SECRET NEXUS_AUTH_JWT_ALGORITHM NEXUS_AUTH_TOKEN_EXPIRY
NEXUS_AUTH_REFRESH_TOKEN_EXPIRY NEXUS_SECURITY_HTTPS_ENABLED NEXUS_SECURITY_HTTPS_REDIRECT
NEXUS_SECURITY_RATE_LIMIT_ENABLED NEXUS_SECURITY_RATE_LIMIT_REQUESTS
NEXUS_SECURITY_RATE_LIMIT_WINDOW NEXUS_MONITORING_SENTRY_DSN
NEXUS_MONITORING_SENTRY_ENVIRONMENT NEXUS_MONITORING_PROMETHEUS_ENABLED
NEXUS_MONITORING_METRICS_PORT
""".split()

# A stand-in for the secret the operator fills in; long enough for the production rules.
TEST_JWT_SECRET = "deploy-test-only-" + "x" * 40


def _env():
    """The caller's environment without NEXUS_* variables that would change the outcome."""
    return {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}


def _seconds(span):
    """A systemd/nexus duration ('45s', '1min 30s', '500ms', '30', '0') in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    span = span.strip()
    if re.fullmatch(r"\d+(\.\d+)?", span):
        return float(span)
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", span)
    assert parts and "".join(n + u for n, u in parts) == span.replace(" ", ""), span
    for n, u in parts:
        assert u in units, f"unknown time unit in {span!r}"
        total += float(n) * units[u]
    return total


def _unit_settings(path):
    """{key: [values]} of the [Service] section (systemd allows repeated keys)."""
    out, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def _env_file(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                out[name.strip()] = value.strip()
    return out


def _schema_defaults():
    """{key: default} of the built-in schema, from `nexus config show` with no file."""
    res = subprocess.run([NEXUS_BIN, "config", "show", "--env-file", "/dev/null"],
                         capture_output=True, text=True, env=_env(), cwd="/", timeout=30)
    assert res.returncode == 0, res.stderr
    return config_values(res.stdout)


def _server_stop_budget(env_vars):
    """shutdown_delay + graceful_timeout in seconds: built-in defaults, and with the
    production example's values."""
    d = _schema_defaults()
    default = _seconds(d["server.shutdown_delay"]) + _seconds(d["server.graceful_timeout"])
    prod = _seconds(env_vars.get("NEXUS_SERVER_SHUTDOWN_DELAY", d["server.shutdown_delay"])) + \
        _seconds(env_vars.get("NEXUS_SERVER_GRACEFUL_TIMEOUT", d["server.graceful_timeout"]))
    return default, prod


# ---- systemd ----------------------------------------------------------------------------

@pytest.mark.parametrize("unit,name", [
    ("nexus.service", "nexus.service"),
    ("nexus@.service", "nexus@8001.service"),  # a template verifies as one of its instances
])
def test_systemd_unit_verifies(tmp_path, unit, name):
    analyze = shutil.which("systemd-analyze")
    assert analyze, ("systemd-analyze is missing: scripts/install-deps.sh must install the "
                     "Debian package 'systemd'")
    with open(os.path.join(DEPLOY, "systemd", unit)) as f:
        text = f.read()
    # verify checks that ExecStart's binary exists: point it at the built one, and run as
    # a user that exists on the test machine.
    assert "ExecStart=/usr/local/bin/nexus serve " in text
    text = text.replace("=/usr/local/bin/nexus ", f"={NEXUS_BIN} ")
    text = re.sub(r"(?m)^(User|Group)=nexus$", r"\1=root", text)
    copy = tmp_path / name
    copy.write_text(text)
    res = subprocess.run([analyze, "verify", "--man=no", "--generators=no",
                          "--recursive-errors=no", str(copy)],
                         capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    # Unknown keys and bad values are only warnings (exit 0): no line may name the unit.
    ours = [l for l in out.splitlines() if name.split("@")[0] in l]
    assert not ours, out


def test_systemd_unit_settings():
    s = _unit_settings(UNIT)
    svc = lambda k: s.get(("Service", k), [None])[-1]  # noqa: E731
    assert svc("Type") in ("simple", "exec")  # nexus does not call sd_notify
    assert svc("ExecStart") == "/usr/local/bin/nexus serve --config /etc/nexus/config.yaml"
    assert svc("EnvironmentFile") == "-/etc/nexus/nexus.env"
    assert svc("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert svc("KillSignal") == "SIGTERM"
    assert svc("Restart") == "on-failure"
    assert "78" in svc("RestartPreventExitStatus").split()
    assert svc("User") == "nexus"
    assert svc("WorkingDirectory") == "/var/lib/nexus"
    assert svc("NoNewPrivileges") == "true"
    assert svc("ProtectSystem") == "strict"
    assert svc("ProtectHome") == "true"
    assert svc("PrivateTmp") == "true"
    assert svc("CapabilityBoundingSet") == ""
    assert svc("LimitNOFILE") == "65536"
    assert set(svc("ReadWritePaths").split()) == {"/var/lib/nexus", "/var/log/nexus"}


def test_systemd_stop_timeout_covers_graceful_shutdown():
    default, prod = _server_stop_budget(_env_file(ENV_PRODUCTION))
    assert default >= 30  # graceful_timeout is 30s by default
    stop = _seconds(_unit_settings(UNIT)[("Service", "TimeoutStopSec")][-1])
    assert stop > default and stop > prod, (stop, default, prod)


# ---- Supervisor ---------------------------------------------------------------------------

def test_supervisor_program():
    cp = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    assert cp.read(SUPERVISOR) == [SUPERVISOR]
    assert cp.sections() == ["program:nexus"]
    p = cp["program:nexus"]
    assert p["command"].split()[:4] == ["/usr/local/bin/nexus", "serve", "--config",
                                        "/etc/nexus/config.yaml"]
    assert "--env-file /etc/nexus/nexus.env" in p["command"]
    assert p["stopsignal"] == "TERM"
    assert p["autorestart"] == "unexpected"
    assert set(p["exitcodes"].split(",")) == {"0", "78"}
    assert p["user"] == "nexus"
    assert p["directory"] == "/var/lib/nexus"
    default, prod = _server_stop_budget(_env_file(ENV_PRODUCTION))
    assert int(p["stopwaitsecs"]) > max(default, prod)


# ---- .env.production ------------------------------------------------------------------------

def test_env_production_keeps_the_guides_variables():
    names = _env_file(ENV_PRODUCTION)
    assert not [v for v in GUIDE_VARS if v not in names]
    assert names["NEXUS_APP_ENVIRONMENT"] == "production"
    assert names["NEXUS_APP_DEBUG"] == "false"
    # No real secret ships in the file; systemd would not expand ${...} references.
    assert names["NEXUS_AUTH_JWT_SECRET"] == ""
    assert not [n for n, v in names.items() if "${" in v]


def _check(tmp_path, extra_env):
    env = _env()
    env.update(extra_env)
    # From an empty folder, so that no config/config.yaml or .env is picked up.
    return subprocess.run([NEXUS_BIN, "config", "check", "--env-file", ENV_PRODUCTION],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path),
                          timeout=30)


def test_env_production_refused_until_the_secret_is_set(tmp_path):
    res = _check(tmp_path, {})
    assert res.returncode == 78, res.stdout + res.stderr
    assert "auth.jwt_secret is not set" in res.stderr


def test_env_production_passes_config_check(tmp_path):
    res = _check(tmp_path, {"NEXUS_AUTH_JWT_SECRET": TEST_JWT_SECRET})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "configuration is valid" in res.stdout
    # Every NEXUS_* variable of the file is known: nexus warns on any other.
    assert "warning" not in res.stderr, res.stderr
    assert res.stderr == "", res.stderr


def test_env_production_secret_from_file(tmp_path):
    secret = tmp_path / "jwt_secret"
    secret.write_text(TEST_JWT_SECRET + "\n")
    os.chmod(secret, 0o600)
    # The header's alternative: the secret line replaced by its _FILE form.
    with open(ENV_PRODUCTION) as f:
        text = f.read()
    text = re.sub(r"(?m)^NEXUS_AUTH_JWT_SECRET=$", f"NEXUS_AUTH_JWT_SECRET_FILE={secret}", text)
    copy = tmp_path / "nexus.env"
    copy.write_text(text)
    res = subprocess.run([NEXUS_BIN, "config", "check", "--env-file", str(copy)],
                         capture_output=True, text=True, env=_env(), cwd=str(tmp_path),
                         timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stderr == "", res.stderr
