"""docker-compose.yml, deploy/compose/ and deploy/swarm/ checked for real where a machine
without a Docker engine allows it.

- docker-compose 1.29 (Debian) validates each file, and rejects broken copies of it.
- Every named volume, secret, config and network is declared and used; every bind-mount
  source exists; depends_on names services; every NEXUS_* name is one the binary knows.
- The Nexus service's environment, its mounted config and its secrets (as NEXUS_*_FILE
  files) pass `nexus config check`; grace periods outlast the configured shutdown.
- The Compose nginx site passes `nginx -t` and proxies to a spawned Nexus over TLS.
- init.sql runs on the test PostgreSQL as the postgres image would run it.

docker-compose 1.29's `config` checks the schema, named volumes and depends_on, but not
secret or network names (only `up` does): reference_problems() checks those, and each check
is shown a broken copy it must reject.
"""

import copy
import os
import re
import shutil
import subprocess
import urllib.parse

import pytest
import requests
import yaml

from conftest import IMAGE_PLUGINS_DIR, NEXUS_BIN, ROOT, config_values, free_port, wait_for
from test_deploy_nginx import main_conf

COMPOSE = os.path.join(ROOT, "docker-compose.yml")
COMPOSE_DIR = os.path.join(ROOT, "deploy", "compose")
BLUE_GREEN = os.path.join(COMPOSE_DIR, "docker-compose.blue-green.yml")
STACK = os.path.join(ROOT, "deploy", "swarm", "docker-stack.yml")
SITE = os.path.join(COMPOSE_DIR, "nginx", "nexus.conf")
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

# Values for the variables the files require; none is a secret.
COMPOSE_VARS = {"BLUE_VERSION": "1.4.0", "GREEN_VERSION": "1.5.0", "DB_HOST": "db.internal",
                "REDIS_HOST": "redis.internal", "CONFIG_VERSION": "7"}
FILES = {"compose": COMPOSE, "blue-green": BLUE_GREEN, "stack": STACK}
# The Nexus services of each file.
NEXUS_SERVICES = {"compose": ["nexus"], "blue-green": ["nexus-blue", "nexus-green"],
                  "stack": ["nexus"]}
# Bind mounts of another person's files, which may not exist yet: only their paths are ours.
FOREIGN_MOUNTS = {
    ("blue-green", "nginx"): {"../nginx/blue-green.conf": "/etc/nginx/conf.d/default.conf",
                              "../nginx/nexus-active": "/etc/nginx/nexus-active"},
}
# Folders the operator fills (deploy/compose/README.md says with what).
USER_FILLED = ("deploy/compose/tls", "deploy/compose/secrets")

TEST_JWT_SECRET = "compose-test-only-" + "j" * 40


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NEXUS_", "COMPOSE_", "DOCKER_")) and k not in COMPOSE_VARS}
    env.update(extra or {})
    return env


def docker_compose(path, *args, env_vars=COMPOSE_VARS):
    return subprocess.run(["docker-compose", "-f", path, *args], capture_output=True,
                          text=True, env=clean_env(env_vars), cwd=os.path.dirname(path),
                          timeout=60)


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def resolved(path):
    """The file as docker-compose 1.29 resolves it (variables, paths made absolute)."""
    r = docker_compose(path, "config")
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


def seconds(span):
    """A Compose or nexus duration ('45s', '1m30s', '500ms', '30') in seconds."""
    span = str(span).strip()
    if re.fullmatch(r"\d+(\.\d+)?", span):
        return float(span)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", span)
    assert parts and "".join(n + u for n, u in parts) == span, span
    return sum(float(n) * units[u] for n, u in parts)


# ---- NEXUS_* names ------------------------------------------------------------------------

def known_variables():
    """Every variable the binary reads: those its schema names, and the other names of
    docs/configuration.md (NEXUS_CONFIG, the guide's aliases), which a test there keeps
    generated from the same schema."""
    r = subprocess.run([NEXUS_BIN, "config", "schema"], capture_output=True, text=True,
                       env=clean_env(), timeout=30)
    assert r.returncode == 0, r.stderr
    names = set(re.findall(r"Variable: (NEXUS_[A-Z0-9_]+)", r.stdout))
    assert "NEXUS_DATABASE_PASSWORD" in names and len(names) > 50, names
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        names |= set(re.findall(r"\bNEXUS_[A-Z0-9_]*[A-Z0-9]\b", f.read()))
    return names


