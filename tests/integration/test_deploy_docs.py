"""docs/deployment.md is checked against the repository and the binary.

Each check is a function that returns the problems it finds in a text. It runs on the guide
(no problem expected) and on a small broken sample (a problem expected), so a pass means the
check looked, not that it matched nothing. What is real comes from the binary where it can:
variables and keys from `nexus config schema`, subcommands from `nexus --help`; Makefile
targets from the Makefile; paths from the working tree.
"""

import glob
import json
import os
import re
import subprocess

import requests
import yaml

from conftest import NEXUS_BIN, NEXUS_BUILD, ROOT, free_port

GUIDE = os.path.join(ROOT, "docs", "deployment.md")

# The table of contents of the deployment guide this one replaces, in its order: every entry
# must have its section here.
SECTIONS = [
    "Overview",
    "Pre-Deployment Checklist",
    "Deployment Strategies",
    "Docker Deployment",
    "Kubernetes Deployment",
    "Cloud Platform Deployment",
    "Production Configuration",
    "Scaling Strategies",
    "Load Balancing",
    "Database Deployment",
    "Caching and Performance",
    "Monitoring and Logging",
    "Security Hardening",
    "CI/CD Pipeline",
    "Backup and Recovery",
    "Troubleshooting",
    "Best Practices",
]

# Subsections the guide must have under a section (the original guide's, plus the platforms
# it names).
SUBSECTIONS = {
    "Pre-Deployment Checklist": ["System Requirements", "Software Dependencies",
                                 "Pre-Deployment Tasks"],
    "Deployment Strategies": ["Blue-Green Deployment", "Rolling Deployment",
                              "Canary Deployment"],
    "Docker Deployment": ["Dockerfile", "Docker Compose", "Docker Swarm Deployment"],
    "Kubernetes Deployment": ["Kubernetes Manifests", "Helm Chart"],
    "Cloud Platform Deployment": ["AWS Deployment", "Using Elastic Beanstalk",
                                  "Using ECS/Fargate", "Google Cloud Platform",
                                  "Azure Deployment"],
    "Production Configuration": ["Environment Variables", "Nginx Configuration"],
    "Scaling Strategies": ["Database Connection Pooling"],
}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def guide():
    return read(GUIDE)


