"""The Kubernetes manifests (deploy/k8s) and the Helm chart (deploy/helm/nexus), offline.

Every object is checked against the Kubernetes API schema by k8s_validate.mjs
(kubernetes-models); the wiring between objects (selectors, ports, probes, volumes) is
checked here; and the pod's view of the server is replayed against the real binary: the
ConfigMap's config.yaml, with the Secret's keys laid out as the kubelet mounts them and the
container's variables, must pass `nexus config check`, and the stop budget must cover
server.shutdown_delay + server.graceful_timeout as `nexus config show` reports them.
"""

import base64
import copy
import json
import os
import re
import secrets
import shlex
import subprocess

import pytest
import yaml

from conftest import IMAGE_PLUGINS_DIR, NEXUS_BIN, ROOT, config_values

K8S = os.path.join(ROOT, "deploy", "k8s")
CHART = os.path.join(ROOT, "deploy", "helm", "nexus")
VALIDATOR = os.path.join(ROOT, "tests", "integration", "k8s_validate.mjs")
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
NODE = "/usr/bin/node"

# Value sets the chart must render into valid, consistent objects.
VALUE_SETS = {
    "default": [],
    "no-autoscaling": ["autoscaling.enabled=false", "replicaCount=2"],
    "no-ingress": ["ingress.enabled=false"],
    "canary": ["canary.enabled=true", "canary.image.tag=0.2.0-rc1"],
    "persistence": ["persistence.enabled=true", "postgresql.enabled=false",
                    "redis.enabled=false", "autoscaling.enabled=false", "replicaCount=1"],
    "existing-secrets": ["secrets.existingSecret=app-keys", "postgresql.auth.existingSecret=pg",
                         "redis.auth.existingSecret=redis"],
    "memory-metric": ["autoscaling.targetMemoryUtilizationPercentage=80",
                      "shutdown.delaySeconds=20", "shutdown.gracefulTimeoutSeconds=60"],
}
# Secrets that value sets name but the chart does not create.
EXTERNAL_SECRETS = {"app-keys", "pg", "redis"}


# ---- tools --------------------------------------------------------------------------------

def run(cmd, **kw):
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def validate(tools, objs):
    """(exit status, per-object results) of the schema validator on objs."""
    res = run([NODE, VALIDATOR, tools], input=json.dumps(objs))
    assert res.returncode in (0, 1), f"validator broke:\n{res.stderr}"
    return res.returncode, json.loads(res.stdout)


def assert_valid(tools, objs):
    rc, results = validate(tools, objs)
    bad = [r for r in results if r["errors"]]
    assert rc == 0 and not bad, json.dumps(bad, indent=1)
    assert len(results) == len(objs)


def load_yaml_docs(text):
    return [d for d in yaml.safe_load_all(text) if d is not None]


def manifest_files():
    return sorted(f for f in os.listdir(K8S) if f.endswith(".yaml"))


def manifests(name):
    with open(os.path.join(K8S, name)) as f:
        return load_yaml_docs(f.read())


def kustomize(tools):
    res = run([os.path.join(tools, "bin", "kubectl"), "kustomize", K8S])
    assert res.returncode == 0, res.stderr
    return load_yaml_docs(res.stdout)


def helm_template(tools, sets=(), release="rel"):
    cmd = [os.path.join(tools, "bin", "helm"), "template", release, CHART]
    for s in sets:
        cmd += ["--set", s]
    res = run(cmd)
    assert res.returncode == 0, res.stderr
    return load_yaml_docs(res.stdout)


def find(objs, kind, name=None):
    return [o for o in objs
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs, kind, name=None):
    found = find(objs, kind, name)
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def parse_duration(text):
    """Seconds in a nexus duration: 500ms, 30s, 5m, 1h or a bare number of seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(text))
    assert m, f"not a duration: {text!r}"
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


def parse_size(text):
    """Bytes in a size as nexus (100M) or ingress-nginx (100m) writes it."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)\s*", str(text))
    assert m, f"not a size: {text!r}"
    return int(m.group(1)) * 1024 ** " kmg".index((m.group(2) or " ").lower())