def unknown_variables(text, known):
    """NEXUS_* names in text that are neither a known variable nor its _FILE form."""
    found = set(re.findall(r"\bNEXUS_[A-Z0-9_]*[A-Z0-9]\b", text))
    return sorted(n for n in found if n not in known and not
                  (n.endswith("_FILE") and n[:-len("_FILE")] in known))


def files_under(*paths):
    out = []
    for p in paths:
        if os.path.isfile(p):
            out.append(p)
            continue
        for d, _, names in os.walk(p):
            out += [os.path.join(d, n) for n in names]
    return sorted(out)


@pytest.fixture(scope="module")
def known():
    return known_variables()


def test_every_nexus_variable_in_these_files_is_real(known):
    files = files_under(COMPOSE, COMPOSE_DIR, os.path.dirname(STACK))
    assert COMPOSE in files and SITE in files and STACK in files
    bad = {}
    for p in files:
        with open(p, errors="replace") as f:
            names = unknown_variables(f.read(), known)
        if names:
            bad[os.path.relpath(p, ROOT)] = names
    assert not bad, bad


def test_the_variable_check_bites(known):
    assert unknown_variables("NEXUS_DATABASE_HOST=x NEXUS_AUTH_JWT_SECRET_FILE=y", known) == []
    assert unknown_variables("NEXUS_DATABASE_HOSTNAME: db\nNEXUS_DB_PASSWORD_FILE: f",
                             known) == ["NEXUS_DATABASE_HOSTNAME", "NEXUS_DB_PASSWORD_FILE"]


# ---- docker-compose validates ---------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FILES))
def test_docker_compose_validates(name):
    r = docker_compose(FILES[name], "config", "-q")
    assert r.returncode == 0, r.stderr
    assert "ERROR" not in r.stderr, r.stderr


def test_blue_green_requires_both_versions():
    for missing in ("BLUE_VERSION", "GREEN_VERSION"):
        env = {k: v for k, v in COMPOSE_VARS.items() if k != missing}
        r = docker_compose(BLUE_GREEN, "config", "-q", env_vars=env)
        assert r.returncode != 0 and missing in r.stderr, r.stderr
    doc = resolved(BLUE_GREEN)["services"]
    assert doc["nexus-blue"]["image"] == "nexus-app:1.4.0"
    assert doc["nexus-green"]["image"] == "nexus-app:1.5.0"


def _first_nexus(doc, name):
    return doc["services"][NEXUS_SERVICES[name][0]]


def _misspelt_key(doc, name):
    _first_nexus(doc, name)["healthcheck"]["intervall"] = "10s"


def _undeclared_volume(doc, name):
    _first_nexus(doc, name).setdefault("volumes", []).append("no-such-volume:/x")


def _unknown_dependency(doc, name):
    _first_nexus(doc, name)["depends_on"] = {"no-such-service": {"condition":
                                                                  "service_healthy"}}


def _bad_update_order(doc, name):
    _first_nexus(doc, name)["deploy"]["update_config"]["order"] = "sideways"


# What 1.29's `config` catches. It does not resolve secret or network names (`up` does):
# reference_problems() below covers those.
BREAKS = {"misspelt-key": _misspelt_key, "undeclared-volume": _undeclared_volume,
          "unknown-dependency": _unknown_dependency}


def _copy(tmp_path, name, doc):
    d = tmp_path / "deploy" / "x"
    d.mkdir(parents=True, exist_ok=True)
    path = d / os.path.basename(FILES[name])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("brk", sorted(BREAKS))
