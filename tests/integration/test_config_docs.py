"""The schema's two published forms: the reference doc and the JSON Schema."""
import json
import os
import subprocess

import jsonschema
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("NEXUS_BIN", os.path.join(ROOT, "build", "nexus"))


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=10, cwd=ROOT)


def test_reference_doc_is_current():
    out = run("config", "docs")
    assert out.returncode == 0, out.stderr
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        committed = f.read()
    assert committed == out.stdout, "docs/configuration.md is stale: run `make docs`"


def test_reference_doc_names_every_guide_variable():
    doc = run("config", "docs").stdout
    guide = open(os.path.join(ROOT, "..", "shared", "seed", "nexus-deployment-guide.md")).read()
    block = guide.split("# .env.production", 1)[1].split("```", 1)[0]
    names = [line.split("=", 1)[0] for line in block.splitlines() if line.startswith("NEXUS_")]
    assert len(names) >= 30
    for name in names:
        assert f"`{name}`" in doc, name


@pytest.fixture(scope="module")
def schema():
    out = run("config", "schema")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


@pytest.mark.parametrize("name", ["config.yaml", "config.prod.yaml"])
def test_shipped_configs_validate(schema, name):
    with open(os.path.join(ROOT, "config", name)) as f:
        data = yaml.safe_load(f)
    jsonschema.validate(data, schema)


def test_guide_configmap_validates(schema):
    data = yaml.safe_load(
        """
app:
  name: "Nexus Application"
  environment: "production"
  debug: false
database:
  host: "postgres-service"
  port: 5432
cache:
  host: "redis-service"
  port: 6379
"""
    )
    jsonschema.validate(data, schema)


@pytest.mark.parametrize(
    "data",
    [
        {"app": {"wokers": 2}},
        {"app": {"port": 70000}},
        {"app": {"environment": "prod"}},
        {"server": {"graceful_timeout": "soon"}},
        {"nosuchsection": {}},
    ],
)
def test_schema_rejects_what_the_server_rejects(schema, data, tmp_path):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(data))
    out = run("config", "check", "--config", str(f))
    assert out.returncode == 78, out.stdout + out.stderr