def dockerfile():
    """ENV, USER, EXPOSE, VOLUME and ENTRYPOINT/CMD of the runtime (last) stage."""
    with open(DOCKERFILE) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stage = text[text.rindex("\nFROM "):]
    out = {"env": {}, "volumes": [], "expose": []}
    for line in stage.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            for item in shlex.split(rest):
                k, _, v = item.partition("=")
                out["env"][k] = v
        elif word == "USER":
            out["user"] = rest.strip()
        elif word == "EXPOSE":
            out["expose"] += [int(p.split("/")[0]) for p in rest.split()]
        elif word == "VOLUME":
            out["volumes"] += json.loads(rest)
        elif word in ("ENTRYPOINT", "CMD"):
            out[word.lower()] = json.loads(rest)
    return out


def test_the_helpers_parse_what_they_must():
    durations = [parse_duration(d) for d in ("500ms", "30s", "5m", "1h", "45")]
    assert durations == [0.5, 30, 300, 3600, 45]
    assert parse_size("100M") == parse_size("100m") == 100 * 1024 * 1024
    assert parse_size("8k") == 8192
    d = dockerfile()
    assert d["env"]["NEXUS_CONFIG"] == "/app/config/config.yaml"
    assert d["user"] == "1000:1000" and d["expose"] == [8000]
    assert set(d["volumes"]) == {"/data", "/logs"}


# ---- the pod as the kubelet would start it -------------------------------------------------

def stable_deployment(objs):
    deps = [d for d in find(objs, "Deployment")
            if d["spec"]["selector"]["matchLabels"].get("version") != "canary"]
    assert len(deps) == 1, [d["metadata"]["name"] for d in deps]
    return deps[0]