def test_docker_compose_rejects_a_broken_copy(tmp_path, name, brk):
    # The unbroken copy passes: what the broken one fails on is the breakage.
    doc = load(FILES[name])
    assert docker_compose(_copy(tmp_path, name, doc), "config", "-q").returncode == 0
    BREAKS[brk](doc, name)
    r = docker_compose(_copy(tmp_path, name, doc), "config", "-q")
    assert r.returncode != 0, f"{brk} accepted:\n{r.stderr}"


def test_docker_compose_checks_the_stack_deploy_section(tmp_path):
    # 1.29 knows the 3.8 deploy keys: a bad value there is caught, not ignored.
    doc = load(STACK)
    _bad_update_order(doc, "stack")
    r = docker_compose(_copy(tmp_path, "stack", doc), "config", "-q")
    assert r.returncode != 0 and "sideways" in r.stderr, r.stderr


# ---- references, in Python -------------------------------------------------------------------

def _service_refs(svc):
    """(named volumes, bind sources as (source, target), secrets, configs, networks,
    depends_on) of one service in the file's own (unresolved) form."""
    named, binds = [], []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            src, dst, kind = v.get("source"), v.get("target"), v.get("type", "volume")
        else:
            parts = v.split(":")
            src, dst = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
            kind = "bind" if src and src.startswith((".", "/", "~")) else "volume"
        if kind == "bind":
            binds.append((src, dst))
        elif src:
            named.append(src)
    src_of = lambda x: x if isinstance(x, str) else x["source"]  # noqa: E731
    secrets = [src_of(s) for s in svc.get("secrets", [])]
    configs = [src_of(c) for c in svc.get("configs", [])]
    nets = svc.get("networks", [])
    nets = list(nets) if isinstance(nets, (list, dict)) else []
    deps = svc.get("depends_on", [])
    return named, binds, secrets, configs, nets, list(deps)


def reference_problems(doc, base_dir, name):
    """Everything wrong with the cross-references of a Compose document."""
    problems = []
    services = doc.get("services", {})
    used = {"volumes": set(), "secrets": set(), "configs": set(), "networks": set()}
    for sname, svc in services.items():
        named, binds, secrets, configs, nets, deps = _service_refs(svc)
        for kind, names in (("volumes", named), ("secrets", secrets), ("configs", configs),
                            ("networks", nets)):
            used[kind] |= set(names)
            for n in names:
                if n not in (doc.get(kind) or {}):
                    problems.append(f"{sname}: {kind[:-1]} {n} is not declared")
        for d in deps:
            if d not in services:
                problems.append(f"{sname}: depends_on {d}, no such service")
        foreign = FOREIGN_MOUNTS.get((name, sname), {})
        seen_foreign = {}
        for src, dst in binds:
            if src in foreign:
                seen_foreign[src] = dst
                continue
            path = os.path.normpath(os.path.join(base_dir, src))
            if not os.path.exists(path):
                problems.append(f"{sname}: bind source {src} does not exist")
        for src, dst in foreign.items():
            if seen_foreign.get(src) != dst:
                problems.append(f"{sname}: {src} is not mounted at {dst}")
    for kind in used:
        for n in doc.get(kind) or {}:
            if n not in used[kind]:
                problems.append(f"{kind[:-1]} {n} is declared but no service uses it")
    for n, spec in (doc.get("configs") or {}).items():
        if "file" in spec and not os.path.exists(os.path.join(base_dir, spec["file"])):
            problems.append(f"config {n}: {spec['file']} does not exist")
    for n, spec in (doc.get("secrets") or {}).items():
        if "file" in spec:
            folder = os.path.relpath(os.path.normpath(os.path.join(
                base_dir, os.path.dirname(spec["file"]))), ROOT)
            if folder not in USER_FILLED:
                problems.append(f"secret {n}: {spec['file']} is outside {USER_FILLED}")
        elif not spec.get("external"):
            problems.append(f"secret {n}: neither file nor external")
    return problems


