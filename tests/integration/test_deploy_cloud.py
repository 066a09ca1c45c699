"""deploy/cloud/: the AWS, Google Cloud and Azure templates, checked without the clouds.

The files parse, carry the fields each platform requires, probe /health and /ready on the
port Nexus listens on, name only NEXUS_* variables the binary knows, and, with stand-in
secrets, their environment passes `nexus config check` and shuts down within the time the
platform allows.
"""

import json
import os
import re
import subprocess

import pytest
import yaml

from conftest import IMAGE_PLUGINS_DIR, NEXUS_BIN, ROOT, config_values
from test_deploy_compose import clean_env, files_under, known_variables, seconds, \
    unknown_variables

CLOUD = os.path.join(ROOT, "deploy", "cloud")
ECS = os.path.join(CLOUD, "aws", "ecs-task-definition.json")
EB_DIR = os.path.join(CLOUD, "aws", "elasticbeanstalk")
DOCKERRUN = os.path.join(EB_DIR, "Dockerrun.aws.json")
EB_CONFIG = os.path.join(EB_DIR, ".ebextensions", "01_nexus.config")
APP_YAML = os.path.join(CLOUD, "gcp", "app.yaml")
CLOUDRUN = os.path.join(CLOUD, "gcp", "cloudrun-service.yaml")
ARM = os.path.join(CLOUD, "azure", "azuredeploy.json")
PROD_CONFIG = os.path.join(ROOT, "config", "config.prod.yaml")

# Fargate's task sizes: cpu units -> memory (MiB) allowed with them.
FARGATE = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4097, 1024)),
    1024: list(range(2048, 8193, 1024)),
    2048: list(range(4096, 16385, 1024)),
    4096: list(range(8192, 30721, 1024)),
    8192: list(range(16384, 61441, 4096)),
    16384: list(range(32768, 122881, 8192)),
}
TEST_JWT_SECRET = "cloud-test-only-" + "c" * 40


def load_json(path):
    with open(path) as f:
        return json.load(f)


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def effective(tmp_path, env, args=("check",)):
    """`nexus config ARGS` on config/config.prod.yaml (the image's) with env added."""
    return subprocess.run([NEXUS_BIN, "config", *args, "--config", PROD_CONFIG,
                           "--plugins-dir", IMAGE_PLUGINS_DIR],
                          capture_output=True, text=True, env=clean_env(env),
                          cwd=str(tmp_path), timeout=30)


def shutdown_budget(tmp_path, env):
    r = effective(tmp_path, env, ("show",))
    assert r.returncode == 0, r.stderr
    v = config_values(r.stdout)
    return seconds(v["server.shutdown_delay"]) + seconds(v["server.graceful_timeout"])


def with_secrets(env):
    """env plus stand-ins for the secrets the platform injects."""
    return {"NEXUS_DATABASE_PASSWORD": "cloud-test-password",
            "NEXUS_AUTH_JWT_SECRET": TEST_JWT_SECRET, **env}


@pytest.fixture(scope="module")
def known():
    return known_variables()


def test_every_file_parses_and_names_real_variables(known):
    files = files_under(CLOUD)
    for p in (ECS, DOCKERRUN, EB_CONFIG, APP_YAML, CLOUDRUN, ARM):
        assert p in files, p
    bad = {}
    for p in files:
        if p.endswith(".json"):
            load_json(p)
        elif p.endswith((".yaml", ".yml", ".config")):
            load_yaml(p)
        with open(p) as f:
            names = unknown_variables(f.read(), known)
        if names:
            bad[os.path.relpath(p, ROOT)] = names
    assert not bad, bad


