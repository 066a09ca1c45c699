"""The repository's shell scripts, YAML files and Dockerfile pass their linters.

Every file is found by walking what git knows (tracked, or new and not ignored), so a script
or manifest added anywhere is checked without being listed here. Each linter is also shown a
broken sample, so a pass means the linter ran and judged, not that it was never invoked.
"""

import os
import subprocess

from conftest import ROOT

SHELLS = (b"#!/bin/sh", b"#!/bin/bash", b"#!/usr/bin/env bash", b"#!/usr/bin/env sh")


def repo_files():
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    return sorted({p for p in out.decode().split("\0") if p and os.path.isfile(
        os.path.join(ROOT, p))})


def shell_scripts():
    found = []
    for p in repo_files():
        if p.endswith(".sh"):
            found.append(p)
            continue
        with open(os.path.join(ROOT, p), "rb") as f:
            if f.readline().rstrip().startswith(SHELLS):
                found.append(p)
    return found


def yaml_files():
    return [p for p in repo_files() if p.endswith((".yml", ".yaml"))
            and "/templates/" not in p]


def run(args, **kw):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)


def test_every_shell_script_passes_shellcheck():
    scripts = shell_scripts()
    for expected in ("scripts/install-deps.sh", "scripts/services.sh", "bench/run.sh"):
        assert expected in scripts
    r = run(["shellcheck", "--external-sources", *scripts])
    assert r.returncode == 0, r.stdout + r.stderr


def test_shellcheck_rejects_a_broken_script(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nrm -rf $DIR/bin\nif [ $x = 1 ] then echo; fi\n")
    assert run(["shellcheck", str(bad)]).returncode != 0


def test_every_yaml_file_passes_yamllint():
    files = yaml_files()
    assert "config/config.prod.yaml" in files
    r = run(["yamllint", "--strict", "-f", "parsable", *files])
    assert r.returncode == 0, r.stdout + r.stderr


def test_yamllint_uses_the_repository_rules_and_rejects_bad_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nb:   [1,2]\nc: yes\n")
    r = run(["yamllint", "--strict", "-c", os.path.join(ROOT, ".yamllint"), str(bad)])
    assert r.returncode != 0
    for rule in ("key-duplicates", "commas", "truthy"):
        assert rule in r.stdout, r.stdout


def dockerlint(deploy_tools, path):
    return run(["node", os.path.join(deploy_tools, "node_modules", "dockerlint", "bin",
                                     "dockerlint.js"), "-f", path])


def test_dockerfile_passes_dockerlint(deploy_tools):
    r = dockerlint(deploy_tools, os.path.join(ROOT, "Dockerfile"))
    assert r.returncode == 0 and "is OK" in r.stdout, r.stdout + r.stderr


def test_dockerlint_rejects_a_broken_dockerfile(deploy_tools, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:12-slim\nCOPY --from=build /out /\nFOO bar\n"
                   "CMD ['nexus', 'serve']\n")
    r = dockerlint(deploy_tools, str(bad))
    assert r.returncode != 0 and "FOO is invalid" in r.stdout + r.stderr, r.stdout + r.stderr