@pytest.mark.parametrize("name", sorted(FILES))
def test_references_are_declared_used_and_present(name):
    path = FILES[name]
    assert reference_problems(load(path), os.path.dirname(path), name) == []


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_reference_check_bites(name):
    path = FILES[name]
    base = load(path)
    first = NEXUS_SERVICES[name][0]
    cases = []
    d = copy.deepcopy(base)
    d["services"][first]["volumes"] = d["services"][first].get("volumes", []) + \
        ["./no/such/folder:/x:ro", "ghost-volume:/y"]
    cases.append((d, ["bind source ./no/such/folder", "volume ghost-volume is not declared"]))
    d = copy.deepcopy(base)
    d["networks"]["unused-net"] = {"driver": "bridge"}
    d["secrets"]["unused_secret"] = {"external": True}
    cases.append((d, ["network unused-net is declared", "secret unused_secret is declared"]))
    d = copy.deepcopy(base)
    d["services"][first]["depends_on"] = ["ghost"]
    d["services"][first]["secrets"] = ["ghost_secret"]
    cases.append((d, ["depends_on ghost", "secret ghost_secret is not declared"]))
    if name == "blue-green":
        d = copy.deepcopy(base)
        d["services"]["nginx"]["volumes"] = [v for v in d["services"]["nginx"]["volumes"]
                                             if "nexus-active" not in v]
        cases.append((d, ["../nginx/nexus-active is not mounted"]))
    for doc, expected in cases:
        found = "\n".join(reference_problems(doc, os.path.dirname(path), name))
        for e in expected:
            assert e in found, (e, found)


def test_user_filled_folders_are_documented():
    with open(os.path.join(COMPOSE_DIR, "README.md")) as f:
        readme = f.read()
    for folder in USER_FILLED:
        assert os.path.basename(folder) + "/" in readme, folder
    for name in ("db_password.txt", "jwt_secret.txt", "fullchain.pem", "privkey.pem"):
        assert name in readme, name
    # And what is put there stays out of git.
    for folder in USER_FILLED:
        with open(os.path.join(ROOT, folder, ".gitignore")) as f:
            assert "*" in f.read().splitlines(), folder


# ---- the services' settings -------------------------------------------------------------------