def test_yaml_files_are_yamllint_clean(tmp_path):
    files = [APP_YAML, CLOUDRUN, EB_CONFIG]
    cfg = os.path.join(ROOT, ".yamllint")
    r = subprocess.run(["yamllint", "--strict", "-c", cfg, "-f", "parsable", *files],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad.yaml"
    with open(APP_YAML) as f:
        bad.write_text(f.read() + "env: flex\nresources: {cpu:   2}\n")
    r = subprocess.run(["yamllint", "--strict", "-c", cfg, str(bad)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "key-duplicates" in r.stdout, r.stdout


# ---- AWS -----------------------------------------------------------------------------------

def ecs_container():
    td = load_json(ECS)
    return td, td["containerDefinitions"][0]


def test_ecs_task_definition_has_what_fargate_requires():
    td, c = ecs_container()
    assert td["family"] and re.fullmatch(r"[A-Za-z0-9_-]{1,255}", td["family"])
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert td["networkMode"] == "awsvpc"  # the only mode Fargate has
    cpu, mem = int(td["cpu"]), int(td["memory"])
    assert mem in FARGATE[cpu], (cpu, mem)
    # Secrets Manager and awslogs are used by the agent with the execution role.
    assert td["executionRoleArn"].startswith("arn:aws:iam::")
    assert len(td["containerDefinitions"]) == 1
    assert c["name"] and c["image"] and c["essential"] is True
    assert [p["containerPort"] for p in c["portMappings"]] == [8000]
    assert "hostPort" not in c["portMappings"][0] or c["portMappings"][0]["hostPort"] == 8000
    log = c["logConfiguration"]
    assert log["logDriver"] == "awslogs"
    assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(log["options"])


def test_ecs_health_check_runs_nexus_health():
    _, c = ecs_container()
    hc = c["healthCheck"]
    assert hc["command"] == ["CMD", "nexus", "health"]  # the image has no curl
    # ECS's bounds: interval 5-300, timeout 2-60, retries 1-10, startPeriod 0-300.
    assert 5 <= hc["interval"] <= 300 and 2 <= hc["timeout"] <= 60
    assert hc["timeout"] < hc["interval"]
    assert 1 <= hc["retries"] <= 10 and 0 <= hc.get("startPeriod", 0) <= 300


def test_ecs_secrets_come_from_secrets_manager():
    _, c = ecs_container()
    secrets = {s["name"]: s["valueFrom"] for s in c["secrets"]}
    assert set(secrets) == {"NEXUS_DATABASE_PASSWORD", "NEXUS_AUTH_JWT_SECRET"}
    for arn in secrets.values():
        assert re.fullmatch(r"arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+",
                            arn), arn
    env_names = {e["name"] for e in c["environment"]}
    assert not env_names & set(secrets)


def ecs_env():
    _, c = ecs_container()
    env = {e["name"]: e["value"] for e in c["environment"]}
    return with_secrets(env)


def test_ecs_environment_passes_config_check(tmp_path):
    r = effective(tmp_path, ecs_env())
    assert r.returncode == 0 and r.stderr == "", r.stdout + r.stderr
    env = ecs_env()
    env["NEXUS_AUTH_JWT_SECRET"] = "too-short"
    r = effective(tmp_path, env)
    assert r.returncode == 78 and "auth.jwt_secret" in r.stderr, r.stderr


def test_ecs_stop_timeout_outlasts_the_shutdown(tmp_path):
    _, c = ecs_container()
    budget = shutdown_budget(tmp_path, ecs_env())
    assert budget >= 30, budget
    # Fargate allows at most 120s between SIGTERM and SIGKILL.
    assert budget < c["stopTimeout"] <= 120, (budget, c["stopTimeout"])


def test_elastic_beanstalk_is_the_docker_platform(tmp_path):
    run = load_json(DOCKERRUN)
    assert run["AWSEBDockerrunVersion"] == "1"
    assert run["Image"]["Name"].endswith("nexus-app:latest")
    assert [int(p["ContainerPort"]) for p in run["Ports"]] == [8000]
    opts = load_yaml(EB_CONFIG)["option_settings"]
    assert not [ns for ns in opts if ":python" in ns or ":container:" in ns]
    proc = opts["aws:elasticbeanstalk:environment:process:default"]
    assert proc["HealthCheckPath"] == "/ready"
    env = opts["aws:elasticbeanstalk:application:environment"]
    assert env["NEXUS_APP_ENVIRONMENT"] == "production"
    # No secret in the source bundle: they are set on the environment.
    assert "NEXUS_AUTH_JWT_SECRET" not in env and "NEXUS_DATABASE_PASSWORD" not in env
    env = {k: str(v) for k, v in env.items()}
    r = effective(tmp_path, with_secrets(env))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    # Dockerrun v1 has no stop timeout: the shutdown fits docker stop's default of 10s.
    assert shutdown_budget(tmp_path, with_secrets(env)) < 10


# ---- Google Cloud --------------------------------------------------------------------------

def test_app_engine_flexible_custom_runtime(tmp_path):
    app = load_yaml(APP_YAML)
    assert (app["runtime"], app["env"]) == ("custom", "flex")
    assert "handlers" not in app and "instance_class" not in app  # standard-only keys
    assert app["liveness_check"]["path"] == "/health"
    assert app["readiness_check"]["path"] == "/ready"
    env = {k: str(v) for k, v in app["env_variables"].items()}
    # App Engine routes to 8080 in a custom runtime's container, and probes that port.
    assert env["NEXUS_APP_PORT"] == "8080"
    r = effective(tmp_path, with_secrets(env), ("show",))
    assert re.search(r'^  port: "8080"', r.stdout, re.M), r.stdout
    r = effective(tmp_path, with_secrets(env))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    a = app["automatic_scaling"]
    assert 1 <= a["min_num_instances"] <= a["max_num_instances"]


def cloudrun_container():
    svc = load_yaml(CLOUDRUN)
    return svc, svc["spec"]["template"]["spec"]["containers"][0]


def test_cloud_run_service_is_a_knative_service():
    svc, c = cloudrun_container()
    assert svc["apiVersion"] == "serving.knative.dev/v1" and svc["kind"] == "Service"
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?", svc["metadata"]["name"])
    assert len(svc["spec"]["template"]["spec"]["containers"]) == 1
    assert c["image"]
    assert c["ports"] == [{"name": "http1", "containerPort": 8000}]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["NEXUS_APP_PORT"] == "8000"


def test_cloud_run_probes_health_and_ready_on_the_container_port():
    _, c = cloudrun_container()
    port = c["ports"][0]["containerPort"]
    assert c["startupProbe"]["httpGet"] == {"path": "/ready", "port": port}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": port}


def cloudrun_env(tmp_path, secrets):
    """The container's environment, its mounted Secret Manager files made real."""
    svc, c = cloudrun_container()
    env = {e["name"]: str(e["value"]) for e in c["env"]}
    volumes = {v["name"]: v["secret"] for v in svc["spec"]["template"]["spec"]["volumes"]}
    files = {}
    for m in c["volumeMounts"]:
        for item in volumes[m["name"]]["items"]:
            files[os.path.join(m["mountPath"], item["path"])] = volumes[m["name"]]["secretName"]
    for k, v in list(env.items()):
        if k.endswith("_FILE"):
            assert v in files, f"{k}={v} is not a mounted secret"
            f = tmp_path / files[v]
            f.write_text(secrets[files[v]])
            env[k] = str(f)
    return env


def test_cloud_run_secrets_pass_config_check(tmp_path):
    secrets = {"nexus-db-password": "cloud-test-password", "nexus-jwt-secret": TEST_JWT_SECRET}
    env = cloudrun_env(tmp_path, secrets)
    assert {"NEXUS_DATABASE_PASSWORD_FILE", "NEXUS_AUTH_JWT_SECRET_FILE"} <= set(env)
    r = effective(tmp_path, env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    env = cloudrun_env(tmp_path, {**secrets, "nexus-jwt-secret": "short"})
    r = effective(tmp_path, env)
    assert r.returncode == 78 and "auth.jwt_secret" in r.stderr, r.stderr
    # Cloud Run kills an instance 10s after SIGTERM.
    assert shutdown_budget(tmp_path, cloudrun_env(tmp_path, secrets)) < 10


# ---- Azure ---------------------------------------------------------------------------------

def arm_expressions(node):
    """Every ARM template expression ("[...]", not "[[" literals) in node."""
    if isinstance(node, dict):
        for v in node.values():
            yield from arm_expressions(v)
    elif isinstance(node, list):
        for v in node:
            yield from arm_expressions(v)
    elif isinstance(node, str) and node.startswith("[") and not node.startswith("[["):
        yield node


def arm_problems(tpl):
    problems = []
    for k in ("$schema", "contentVersion", "resources"):
        if k not in tpl:
            problems.append(f"missing {k}")
    if not re.fullmatch(r"\d+(\.\d+){3}", tpl.get("contentVersion", "")):
        problems.append("contentVersion is not n.n.n.n")
    for r in tpl.get("resources", []):
        for k in ("type", "apiVersion", "name"):
            if k not in r:
                problems.append(f"resource without {k}: {r.get('name')}")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(-preview)?", r.get("apiVersion", "")):
            problems.append(f"bad apiVersion {r.get('apiVersion')}")
    exprs = list(arm_expressions(tpl))
    for kind in ("parameters", "variables"):
        used = {m for e in exprs for m in re.findall(rf"\b{kind}\('([^']+)'\)", e)}
        declared = set(tpl.get(kind, {}))
        problems += [f"{kind}('{n}') is not declared" for n in sorted(used - declared)]
        problems += [f"{kind} {n} is declared but unused" for n in sorted(declared - used)]
    for e in exprs:
        if not e.endswith("]") or e.count("(") != e.count(")"):
            problems.append(f"unbalanced expression {e}")
    return problems


def arm_site():
    tpl = load_json(ARM)
    sites = [r for r in tpl["resources"] if r["type"] == "Microsoft.Web/sites"]
    assert len(sites) == 1
    return tpl, sites[0]


def test_arm_template_is_well_formed():
    tpl = load_json(ARM)
    assert tpl["$schema"].startswith("https://schema.management.azure.com/schemas/")
    assert arm_problems(tpl) == []


def test_the_arm_check_bites():
    tpl = load_json(ARM)
    tpl["resources"][0]["name"] = "[concat(parameters('nope'), '-plan')]"
    tpl["parameters"]["unused"] = {"type": "string"}
    del tpl["resources"][1]["apiVersion"]
    found = "\n".join(arm_problems(tpl))
    for e in ("parameters('nope') is not declared", "parameters unused is declared",
              "resource without apiVersion"):
        assert e in found, found


def test_arm_site_runs_the_container_with_health_check():
    tpl, site = arm_site()
    plan = [r for r in tpl["resources"] if r["type"] == "Microsoft.Web/serverfarms"]
    assert len(plan) == 1 and plan[0]["properties"]["reserved"] is True  # Linux
    cfg = site["properties"]["siteConfig"]
    assert cfg["linuxFxVersion"].startswith("[concat('DOCKER|'")
    assert cfg["healthCheckPath"] == "/health"
    settings = {s["name"]: s["value"] for s in cfg["appSettings"]}
    assert settings["WEBSITES_PORT"] == "8000"
    assert settings["NEXUS_APP_ENVIRONMENT"] == "production"
    # Secrets are Key Vault references, read with the site's own identity.
    for name in ("NEXUS_DATABASE_PASSWORD", "NEXUS_AUTH_JWT_SECRET"):
        assert settings[name].startswith("[concat('@Microsoft.KeyVault(SecretUri="), name
    assert site["identity"]["type"] == "SystemAssigned"


def test_arm_app_settings_pass_config_check(tmp_path, known):
    _, site = arm_site()
    settings = {s["name"]: s["value"] for s in site["properties"]["siteConfig"]["appSettings"]}
    env = {}
    for k, v in settings.items():
        if not k.startswith("NEXUS_"):
            continue
        assert k in known, k
        if "KeyVault" in v:
            continue  # resolved by App Service: stand-ins below
        # Parameters become their defaults, or a stand-in host name for the required ones.
        m = re.fullmatch(r"\[(?:string\()?parameters\('(\w+)'\)\)?\]", v)
        if m:
            p = load_json(ARM)["parameters"][m.group(1)]
            v = str(p.get("defaultValue", f"{m.group(1).lower()}.example.internal"))
        env[k] = v
    env.update(with_secrets({"NEXUS_CACHE_REDIS_PASSWORD": "cloud-test-redis"}))
    r = effective(tmp_path, env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