def container(dep):
    cs = dep["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in cs] == ["nexus"]
    return cs[0]


def volume(dep, name):
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert name in vols, f"no volume {name}"
    return vols[name]


def secret_value(objs, name, key):
    """A Secret key's value as shipped, or None when the Secret is not among objs."""
    s = find(objs, "Secret", name)
    if not s:
        return None
    s = s[0]
    if key in (s.get("stringData") or {}):
        return s["stringData"][key]
    data = s.get("data") or {}
    assert key in data, f"Secret {name} has no key {key}"
    return base64.b64decode(data[key]).decode()


def volume_files(vol, objs):
    """{file name: (secret name, key)} of a secret or projected-secret volume; a Secret
    mounted whole gives one file per key of the Secret among objs."""
    out = {}
    if "secret" in vol:
        sources = [{"secret": {"name": vol["secret"]["secretName"],
                               "items": vol["secret"].get("items")}}]
    else:
        sources = vol["projected"]["sources"]
    for src in sources:
        sec = src["secret"]
        items = sec.get("items")
        if items is None:
            s = one(objs, "Secret", sec["name"])
            keys = list(s.get("data") or {}) + list(s.get("stringData") or {})
            items = [{"key": k, "path": k} for k in keys]
        for item in items:
            out[item["path"]] = (sec["name"], item["key"])
    return out


def lay_out_pod(objs, dep, root, secret_for):
    """Writes the pod's config file and secret files under root, mounted as the kubelet
    mounts them (secret files are symlinks into ..data), and returns the container's
    variables: the image's ENV, then the container's env, paths moved under root."""
    c = container(dep)
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    image = dockerfile()
    env = dict(image["env"])
    for mount_path, m in mounts.items():
        vol = volume(dep, m["name"])
        target = root + mount_path
        os.makedirs(os.path.join(target, "..data"), exist_ok=True)
        if "configMap" in vol:
            cm = one(objs, "ConfigMap", vol["configMap"]["name"])
            files = {k: v for k, v in cm["data"].items()}
        elif "secret" in vol or "projected" in vol:
            files = {path: secret_for(name, key)
                     for path, (name, key) in volume_files(vol, objs).items()}
        else:
            continue
        for fname, content in files.items():
            with open(os.path.join(target, "..data", fname), "w") as f:
                f.write(content)
            os.symlink(os.path.join("..data", fname), os.path.join(target, fname))
    for e in c.get("env", []):
        if "value" in e:
            v = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            v = secret_for(ref["name"], ref["key"])
        env[e["name"]] = v
    for k, v in list(env.items()):
        if any(v == p or v.startswith(p.rstrip("/") + "/") for p in mounts):
            env[k] = root + v
    return env


def nexus(args, env, cwd):
    """nexus in the pod's environment; config commands read the image's plugins."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    clean.update(env)
    if args[0] == "config":
        args = args + ["--plugins-dir", IMAGE_PLUGINS_DIR]
    return run([NEXUS_BIN] + args, env=clean, cwd=cwd, timeout=30)


def real_secrets(objs):
    """Values for the secrets: a fresh 48-character JWT key, passwords of any kind."""
    jwt = secrets.token_urlsafe(36)

    def secret_for(name, key):
        return jwt if "jwt" in key else "pw-" + secrets.token_hex(8)
    return secret_for


def effective_config(objs, dep, tmp_path, secret_for=None):
    """`nexus config show` in the pod's environment, as {dotted key: value}."""
    root = str(tmp_path / "pod")
    env = lay_out_pod(objs, dep, root, secret_for or real_secrets(objs))
    res = nexus(["config", "show"], env, str(tmp_path))
    assert res.returncode == 0, res.stderr
    # Paths as the pod sees them.
    out = {k: v.replace(root, "") for k, v in config_values(res.stdout).items()}
    assert "server.shutdown_delay" in out, res.stdout
    return out


def config_check(objs, dep, tmp_path, secret_for):
    root = str(tmp_path / "pod")
    env = lay_out_pod(objs, dep, root, secret_for)
    return nexus(["config", "check"], env, str(tmp_path))


# ---- wiring shared by the manifests and the chart ------------------------------------------

def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def container_port(dep, port):
    """The container port number a probe or Service port (name or number) reaches."""
    ports = container(dep)["ports"]
    for p in ports:
        if port in (p.get("name"), p["containerPort"]):
            return p["containerPort"]
    raise AssertionError(f"port {port!r} is not a port of the container: {ports}")


def check_wiring(objs, external_secrets=()):
    deps = find(objs, "Deployment")
    stable = stable_deployment(objs)
    svc = one(objs, "Service")
    assert "version" not in svc["spec"]["selector"]
    for d in deps:
        name = d["metadata"]["name"]
        spec, pod = d["spec"], d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert selects(spec["selector"]["matchLabels"], labels), name
        assert selects(svc["spec"]["selector"], labels), f"the Service misses {name}'s pods"
        # Another Deployment's selector must not claim these pods.
        for other in deps:
            if other is not d:
                assert not selects(other["spec"]["selector"]["matchLabels"], labels), name
        c = container(d)
        assert container_port(d, "http") == 8000
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"
        assert c["startupProbe"]["httpGet"]["path"] == "/health"
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container_port(d, c[probe]["httpGet"]["port"]) == container_port(d, "http")
        # Startup may take a while without the liveness probe killing the pod.
        sp = c["startupProbe"]
        assert sp["periodSeconds"] * sp["failureThreshold"] >= 30
        assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
        sc, psc = c["securityContext"], pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 1000
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert pod["enableServiceLinks"] is False
        assert pod["automountServiceAccountToken"] is False
        if spec["strategy"]["type"] == "RollingUpdate":
            assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        else:
            assert spec["strategy"]["type"] == "Recreate"
            assert spec.get("replicas") == 1, "Recreate is for the single-replica volume"
        # Volumes: every mount has its volume; every volume's source exists.
        vols = {v["name"]: v for v in pod["volumes"]}
        for m in c["volumeMounts"]:
            assert m["name"] in vols, m
        for v in vols.values():
            if "configMap" in v:
                one(objs, "ConfigMap", v["configMap"]["name"])
            elif "secret" in v or "projected" in v:
                for sname, key in volume_files(v, objs).values():
                    if sname not in external_secrets:
                        assert secret_value(objs, sname, key) is not None, (sname, key)
            elif "persistentVolumeClaim" in v:
                pvc = one(objs, "PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
                if "ReadWriteOnce" in pvc["spec"]["accessModes"]:
                    assert spec.get("replicas") == 1, "a ReadWriteOnce claim, several pods"
                    assert not find(objs, "HorizontalPodAutoscaler")
                    assert spec["strategy"]["type"] == "Recreate"
            else:
                assert "emptyDir" in v, v
    # The Service reaches the container port; the Ingress reaches the Service port.
    sport = svc["spec"]["ports"]
    assert len(sport) == 1
    for d in deps:
        assert container_port(d, sport[0]["targetPort"]) == 8000
    for ing in find(objs, "Ingress"):
        assert ing["spec"]["ingressClassName"] == "nginx"
        assert ing["spec"]["tls"] and all(t["secretName"] for t in ing["spec"]["tls"])
        tls_hosts = {h for t in ing["spec"]["tls"] for h in t["hosts"]}
        for rule in ing["spec"]["rules"]:
            assert rule["host"] in tls_hosts
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == svc["metadata"]["name"]
                port = backend["port"]
                assert port.get("name") == sport[0].get("name") or \
                    port.get("number") == sport[0]["port"]
    for hpa in find(objs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"], ref["name"]) == \
            ("apps/v1", "Deployment", stable["metadata"]["name"])
        # Left to the HPA: a fixed count would be re-applied over its decision.
        assert "replicas" not in stable["spec"]
        assert hpa["spec"]["minReplicas"] >= 2
    for pdb in find(objs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        assert selects(sel, stable["spec"]["template"]["metadata"]["labels"])
        assert "maxUnavailable" in pdb["spec"]
    return stable


# ---- the validator itself -------------------------------------------------------------------

def _broken(mutate):
    dep = copy.deepcopy(one(manifests("deployment.yaml"), "Deployment"))
    mutate(dep)
    return dep


BROKEN = {
    "containerPort as a string": (
        lambda d: container(d)["ports"][0].update(containerPort="8000"),
        "containerPort must be integer"),
    "no selector": (
        lambda d: d["spec"].pop("selector"),
        "data/spec must have required property selector"),
    "misspelt field": (
        lambda d: container(d).update(readinesProbe=container(d).pop("readinessProbe")),
        "readinesProbe is not a known field"),
    "unknown kind": (
        lambda d: d.update(kind="Deploymnet"),
        "no model for apiVersion apps/v1 kind Deploymnet"),
    "wrong apiVersion": (
        lambda d: d.update(apiVersion="apps/v2"),
        "no model for apiVersion apps/v2"),
    "bad enum": (
        lambda d: d["spec"]["strategy"].update(type="Rolling"),
        "strategy/type must be equal to one of the allowed values"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_validator_rejects_a_broken_object(deploy_tools, case):
    mutate, message = BROKEN[case]
    good = one(manifests("deployment.yaml"), "Deployment")
    rc, results = validate(deploy_tools, [good, _broken(mutate)])
    assert rc == 1
    assert results[0]["errors"] == []
    assert any(message in e for e in results[1]["errors"]), results[1]["errors"]


# ---- deploy/k8s -----------------------------------------------------------------------------

def test_every_manifest_parses_and_validates(deploy_tools):
    objs, kinds = [], []
    for name in manifest_files():
        docs = manifests(name)
        assert docs, f"{name} is empty"
        if name == "kustomization.yaml":
            continue
        for d in docs:
            assert d["kind"] == "Namespace" or d["metadata"].get("namespace") == "nexus-app", name
            kinds.append(d["kind"])
        objs += docs
    assert sorted(kinds) == sorted([
        "Namespace", "ConfigMap", "Secret", "Deployment", "Deployment", "Service", "Ingress",
        "HorizontalPodAutoscaler", "PersistentVolumeClaim", "PodDisruptionBudget"])
    assert_valid(deploy_tools, objs)


def test_kustomization_lists_all_but_canary_and_the_sqlite_claim():
    kust = manifests("kustomization.yaml")[0]
    listed = set(kust["resources"])
    assert listed == set(manifest_files()) - {"kustomization.yaml", "canary.yaml", "pvc.yaml"}


def test_kustomize_renders_valid_wired_objects(deploy_tools):
    objs = kustomize(deploy_tools)
    assert_valid(deploy_tools, objs)
    expected = []
    for name in manifests("kustomization.yaml")[0]["resources"]:
        expected += [(d["kind"], d["metadata"]["name"]) for d in manifests(name)]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objs) == sorted(expected)
    stable = check_wiring(objs)
    assert stable["metadata"]["name"] == "nexus-deployment"
    # The guide's names are the contract.
    assert one(objs, "Service")["metadata"]["name"] == "nexus-service"
    assert one(objs, "HorizontalPodAutoscaler")["metadata"]["name"] == "nexus-hpa"
    # Three replicas must fit anywhere: nothing that demands one node per pod, and /data is
    # not a ReadWriteOnce claim.
    pod = stable["spec"]["template"]["spec"]
    assert "affinity" not in pod
    assert all(t["whenUnsatisfiable"] == "ScheduleAnyway" for t in pod["topologySpreadConstraints"])
    assert "emptyDir" in volume(stable, "data")


def test_canary_joins_the_service_but_not_the_stable_deployment(deploy_tools):
    objs = kustomize(deploy_tools) + manifests("canary.yaml")
    check_wiring(objs)
    canary = one(objs, "Deployment", "nexus-canary")
    stable = one(objs, "Deployment", "nexus-deployment")
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["template"]["metadata"]["labels"]["version"] == "canary"
    # The same pod but for the image and its label.
    a, b = copy.deepcopy(canary["spec"]["template"]), copy.deepcopy(stable["spec"]["template"])
    assert container(canary)["image"] != container(stable)["image"]
    for t in (a, b):
        t["metadata"]["labels"].pop("version")
        t["spec"]["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"].pop("version")
        t["spec"]["containers"][0].pop("image")
    assert a == b


def test_manifests_pass_config_check_with_their_secrets(deploy_tools, tmp_path):
    objs = kustomize(deploy_tools)
    res = config_check(objs, stable_deployment(objs), tmp_path, real_secrets(objs))
    assert res.returncode == 0, res.stderr
    assert "configuration is valid" in res.stdout
    # No variable of the pod is unknown to nexus.
    assert res.stderr == "", res.stderr


def test_the_placeholder_secret_is_refused_as_shipped(deploy_tools, tmp_path):
    objs = kustomize(deploy_tools)
    res = config_check(objs, stable_deployment(objs), tmp_path,
                       lambda name, key: secret_value(objs, name, key))
    assert res.returncode == 78, res.stdout + res.stderr
    assert "auth.jwt_secret is a placeholder" in res.stderr
    assert "NEXUS_AUTH_JWT_SECRET_FILE" in res.stderr


def test_service_links_would_break_the_pod(deploy_tools, tmp_path):
    # What Kubernetes injects for a Service named nexus-cache when service links are on:
    # this is why every pod spec sets enableServiceLinks: false (checked in check_wiring).
    objs = kustomize(deploy_tools)
    root = str(tmp_path / "pod")
    env = lay_out_pod(objs, stable_deployment(objs), root, real_secrets(objs))
    env["NEXUS_CACHE_PORT"] = "tcp://10.0.0.3:6379"
    res = nexus(["config", "check"], env, str(tmp_path))
    assert res.returncode == 78 and "cache.redis.port" in res.stderr, res.stderr


def termination_budget(dep, cfg):
    """(terminationGracePeriodSeconds, preStop + shutdown_delay + graceful_timeout)."""
    c = container(dep)
    pre = 0
    hook = c.get("lifecycle", {}).get("preStop")
    if hook and "sleep" in hook:
        pre = hook["sleep"]["seconds"]
    elif hook:
        cmd = hook["exec"]["command"]
        assert cmd[0].endswith("sleep"), f"a preStop that is not a sleep: {cmd}"
        pre = parse_duration(cmd[1])
    need = pre + parse_duration(cfg["server.shutdown_delay"]) + \
        parse_duration(cfg["server.graceful_timeout"])
    # Something must keep the listener open while endpoint removal propagates.
    assert pre + parse_duration(cfg["server.shutdown_delay"]) >= 3
    return dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], need


def test_manifests_stop_budget_covers_the_shutdown(deploy_tools, tmp_path):
    objs = kustomize(deploy_tools) + manifests("canary.yaml")
    for dep in find(objs, "Deployment"):
        cfg = effective_config(objs, dep, tmp_path / dep["metadata"]["name"])
        grace, need = termination_budget(dep, cfg)
        assert grace > need, (dep["metadata"]["name"], grace, need)
        assert (cfg["server.shutdown_delay"], cfg["server.graceful_timeout"]) == ("5s", "30s")


def check_image_paths(objs, dep, tmp_path):
    """The pod uses the image as the Dockerfile built it."""
    image = dockerfile()
    c = container(dep)
    pod = dep["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    cfg_path = image["env"]["NEXUS_CONFIG"]
    # config.yaml is the key of the ConfigMap mounted on the image's config folder.
    cfg_mount = mounts[os.path.dirname(cfg_path)]
    cm = one(objs, "ConfigMap", volume(dep, cfg_mount["name"])["configMap"]["name"])
    assert os.path.basename(cfg_path) in cm["data"]
    assert cfg_mount.get("readOnly") is True
    assert "NEXUS_CONFIG" not in {e["name"] for e in c.get("env", [])}
    # With a read-only root, each of the image's volumes needs a writable mount.
    for path in image["volumes"]:
        assert path in mounts and not mounts[path].get("readOnly"), path
    assert os.path.dirname(image["env"]["NEXUS_DATABASE_PATH"]) in mounts
    # Nothing is mounted over the binary, the bundled plugins or /app/plugins.
    for hidden in image["env"]["NEXUS_PLUGINS_DIR"].split(":") + ["/usr/local/bin"]:
        assert not [p for p in mounts
                    if hidden == p or hidden.startswith(p.rstrip("/") + "/")], hidden
    uid, gid = image["user"].split(":")
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)
    assert c.get("command") is None and c["args"] == image["cmd"] == ["serve"]
    assert image["entrypoint"] == ["nexus"]
    # The port the probes and the Service use is the one nexus listens on.
    cfg = effective_config(objs, dep, tmp_path)
    assert int(cfg["app.port"]) == container_port(dep, "http") == image["expose"][0]
    assert cfg["app.host"] == "0.0.0.0"
    assert cfg["app.environment"] == "production"
    # workers 0 would count the node's CPUs, not the container's limit.
    assert 1 <= int(cfg["app.workers"]) <= 4
    return cfg


def test_manifests_match_the_image(deploy_tools, tmp_path):
    objs = kustomize(deploy_tools)
    cfg = check_image_paths(objs, stable_deployment(objs), tmp_path)
    assert cfg["database.type"] == "postgresql" and cfg["cache.type"] == "redis"
    ing = one(objs, "Ingress")
    body = ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert parse_size(body) == parse_size(cfg["server.client_max_body_size"])


def test_yamllint_passes_on_the_manifests_and_chart_values():
    res = run(["yamllint", "--strict", "-c", os.path.join(ROOT, ".yamllint"), K8S,
               os.path.join(CHART, "values.yaml"), os.path.join(CHART, "Chart.yaml")])
    assert res.returncode == 0, res.stdout + res.stderr


# ---- deploy/helm/nexus ----------------------------------------------------------------------

def test_helm_lint_strict(deploy_tools):
    res = run([os.path.join(deploy_tools, "bin", "helm"), "lint", "--strict", CHART])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 chart(s) failed" in res.stdout


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_chart_renders_valid_wired_objects(deploy_tools, tmp_path, values):
    objs = helm_template(deploy_tools, VALUE_SETS[values])
    assert_valid(deploy_tools, objs)
    stable = check_wiring(objs, EXTERNAL_SECRETS)
    kinds = {o["kind"] for o in objs}
    assert ("HorizontalPodAutoscaler" in kinds) == (values not in ("no-autoscaling", "persistence"))
    assert ("Ingress" in kinds) == (values != "no-ingress")
    assert ("PersistentVolumeClaim" in kinds) == (values == "persistence")
    assert len(find(objs, "Deployment")) == (2 if values == "canary" else 1)
    # The pod's view of the rendered config is valid with its secrets...
    res = config_check(objs, stable, tmp_path / "check", real_secrets(objs))
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr
    # ... matches the image and the shutdown budget ...
    cfg = check_image_paths(objs, stable, tmp_path / "image")
    for dep in find(objs, "Deployment"):
        grace, need = termination_budget(dep, cfg)
        assert grace > need, (values, grace, need)
    # ... and follows the values.
    if values == "persistence":
        assert (cfg["database.type"], cfg["database.path"], cfg["cache.type"]) == \
            ("sqlite", "/data/nexus.db", "memory")
    else:
        assert (cfg["database.type"], cfg["database.host"], cfg["cache.redis.host"]) == \
            ("postgresql", "postgres-service", "redis-service")
    if values == "memory-metric":
        assert (cfg["server.shutdown_delay"], cfg["server.graceful_timeout"]) == ("20s", "60s")
        assert stable["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90
        metrics = one(objs, "HorizontalPodAutoscaler")["spec"]["metrics"]
        assert [m["resource"]["name"] for m in metrics] == ["cpu", "memory"]
    for ing in find(objs, "Ingress"):
        body = ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
        assert parse_size(body) == parse_size(cfg["server.client_max_body_size"])


def test_chart_secret_is_generated_valid_and_used(deploy_tools, tmp_path):
    # No secret given: the chart's generated JWT key passes production's rules as it is.
    objs = helm_template(deploy_tools)
    stable = stable_deployment(objs)
    res = config_check(objs, stable, tmp_path, lambda name, key: secret_value(objs, name, key))
    assert res.returncode == 0, res.stderr
    assert len(secret_value(objs, "rel-nexus", "jwt-secret")) >= 32
    # A given key is used as given.
    key = secrets.token_hex(24)
    objs = helm_template(deploy_tools, [f"secrets.jwtSecret={key}",
                                        "postgresql.auth.password=pg-pass"])
    assert secret_value(objs, "rel-nexus", "jwt-secret") == key
    assert secret_value(objs, "rel-nexus", "db-password") == "pg-pass"
    # Existing Secrets leave the chart nothing to hold for them.
    objs = helm_template(deploy_tools, VALUE_SETS["existing-secrets"])
    assert not find(objs, "Secret")
    files = volume_files(volume(stable_deployment(objs), "secrets"), objs)
    assert files == {"jwt-secret": ("app-keys", "jwt-secret"), "db-password": ("pg", "password"),
                     "redis-password": ("redis", "password")}


def test_chart_config_change_rolls_the_pods(deploy_tools):
    def checksums(sets):
        dep = stable_deployment(helm_template(deploy_tools, sets))
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        return ann["checksum/config"], ann["checksum/secret"]
    key = ["secrets.jwtSecret=" + "k" * 40]
    base = checksums(key)
    assert checksums(key) == base  # the same values render the same pods
    assert checksums(key + ["config.logging.level=debug"])[0] != base[0]
    assert checksums(key + ["postgresql.host=db.internal"])[0] != base[0]
    assert checksums(["secrets.jwtSecret=" + "j" * 40])[1] != base[1]


@pytest.mark.parametrize("sets, message", [
    (["persistence.enabled=true", "postgresql.enabled=false"], "SQLite"),
    (["persistence.enabled=true", "autoscaling.enabled=false", "replicaCount=3"], "ReadWriteOnce"),
    (["postgresql.enabled=false", "autoscaling.enabled=false", "replicaCount=1",
      "canary.enabled=true", "canary.image.tag=x"], "SQLite"),
    (["canary.enabled=true"], "canary.image.tag is required"),
])
def test_chart_refuses_pods_that_cannot_work_together(deploy_tools, sets, message):
    res = run([os.path.join(deploy_tools, "bin", "helm"), "template", "rel", CHART] +
              [a for s in sets for a in ("--set", s)])
    assert res.returncode != 0 and message in res.stderr, res.stderr


def test_chart_connection_test_probes_the_service(deploy_tools):
    objs = helm_template(deploy_tools)
    pod = one(objs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    svc = one(objs, "Service")
    args = pod["spec"]["containers"][0]["args"]
    assert args == ["health", "--host", svc["metadata"]["name"], "--port",
                    str(svc["spec"]["ports"][0]["port"])]