def run_nexus(*args):
    r = subprocess.run([NEXUS_BIN, *args], capture_output=True, text=True, timeout=30,
                       env={k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")})
    assert r.returncode == 0, f"nexus {' '.join(args)}: {r.returncode}\n{r.stderr}"
    return r.stdout


# ---- reading the guide -----------------------------------------------------------------

FENCE_RE = re.compile(r"^( *)```([^\s`]*)[^\n]*\n(.*?)^\1```[ \t]*$", re.M | re.S)


def fences(text):
    """(language, body) of every fenced block, bodies dedented by the fence's indent."""
    out = []
    for m in FENCE_RE.finditer(text):
        indent = len(m.group(1))
        body = "".join(line[indent:] if line[:indent].strip() == "" else line
                       for line in m.group(3).splitlines(keepends=True))
        out.append((m.group(2).lower(), body))
    return out


def headings(text):
    """(level, title) of every Markdown heading outside fenced blocks."""
    bare = FENCE_RE.sub("", text)
    return [(len(m.group(1)), m.group(2).strip())
            for m in re.finditer(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*$", bare, re.M)]


def slug(title):
    """The anchor GitHub gives a heading."""
    s = title.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


# ---- what is real ----------------------------------------------------------------------

def schema_keys_and_vars():
    """Dotted keys (leaves and their groups) and NEXUS_* variables of `nexus config schema`."""
    schema = json.loads(run_nexus("config", "schema"))
    keys, groups, variables = set(), set(), set()

    def walk(props, prefix):
        for name, spec in props.items():
            key = f"{prefix}{name}"
            if "properties" in spec:
                if prefix:
                    groups.add(key)
                walk(spec["properties"], key + ".")
            else:
                keys.add(key)
                variables.update(re.findall(r"\bNEXUS_[A-Z0-9_]+", spec.get("description", "")))

    walk(schema["properties"], "")
    return keys, groups, variables


def other_names():
    """The aliases of docs/configuration.md's "Other names" table (keys and variables)."""
    text = read(os.path.join(ROOT, "docs", "configuration.md"))
    part = text.split("## Other names", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"`([^`]+)`", part)
    return ({n for n in names if "." in n}, {n for n in names if n.startswith("NEXUS_")})


def server_read_vars():
    """NEXUS_* variables the server reads by name (getenv in src/), besides the keys'."""
    found = set()
    for path in glob.glob(os.path.join(ROOT, "src", "**", "*.c"), recursive=True):
        found.update(re.findall(r'getenv\("(NEXUS_[A-Z0-9_]+)"\)', read(path)))
    return found


def bundled_plugin_settings():
    """plugins.<name>.<setting> keys the bundled plugins declare (`nexus config show`), and
    their NEXUS_PLUGINS_<NAME>_<SETTING> variables."""
    shown = yaml.safe_load(run_nexus("config", "show", "--plugins-dir",
                                     os.path.join(NEXUS_BUILD, "plugins")))["plugins"]
    keys, variables = set(), set()
    for name, settings in shown.items():
        if isinstance(settings, dict):
            for setting in settings:
                keys.add(f"plugins.{name}.{setting}")
                variables.add(re.sub(r"[^A-Z0-9]", "_", f"NEXUS_PLUGINS_{name}_{setting}".upper()))
    assert keys, "the bundled plugins declare settings; `nexus config show` listed none"
    return keys, variables


def real_variables():
    _, _, variables = schema_keys_and_vars()
    variables |= other_names()[1] | server_read_vars() | bundled_plugin_settings()[1]
    return variables | {v + "_FILE" for v in variables}


def real_keys():
    keys, groups, _ = schema_keys_and_vars()
    return keys | other_names()[0] | bundled_plugin_settings()[0], groups


def subcommands():
    """{command: set of second words that are sub-subcommands (empty: any argument)}."""
    top = run_nexus("--help")
    cmds = set(re.findall(r"^  ([a-z][\w-]*)\s{2,}", top.split("commands:", 1)[1], re.M))
    # A second word is checked only for the commands that have sub-subcommands.
    config_usage = subprocess.run([NEXUS_BIN, "config", "--help"], capture_output=True,
                                  text=True, timeout=30)
    config_words = set(re.findall(r"nexus config ([a-z]+)", config_usage.stdout +
                                  config_usage.stderr))
    config_words |= set(re.findall(r"\|\s*([a-z]+)", config_usage.stdout))
    migrate_usage = subprocess.run([NEXUS_BIN, "migrate", "--help"], capture_output=True,
                                   text=True, timeout=30)
    migrate_words = set(re.findall(r"nexus migrate ([a-z]+)", migrate_usage.stdout +
                                   migrate_usage.stderr))
    out = {c: set() for c in cmds}
    out["config"] = config_words
    out["migrate"] = migrate_words
    return out


def make_targets():
    text = read(os.path.join(ROOT, "Makefile"))
    targets = set(re.findall(r"^([A-Za-z][\w.-]*)[ \t]*:(?!=)", text, re.M))
    for phony in re.findall(r"^\.PHONY:((?:[^\n]*\\\n)*[^\n]*)", text, re.M):
        targets.update(phony.replace("\\\n", " ").split())
    return targets


# ---- the checks ------------------------------------------------------------------------

PATH_PREFIXES = ("deploy", "docs", "config", "scripts", "tests", "src", "plugins", "bench",
                 "include")
PATH_RE = re.compile(r"(?<![\w/.$~-])(?:\./)?((?:%s)/[\w.@/-]*)" % "|".join(PATH_PREFIXES))
ROOT_FILES_RE = re.compile(r"`(Dockerfile|\.dockerignore|docker-compose\.yml|Makefile)`")


def path_problems(text):
    text = text.replace("file://", "file:// ")
    found = {m.group(1).rstrip(".,:;") for m in PATH_RE.finditer(text)}
    found |= set(ROOT_FILES_RE.findall(text))
    return sorted(p for p in found if not os.path.exists(os.path.join(ROOT, p)))


def link_problems(text):
    """Relative links: the file exists; an anchor names a heading of its file."""
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(os.path.dirname(GUIDE), path)) if path else GUIDE
        if not os.path.exists(full):
            problems.append(f"{target}: no file {os.path.relpath(full, ROOT)}")
            continue
        if anchor and anchor not in {slug(t) for _, t in headings(read(full))}:
            problems.append(f"{target}: no heading #{anchor}")
    return problems


VAR_RE = re.compile(r"\bNEXUS_[A-Z0-9_]*[A-Z0-9]\b")


def variable_problems(text, real):
    return sorted(set(VAR_RE.findall(text)) - real)


SECTION_NAMES = ("app", "server", "database", "cache", "auth", "security", "monitoring",
                 "logging", "static", "plugins")
KEY_RE = re.compile(r"(?<![\w./$-])((?:%s)(?:\.[a-z_][a-z0-9_]*)+)(?![\w/-]|\.\w)"
                    % "|".join(SECTION_NAMES))
# `app.yaml`, `cache.md`: file names, not keys.
FILE_EXTS = {"yaml", "yml", "json", "conf", "md", "service", "sh", "db", "sql", "so", "env"}


def key_problems(text, keys, groups):
    found = {m.group(1) for m in KEY_RE.finditer(text)}
    return sorted(k for k in found
                  if k.rsplit(".", 1)[1] not in FILE_EXTS and k not in keys and k not in groups)


# `nexus WORD` where nexus is the command: at the start of a line or a backticked span, after
# a shell operator or `--`, under a path (build/nexus), as an image (nexus:TAG WORD), or in a
# JSON/YAML argument list ("nexus", "health").
CMD_CONTEXT = r"(?:^[ \t]*(?:\$[ \t]+)?|&&|\|\||[;|(`]|\$\(|--[ \t]|\bexec[ \t]+[\w.-]+[ \t]+)"
NEXUS_CMD_RE = re.compile(CMD_CONTEXT + r"[ \t]*(?:[\w./-]*/)?nexus[ \t]+([a-z][\w-]*)"
                          r"(?:[ \t]+([a-z][\w-]*))?", re.M)
IMAGE_CMD_RE = re.compile(r"\bnexus:(?:\$\{\{[^}]*\}\}|[\w.-]+)[ \t]+([a-z][\w-]*)"
                          r"(?:[ \t]+([a-z][\w-]*))?")
ARRAY_CMD_RE = re.compile(r'"(?:[\w./-]*/)?nexus"\s*,\s*"([a-z][\w-]*)"')


def subcommand_problems(text, cmds):
    problems = []
    uses = [m.groups() for m in NEXUS_CMD_RE.finditer(text)]
    uses += [m.groups() for m in IMAGE_CMD_RE.finditer(text)]
    uses += [(w, None) for w in ARRAY_CMD_RE.findall(text)]
    for first, second in uses:
        if first not in cmds:
            problems.append(f"nexus {first}")
        elif second and cmds[first] and second not in cmds[first]:
            problems.append(f"nexus {first} {second}")
    return sorted(set(problems))


MAKE_RE = re.compile(r"(?:^[ \t]*|&&|\|\||[;(`]|\$\()[ \t]*make((?:[ \t]+[^\s;&|`)#]+)*)", re.M)


def make_problems(text, targets):
    problems = set()
    for m in MAKE_RE.finditer(text):
        for word in m.group(1).split():
            if word.startswith("-") or "=" in word:
                continue
            if word not in targets:
                problems.add(f"make {word}")
    return sorted(problems)


def block_problems(text):
    """Every ```yaml block loads with safe_load_all and every ```json block with json."""
    problems = []
    for i, (lang, body) in enumerate(fences(text)):
        try:
            if lang in ("yaml", "yml"):
                list(yaml.safe_load_all(body))
            elif lang == "json":
                json.loads(body)
        except (yaml.YAMLError, ValueError) as e:
            problems.append(f"block {i} ({lang}): {e}")
    return problems


def section_problems(text):
    problems = []
    hs = headings(text)
    h2 = [t for level, t in hs if level == 2]
    missing = [s for s in SECTIONS if s not in h2]
    problems += [f"no section '## {s}'" for s in missing]
    present = [t for t in h2 if t in SECTIONS]
    if not missing and present != SECTIONS:
        problems.append(f"sections out of order: {present}")
    for section, subs in SUBSECTIONS.items():
        if section not in h2:
            continue
        start = hs.index((2, section))
        end = next((i for i in range(start + 1, len(hs)) if hs[i][0] <= 2), len(hs))
        inside = {t for level, t in hs[start + 1:end]}
        problems += [f"no '{s}' under '{section}'" for s in subs if s not in inside]
    # The table of contents links every section.
    toc = text.split("## Table of Contents", 1)[-1].split("\n## ", 1)[0]
    linked = re.findall(r"\[([^\]]+)\]\(#([^)]+)\)", toc)
    for s in SECTIONS:
        if (s, slug(s)) not in linked:
            problems.append(f"table of contents: no [{s}](#{slug(s)})")
    return problems


# ---- the guide passes every check --------------------------------------------------------

def test_every_repository_path_exists():
    assert path_problems(guide()) == []


def test_every_relative_link_resolves():
    assert link_problems(guide()) == []


def test_every_variable_is_real():
    assert variable_problems(guide(), real_variables()) == []


def test_every_config_key_is_real():
    keys, groups = real_keys()
    assert key_problems(guide(), keys, groups) == []


def test_every_nexus_subcommand_is_real():
    assert subcommand_problems(guide(), subcommands()) == []


def test_every_make_target_is_real():
    assert make_problems(guide(), make_targets()) == []


def test_every_yaml_and_json_block_parses():
    blocks = fences(guide())
    assert any(lang == "yaml" for lang, _ in blocks) and any(lang == "json" for lang, _ in blocks)
    assert block_problems(guide()) == []


def test_every_section_of_the_original_guide_is_here():
    assert section_problems(guide()) == []


# ---- each check finds what it is for ---------------------------------------------------

def test_the_checks_reject_a_broken_sample():
    keys, groups = real_keys()
    assert path_problems("see `deploy/k8s/no-such.yaml` and `Makefile`") == [
        "deploy/k8s/no-such.yaml"]
    assert path_problems("kubectl apply -f ./deploy/nope/x.yaml") == ["deploy/nope/x.yaml"]
    assert link_problems("[x](database.md#no-such-heading) [y](nope.md)") == [
        "database.md#no-such-heading: no heading #no-such-heading", "nope.md: no file docs/nope.md"]
    real = real_variables()
    assert "NEXUS_APP_PORT" in real and "NEXUS_DATABASE_PASSWORD_FILE" in real
    assert "NEXUS_CONFIG" in real and "NEXUS_CACHE_HOST" in real
    assert variable_problems("NEXUS_APP_PROT=1 NEXUS_APP_PORT=2 NEXUS_*_FILE", real) == [
        "NEXUS_APP_PROT"]
    assert key_problems("`server.workers` `app.workers` `cache.redis.*` `app.yaml`",
                        keys, groups) == ["server.workers"]
    assert key_problems("`plugins.todo.page_size` `plugins.todo.page_sise`", keys, groups) == [
        "plugins.todo.page_sise"]
    assert variable_problems("NEXUS_PLUGINS_TODO_PAGE_SIZE NEXUS_PLUGINS_TODO_PAGESIZE",
                             real) == ["NEXUS_PLUGINS_TODO_PAGESIZE"]
    cmds = subcommands()
    assert {"serve", "config", "migrate", "backup", "restore", "health"} <= set(cmds)
    assert subcommand_problems("```sh\nnexus start\nnexus config verify\n"
                               "docker run img nexus:1.0 deploy\n```\n"
                               '["nexus", "probe"] `nexus health` nexus-app nexus',
                               cmds) == ["nexus config verify", "nexus deploy",
                                         "nexus probe", "nexus start"]
    assert make_problems("`make test` and `make deploy`; make -s SANITIZE=x check",
                         make_targets()) == ["make check", "make deploy"]
    assert len(block_problems("```yaml\na: [1\n```\n```json\n{\"a\": }\n```\n"
                              "```gotemplate\n{{ .Values.x }}\n```\n")) == 2
    broken = "## Table of Contents\n- [Overview](#overview)\n## Overview\n## Docker Deployment\n"
    problems = section_problems(broken)
    assert "no section '## Troubleshooting'" in problems
    assert "table of contents: no [Best Practices](#best-practices)" in problems


# ---- what the guide says the server does not do, it does not do -----------------------

def test_what_the_guide_says_is_missing_is_missing(spawn, tmp_path):
    """The guide says: no /metrics (whatever monitoring.* says), no static files, no security
    headers from Nexus itself. When one of these changes, the guide must change with it."""
    text = guide()
    assert "does not serve `/metrics`" in text
    assert "Nexus does not serve files" in text
    assert "sends none of them" in text
    metrics_port = free_port()
    static = tmp_path / "static"
    static.mkdir()
    (static / "site.css").write_text("body{}")
    s = spawn(env={"NEXUS_MONITORING_PROMETHEUS_ENABLED": "true",
                   "NEXUS_MONITORING_METRICS_PORT": str(metrics_port),
                   "NEXUS_STATIC_DIR": str(static)})
    assert s.get("/metrics").status_code == 404
    assert s.get("/static/site.css").status_code == 404
    r = s.get("/health")
    assert r.status_code == 200
    for header in ("Strict-Transport-Security", "X-Frame-Options", "Content-Security-Policy"):
        assert header not in r.headers
    try:
        requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)
        listening = True
    except requests.ConnectionError:
        listening = False
    assert not listening, "something serves the metrics port: update the guide"


# ---- the guide's Kubernetes names are the manifests' ----------------------------------

def test_kubernetes_names_match_the_manifests():
    """Each row `deploy/k8s/FILE` | Kind `name` of the guide's table is an object of FILE, and
    the namespace the commands use is the manifests'."""
    text = guide()
    rows = re.findall(r"^\| `(deploy/k8s/[\w.-]+\.yaml)` \| ([A-Z][A-Za-z]+) `([\w.-]+)`",
                      text, re.M)
    assert len(rows) >= 8, rows
    namespaces = set()
    for path, kind, name in rows:
        docs = [d for d in yaml.safe_load_all(read(os.path.join(ROOT, path))) if d]
        objects = {(d.get("kind"), d.get("metadata", {}).get("name")) for d in docs}
        assert (kind, name) in objects, f"{path} has {sorted(objects)}, the guide says {kind} {name}"
        namespaces.update(d["metadata"]["name"] for d in docs if d.get("kind") == "Namespace")
    used = set(re.findall(r"kubectl -n ([\w-]+)", text))
    assert used and used <= namespaces, (used, namespaces)


# ---- excerpts are the files' own lines ------------------------------------------------

EXCERPT_RE = re.compile(r"^(?:#|//) ?([\w./-]+) \(excerpt\)\s*$")


def excerpt_problems(text, json_files=None):
    """A block whose first line is `# PATH (excerpt)` holds lines of PATH, in their order;
    a ```json block is an object found inside one of the JSON files (by default those under
    deploy/)."""
    problems = []
    if json_files is None:
        json_files = glob.glob(os.path.join(ROOT, "deploy", "**", "*.json"), recursive=True)
    for lang, body in fences(text):
        lines = body.splitlines()
        m = EXCERPT_RE.match(lines[0]) if lines else None
        if m:
            path = os.path.join(ROOT, m.group(1))
            if not os.path.isfile(path):
                problems.append(f"{m.group(1)}: no such file")
                continue
            have = [line.strip() for line in read(path).splitlines()]
            at = 0
            for line in (l.strip() for l in lines[1:]):
                if not line:
                    continue
                try:
                    at = have.index(line, at) + 1
                except ValueError:
                    problems.append(f"{m.group(1)}: not in the file (or not in this order): {line}")
        elif lang == "json":
            try:
                excerpt = json.loads(body)
            except ValueError:
                continue  # block_problems reports it
            if not any(contains(json.loads(read(f)), excerpt) for f in json_files):
                problems.append(f"json excerpt found in no file under deploy/: {body[:80]}")
    return problems


def contains(doc, part):
    """True when `part` (a dict) is a sub-dict of `doc` or of any object nested in it."""
    def matches(d, p):
        if isinstance(p, dict):
            return isinstance(d, dict) and all(k in d and matches(d[k], v) for k, v in p.items())
        return d == p
    if matches(doc, part):
        return True
    children = doc.values() if isinstance(doc, dict) else doc if isinstance(doc, list) else []
    return any(contains(c, part) for c in children)


def test_excerpts_match_their_files():
    assert excerpt_problems(guide()) == []
    assert sum(1 for _, body in fences(guide()) if EXCERPT_RE.match(body.split("\n", 1)[0])) >= 2


def test_the_excerpt_check_rejects_a_changed_excerpt(tmp_path):
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"containerDefinitions": [
        {"healthCheck": {"command": ["CMD", "nexus", "health"], "interval": 15}}]}))
    bad = ("```nginx\n# deploy/nginx/nexus.conf (excerpt)\nupstream nexus_backend {\n"
           "    server 127.0.0.1:9001;\n}\n```\n"
           '```json\n{"healthCheck": {"command": ["CMD", "nexus", "health"], "interval": 1}}\n```\n')
    problems = excerpt_problems(bad, [str(task)])
    assert any("127.0.0.1:9001" in p for p in problems), problems
    assert any("json excerpt" in p for p in problems), problems
    good = ("```nginx\n# deploy/nginx/nexus.conf (excerpt)\nupstream nexus_backend {\n}\n```\n"
            '```json\n{"healthCheck": {"interval": 15}}\n```\n')
    assert excerpt_problems(good, [str(task)]) == []
