"""The Dockerfile, checked without a Docker engine.

No engine exists here, so its steps are replayed where they can be: the build stage's
packages are the ones scripts/install-deps.sh installs to build, `make install` with the
stage's PREFIX and DESTDIR produces a working tree, and every shared library the built
binary and plugins need (ldd) belongs to a package the runtime stage installs, or to one
those depend on, or to the base image's required set.
"""

import glob
import os
import re
import shlex
import subprocess

import pytest

from conftest import NEXUS_BUILD, ROOT

DOCKERFILE = os.path.join(ROOT, "Dockerfile")


def dockerfile_text():
    with open(DOCKERFILE) as f:
        return f.read()


def arg_list(name):
    """The packages of ARG name="..." (continued lines joined)."""
    text = dockerfile_text().replace("\\\n", " ")
    m = re.search(rf'^ARG {name}="([^"]*)"', text, re.M)
    assert m, f"no ARG {name} in the Dockerfile"
    return m.group(1).split()


def deps_build_profile():
    with open(os.path.join(ROOT, "scripts", "install-deps.sh")) as f:
        text = f.read()
    m = re.search(r"^build=\(([^)]*)\)", text, re.M)
    return shlex.split(m.group(1).replace("\\\n", " "))


def package_of(path):
    real = os.path.realpath(path)
    for candidate in (path, real, real.replace("/usr/lib/", "/lib/", 1)):
        p = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if p.returncode == 0:
            return p.stdout.split(":")[0].split(",")[0].strip()
    raise AssertionError(f"no package owns {path}")


def field(pkg, name):
    p = subprocess.run(["dpkg-query", "-W", f"-f=${{{name}}}", pkg], capture_output=True,
                       text=True)
    return p.stdout if p.returncode == 0 else ""


def closure(packages):
    """The packages, and every installed package they depend on, recursively."""
    seen, todo = set(), list(packages)
    while todo:
        pkg = todo.pop().split(":")[0]
        if pkg in seen:
            continue
        seen.add(pkg)
        deps = field(pkg, "Depends") + "," + field(pkg, "Pre-Depends")
        for alternative in deps.split(","):
            for dep in alternative.split("|"):
                name = dep.strip().split(" ")[0].split(":")[0]
                if name and field(name, "Status").endswith("installed"):
                    todo.append(name)
    return seen


def base_image_packages():
    """What debian:12-slim has without asking: the required and essential packages."""
    p = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Essential} ${Priority}\n"],
                       capture_output=True, text=True, check=True)
    base = [line.split()[0] for line in p.stdout.splitlines()
            if " yes " in f" {line} " or line.endswith(" required")]
    return closure(base)


def linked_libraries(path):
    p = subprocess.run(["ldd", path], capture_output=True, text=True, check=True)
    assert "not found" not in p.stdout, p.stdout
    return [m.group(1) for m in re.finditer(r"=> (/\S+)", p.stdout)]


def built_objects(root):
    objs = [os.path.join(root, "nexus")] if os.path.exists(os.path.join(root, "nexus")) else []
    return objs + sorted(glob.glob(os.path.join(root, "plugins", "*.so")))


# The sanitizer runtimes: linked only by `make SANITIZE=...` builds, which run this suite
# too; the image is built without them.
SANITIZER_RUNTIME = re.compile(r"^lib(asan|ubsan|lsan|tsan)\d+$")


def assert_runtime_covers(objects):
    runtime = closure(arg_list("RUNTIME_PACKAGES")) | base_image_packages()
    missing = {}
    for obj in objects:
        for lib in linked_libraries(obj):
            pkg = package_of(lib)
            if pkg not in runtime and not SANITIZER_RUNTIME.match(pkg):
                missing.setdefault(pkg, []).append(f"{os.path.basename(obj)} -> {lib}")
    assert not missing, f"the runtime stage lacks packages for: {missing}"


def test_build_stage_installs_what_install_deps_builds_with():
    assert sorted(arg_list("BUILD_PACKAGES")) == sorted(deps_build_profile())


def test_runtime_packages_cover_what_the_binary_and_plugins_link():
    objects = built_objects(NEXUS_BUILD)
    assert len(objects) >= 3, objects  # nexus, hello, todo
    assert_runtime_covers(objects)


def test_runtime_packages_are_not_build_packages():
    dev = [p for p in arg_list("RUNTIME_PACKAGES") if p.endswith("-dev") or p in ("gcc", "make")]
    assert not dev, dev


def test_make_install_as_the_build_stage_runs_it(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(["make", "--no-print-directory", "-C", ROOT, f"BUILD={NEXUS_BUILD}",
                        "install", "PREFIX=/usr/local", f"DESTDIR={out}"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    binary = out / "usr/local/bin/nexus"
    v = subprocess.run([str(binary), "version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("nexus "), v.stderr
    plugins = out / "usr/local/lib/nexus/plugins"
    assert (plugins / "hello.so").exists() and (plugins / "todo.so").exists()
    assert sorted(os.listdir(plugins / "todo" / "migrations")), "migrations not installed"
    assert_runtime_covers([str(binary)] + sorted(glob.glob(str(plugins / "*.so"))))


@pytest.mark.parametrize("needle", [
    "FROM debian:12-slim AS build",
    "USER 1000:1000",
    "EXPOSE 8000",
    'CMD ["nexus", "health"]',
    "mkdir -p /app/plugins /app/config /data /logs",
    "useradd --uid 1000",
    "NEXUS_PLUGINS_DIR=/app/plugins:",
])
def test_dockerfile_has(needle):
    assert needle in dockerfile_text()


def test_the_image_config_is_the_production_one_and_valid_with_its_secrets(tmp_path):
    # The image runs config/config.prod.yaml; with the secrets a deployment supplies, it
    # passes `nexus config check` (production rules included).
    assert "COPY --chown=nexus:nexus config/config.prod.yaml /app/config/config.yaml" in \
        dockerfile_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    env.update({"NEXUS_AUTH_JWT_SECRET": "x" * 48, "NEXUS_DATABASE_PASSWORD": "pw"})
    p = subprocess.run([os.path.join(NEXUS_BUILD, "nexus"), "config", "check", "--config",
                        os.path.join(ROOT, "config", "config.prod.yaml")],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr


def test_dockerignore_keeps_the_context_small():
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        lines = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    assert {".git", "build", "build-*", "data"} <= lines
    # The build stage copies the whole context: the Compose secret and TLS folders are in it.
    assert "deploy" in lines