def test_compose_services():
    doc = load(COMPOSE)
    s = doc["services"]
    assert set(s) == {"nexus", "postgres", "redis", "nginx"}
    nexus = s["nexus"]
    assert nexus["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert os.path.isfile(os.path.join(ROOT, nexus["build"]["dockerfile"]))
    assert nexus["image"] == "nexus-app:latest"
    assert nexus["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                   "redis": {"condition": "service_healthy"}}
    assert s["nginx"]["depends_on"] == {"nexus": {"condition": "service_healthy"}}
    # Debian-based images, like the Nexus image (no musl surprises in pg tools or locales).
    for svc in ("postgres", "redis", "nginx"):
        assert "alpine" not in s[svc]["image"] and s[svc]["image"].endswith("-bookworm")
    assert s["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "redis-cli ping" in " ".join(s["redis"]["healthcheck"]["test"])
    assert s["redis"]["command"] == ["redis-server", "--appendonly", "yes"]
    assert s["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert "POSTGRES_PASSWORD" not in s["postgres"]["environment"]
    assert s["postgres"]["secrets"] == ["db_password"]
    # Stores are on the internal network only.
    assert doc["networks"]["backend"]["internal"] is True
    for svc in ("postgres", "redis"):
        assert s[svc]["networks"] == ["backend"] and "ports" not in s[svc]


@pytest.mark.parametrize("name", sorted(FILES))
def test_nexus_services_run_health_and_read_secrets_from_files(name):
    doc = resolved(FILES[name])
    for sname in NEXUS_SERVICES[name]:
        svc = doc["services"][sname]
        assert svc["healthcheck"]["test"] == ["CMD", "nexus", "health"]
        assert svc["stop_signal"] == "SIGTERM"
        env = svc["environment"]
        assert env["NEXUS_APP_ENVIRONMENT"] == "production"
        # No secret value in the file, only the _FILE forms.
        for var in ("NEXUS_DATABASE_PASSWORD", "NEXUS_AUTH_JWT_SECRET"):
            assert var not in env
            assert env[var + "_FILE"].startswith("/run/secrets/")
        targets = {s.get("target", s["source"]) for s in svc["secrets"]}
        for var in ("NEXUS_DATABASE_PASSWORD_FILE", "NEXUS_AUTH_JWT_SECRET_FILE"):
            assert os.path.basename(env[var]) in targets, (var, targets)


def test_postgres_creates_what_nexus_connects_to(tmp_path):
    # POSTGRES_DB/USER and pg_isready name the database and user of the effective config.
    for path in (COMPOSE, BLUE_GREEN):
        doc = resolved(path)
        pg = doc["services"]["postgres"]
        for sname in [s for s in doc["services"] if s.startswith("nexus")]:
            show = config_show(tmp_path, doc["services"][sname], path)
            assert pg["environment"]["POSTGRES_DB"] == show["database.name"]
            assert pg["environment"]["POSTGRES_USER"] == show["database.user"]
            assert show["database.host"] == "postgres" and show["cache.redis.host"] == "redis"
            test = pg["healthcheck"]["test"]
            assert test[test.index("-U") + 1] == show["database.user"]
            assert test[test.index("-d") + 1] == show["database.name"]


def test_blue_green_services():
    doc = load(BLUE_GREEN)
    s = doc["services"]
    assert {"nexus-blue", "nexus-green", "nginx"} <= set(s)
    assert s["nexus-blue"]["image"].startswith("nexus-app:${BLUE_VERSION")
    assert s["nexus-green"]["image"].startswith("nexus-app:${GREEN_VERSION")
    ports = {n: s[n]["ports"] for n in ("nexus-blue", "nexus-green")}
    assert ports == {"nexus-blue": ["127.0.0.1:8001:8000"],
                     "nexus-green": ["127.0.0.1:8002:8000"]}
    vols = s["nginx"]["volumes"]
    assert "../nginx/blue-green.conf:/etc/nginx/conf.d/default.conf:ro" in vols
    assert "../nginx/nexus-active:/etc/nginx/nexus-active:ro" in vols
    r = resolved(BLUE_GREEN)["services"]
    assert r["nexus-blue"]["environment"]["NEXUS_APP_NAME"] != \
        r["nexus-green"]["environment"]["NEXUS_APP_NAME"]


def test_swarm_stack():
    doc = load(STACK)
    assert doc["version"] == "3.8"
    svc = doc["services"]["nexus"]
    dep = svc["deploy"]
    assert dep["replicas"] >= 2
    u = dep["update_config"]
    assert (u["order"], u["parallelism"], u["failure_action"]) == ("start-first", 1, "rollback")
    assert seconds(u["monitor"]) > 0
    assert dep["rollback_config"]["parallelism"] == 1
    assert dep["restart_policy"]["condition"] == "on-failure"
    assert dep["restart_policy"]["max_attempts"] >= 1
    assert {"limits", "reservations"} <= set(dep["resources"])
    assert doc["secrets"] == {"db_password": {"external": True},
                              "jwt_secret": {"external": True}}
    # The secrets belong to the image's user (uid 1000), readable by it alone.
    for s in svc["secrets"]:
        assert (s["uid"], s["gid"], s["mode"]) == ("1000", "1000", 0o400), s
    assert svc["configs"][0]["target"] == "/app/config/config.yaml"
    assert doc["networks"]["nexus-network"]["driver"] == "overlay"
    assert os.path.samefile(os.path.join(os.path.dirname(STACK),
                                         doc["configs"]["nexus_config"]["file"]),
                            os.path.join(ROOT, "config", "config.prod.yaml"))


# ---- nexus config check with each service's environment --------------------------------------

def image_env():
    """The ENV of the Dockerfile's runtime stage: what every container starts with."""
    with open(DOCKERFILE) as f:
        text = f.read().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    assert "NEXUS_CONFIG" in env, env
    return env


def mounted_config(svc, top):
    """Host path of the file the service has at /app/config/config.yaml (bind or config),
    else None (the image's copy of config/config.prod.yaml)."""
    for v in svc.get("volumes", []):
        src, dst = (v["source"], v["target"]) if isinstance(v, dict) else v.split(":")[:2]
        if dst == "/app/config/config.yaml":
            return src
    for c in svc.get("configs", []):
        if c["target"] == "/app/config/config.yaml":
            return top["configs"][c["source"]]["file"]
    return None


def service_env(tmp_path, svc, secrets):
    """The container's NEXUS_* environment with /run/secrets/X replaced by test files."""
    env = {k: v for k, v in image_env().items() if k.startswith("NEXUS_")}
    env.update({k: str(v) for k, v in svc["environment"].items()})
    targets = {s.get("target", s["source"]) for s in svc.get("secrets", [])}
    sec_dir = tmp_path / "secrets"
    sec_dir.mkdir(exist_ok=True)
    for k, v in list(env.items()):
        if k.endswith("_FILE") and v.startswith("/run/secrets/"):
            name = v[len("/run/secrets/"):]
            assert name in targets, f"{k} reads {v}, which the service does not mount"
            f = sec_dir / name
            f.write_text(secrets.get(name, "compose-test-password") + "\n")
            os.chmod(f, 0o600)
            env[k] = str(f)
    return env


def run_nexus(tmp_path, args, svc, path, secrets=None):
    secrets = {"jwt_secret": TEST_JWT_SECRET, **(secrets or {})}
    env = clean_env(service_env(tmp_path, svc, secrets))
    cfg = mounted_config(svc, resolved(path))
    cfg = cfg or os.path.join(ROOT, "config", "config.prod.yaml")
    return subprocess.run([NEXUS_BIN, "config", *args, "--config", cfg,
                           "--plugins-dir", IMAGE_PLUGINS_DIR], capture_output=True,
                          text=True, env=env, cwd=str(tmp_path), timeout=30)


def config_show(tmp_path, svc, path):
    r = run_nexus(tmp_path, ["show"], svc, path)
    assert r.returncode == 0, r.stderr
    return config_values(r.stdout)


NEXUS_CASES = [(n, s) for n in sorted(FILES) for s in NEXUS_SERVICES[n]]


@pytest.mark.parametrize("name,service", NEXUS_CASES)
def test_service_environment_passes_config_check(tmp_path, name, service):
    doc = resolved(FILES[name])
    svc = doc["services"][service]
    assert mounted_config(svc, doc) is not None
    r = run_nexus(tmp_path, ["check"], svc, FILES[name])
    assert r.returncode == 0, r.stdout + r.stderr
    # Not even a warning: every variable of the service is one nexus reads.
    assert r.stderr == "", r.stderr
    # The check reads the secret files: a short JWT secret is refused (production rules).
    bad = run_nexus(tmp_path, ["check"], svc, FILES[name], {"jwt_secret": "short"})
    assert bad.returncode == 78 and "auth.jwt_secret" in bad.stderr, bad.stderr


@pytest.mark.parametrize("name,service", NEXUS_CASES)
def test_stop_grace_period_outlasts_the_shutdown(tmp_path, name, service):
    svc = resolved(FILES[name])["services"][service]
    show = config_show(tmp_path, svc, FILES[name])
    budget = seconds(show["server.shutdown_delay"]) + seconds(show["server.graceful_timeout"])
    assert budget >= 30, show  # config.prod.yaml: 5s + 30s
    assert seconds(svc["stop_grace_period"]) > budget, (svc["stop_grace_period"], budget)


@pytest.mark.parametrize("name,service", NEXUS_CASES)
def test_healthcheck_command_passes_in_the_service_environment(spawn, tmp_path, name, service):
    # The container runs `nexus health` with its own environment and config, which it loads
    # and validates first: it needs the secrets too. Only the port differs from the container.
    doc = resolved(FILES[name])
    svc = doc["services"][service]
    server = spawn(workers=1)
    env = clean_env(service_env(tmp_path, svc, {"jwt_secret": TEST_JWT_SECRET}))
    env["NEXUS_APP_PORT"] = str(server.port)
    cmd = svc["healthcheck"]["test"][1:] + ["--config", mounted_config(svc, doc)]
    assert cmd[0] == "nexus"
    r = subprocess.run([NEXUS_BIN] + cmd[1:], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path), timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    server.stop()
    r = subprocess.run([NEXUS_BIN] + cmd[1:], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path), timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr


# ---- the Compose nginx site, for real -----------------------------------------------------

def make_certs(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=nexus.example.com", "-addext",
                    "subjectAltName=DNS:nexus.example.com,IP:127.0.0.1",
                    "-keyout", f"{d}/privkey.pem",
                    "-out", f"{d}/fullchain.pem"], check=True, capture_output=True)


def nginx_mounts():
    """{container path: host path} of the nginx service of docker-compose.yml."""
    out = {}
    for v in resolved(COMPOSE)["services"]["nginx"]["volumes"]:
        src, dst = v.split(":")[:2]
        out[dst] = src
    return out


def test_site_paths_are_mounted_into_the_nginx_container():
    with open(SITE) as f:
        text = f.read()
    mounts = nginx_mounts()
    assert mounts["/etc/nginx/conf.d/default.conf"] == SITE
    paths = re.findall(r"^\s*(?:ssl_certificate|ssl_certificate_key|alias)\s+(\S+);", text,
                       re.M)
    assert len(paths) == 3, paths
    for p in paths:
        assert any(p.startswith(dst.rstrip("/") + "/") for dst in mounts), p
    assert mounts["/etc/nginx/tls"] == os.path.join(COMPOSE_DIR, "tls")
    assert mounts["/usr/share/nginx/html/static"] == os.path.join(COMPOSE_DIR, "static")
    # The upstream is the Compose service on its container port.
    assert re.search(r"^\s*server nexus:8000\b", text, re.M)
    assert re.search(r"^\s*keepalive \d+;", text, re.M)


def site_for(d, http_port, https_port, upstream_port):
    with open(SITE) as f:
        text = f.read()
    text = re.sub(r"^\s*listen \[::\]:.*\n", "", text, flags=re.M)
    text = text.replace("listen 80 default_server;", f"listen 127.0.0.1:{http_port};")
    text = text.replace("listen 443 ssl http2 default_server;",
                        f"listen 127.0.0.1:{https_port} ssl http2;")
    assert text.count("server nexus:8000") == 1
    text = text.replace("server nexus:8000", f"server 127.0.0.1:{upstream_port}")
    text = text.replace("/etc/nginx/tls/", f"{d}/tls/")
    text = text.replace("/usr/share/nginx/html/static/", f"{d}/static/")
    assert "listen 80" not in text and "listen 443" not in text
    return text


@pytest.fixture
def compose_nginx(spawn, tmp_path):
    d = str(tmp_path)
    os.makedirs(f"{d}/tls")
    os.makedirs(f"{d}/static")
    make_certs(f"{d}/tls")
    with open(f"{d}/static/app.css", "w") as f:
        f.write("body { color: black; }\n")
    with open(f"{d}/static/.secret", "w") as f:
        f.write("not for the world\n")
    nexus = spawn(workers=1)
    http_port, https_port = free_port(), free_port()
    with open(f"{d}/site.conf", "w") as f:
        f.write(site_for(d, http_port, https_port, nexus.port))
    with open(f"{d}/nginx.conf", "w") as f:
        f.write(main_conf(d))
    t = subprocess.run([NGINX, "-t", "-p", d, "-c", f"{d}/nginx.conf"], capture_output=True,
                       text=True)
    assert t.returncode == 0 and "syntax is ok" in t.stderr, t.stderr
    assert "warn" not in t.stderr, t.stderr
    proc = subprocess.Popen([NGINX, "-p", d, "-c", f"{d}/nginx.conf"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"https://127.0.0.1:{https_port}"
    try:
        ca = f"{d}/tls/fullchain.pem"
        assert wait_for(lambda: _up(base, ca), 5), open(f"{d}/error.log").read()
        yield type("Stack", (), {"https": base, "http": f"http://127.0.0.1:{http_port}",
                                 "nexus": nexus, "dir": d, "ca": ca})
    finally:
        proc.terminate()
        proc.wait(10)


def _up(base, ca):
    try:
        return requests.get(base + "/health", verify=ca, timeout=1).ok
    except requests.exceptions.RequestException:
        return False


def test_compose_site_proxies_to_nexus_over_tls(compose_nginx):
    r = requests.get(compose_nginx.https + "/health", verify=compose_nginx.ca, timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = requests.get(compose_nginx.https + "/json", verify=compose_nginx.ca, timeout=5)
    assert r.status_code == 200 and r.json() == {"message": "Hello, World!"}
    for h in ("strict-transport-security", "x-frame-options", "x-content-type-options",
              "content-security-policy", "referrer-policy"):
        assert h in r.headers, h
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    # The request went through nginx to this Nexus: its access log has it. nginx writes the
    # line after the response has gone, so the client may read the answer first.
    log = os.path.join(compose_nginx.dir, "access.log")
    assert wait_for(lambda: "GET /json" in open(log).read(), 5), open(log).read()


def test_compose_site_redirects_http_but_answers_health(compose_nginx):
    r = requests.get(compose_nginx.http + "/todos?x=1", headers={"Host": "nexus.example.com"},
                     allow_redirects=False, timeout=5)
    assert r.status_code == 301
    assert r.headers["location"] == "https://nexus.example.com/todos?x=1"
    assert requests.get(compose_nginx.http + "/health", timeout=5).json()["status"] == "ok"


def test_compose_site_serves_static_files_itself(compose_nginx):
    r = requests.get(compose_nginx.https + "/static/app.css", verify=compose_nginx.ca,
                     timeout=5)
    assert r.status_code == 200 and "color" in r.text
    assert "immutable" in r.headers["cache-control"]
    # Every security header of the server, not only those a location would repeat.
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" in r.headers and "x-frame-options" in r.headers
    r = requests.get(compose_nginx.https + "/static/.secret", verify=compose_nginx.ca,
                     timeout=5)
    assert r.status_code == 404
    # And Nexus was not asked: it would answer problem+json.
    assert "problem" not in r.headers.get("content-type", "")


# ---- init.sql on a real PostgreSQL ------------------------------------------------------------

def test_init_sql_runs_as_the_postgres_image_runs_it(pg_url):
    # The image runs it with psql and ON_ERROR_STOP as POSTGRES_USER (a superuser), in
    # POSTGRES_DB. Here: a throwaway database, and a transaction rolled back at the end so
    # that ALTER ROLE leaves the shared test role alone.
    db = f"nexus_init_{os.getpid()}"
    admin = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg_url]
    env = clean_env()
    subprocess.run(admin + ["-c", f"DROP DATABASE IF EXISTS {db}"], check=True, env=env,
                   capture_output=True, timeout=30)
    subprocess.run(admin + ["-c", f"CREATE DATABASE {db}"], check=True, env=env,
                   capture_output=True, timeout=30)
    try:
        url = urllib.parse.urlsplit(pg_url)._replace(path="/" + db).geturl()
        script = ("BEGIN;\n"
                  f"\\i {os.path.join(COMPOSE_DIR, 'init.sql')}\n"
                  "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s\n"
                  "  JOIN pg_database d ON d.oid = s.setdatabase\n"
                  "  WHERE d.datname = current_database();\n"
                  "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s\n"
                  "  JOIN pg_roles r ON r.oid = s.setrole\n"
                  "  WHERE r.rolname = current_user AND s.setdatabase = 0;\n"
                  "SELECT has_database_privilege('public', current_database(), 'CONNECT');\n"
                  "ROLLBACK;\n")
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-d", url], input=script, capture_output=True, text=True,
                           env=env, timeout=30)
        assert r.returncode == 0, r.stderr
        db_settings, role_settings, public_connect = r.stdout.split("\n")[:3]
        assert "TimeZone=UTC" in db_settings, r.stdout
        assert "idle_in_transaction_session_timeout=60s" in role_settings, r.stdout
        assert public_connect == "f", r.stdout
    finally:
        subprocess.run(admin + ["-c", f"DROP DATABASE IF EXISTS {db}"], env=env,
                       capture_output=True, timeout=30)
