"""`nexus new plugin NAME`: the scaffold builds out of tree against an installed Nexus.

The round trip is the one a plugin author makes: `make install PREFIX=<tmp>` from the
repository (reusing the build under test), `<tmp>/bin/nexus new plugin demo` in another
folder, `make` there through `pkg-config nexus` only, `make test` (the generated bash + curl
test must pass), then the installed server loading the scaffold folder and answering the
plugin's routes to this test. The error cases check the exit status (64 usage, 73 cannot
create) and that nothing is written.
"""

import os
import subprocess

import pytest

from conftest import NEXUS_BIN, NEXUS_BUILD, ROOT, Server, assert_problem

EX_USAGE = 64
EX_CANTCREAT = 73

SCAFFOLD_FILES = ("{n}.c", "Makefile", "test_{n}.sh", "README.md", ".gitignore")


def run(cmd, cwd, env=None, timeout=60):
    return subprocess.run(cmd, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def author_env(prefix):
    """The environment of a plugin author with Nexus installed under prefix: nothing of the
    repository's tree, no make variables inherited from a `make test` running this suite,
    and no NEXUS_* variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NEXUS_") and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL",
                                                        "CFLAGS", "CPPFLAGS", "LDFLAGS",
                                                        "PKG_CONFIG_PATH")}
    env["PKG_CONFIG_PATH"] = os.path.join(prefix, "lib", "pkgconfig")
    env["PATH"] = os.path.join(prefix, "bin") + os.pathsep + os.environ.get("PATH", "")
    return env


def explain(p):
    return f"exit {p.returncode}\n---- stdout ----\n{p.stdout}\n---- stderr ----\n{p.stderr}"


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """Nexus installed from the build under test (make install PREFIX=... BUILD=...)."""
    prefix = str(tmp_path_factory.mktemp("prefix"))
    # Under `make test` the parent's MAKEFLAGS name a jobserver this child cannot reach;
    # only SANITIZE, which decides how the build under test was compiled, is carried over.
    makeflags = os.environ.get("MAKEFLAGS", "").split()
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    args = [a for a in makeflags if a.startswith("SANITIZE=")]
    p = run(["make", "--no-print-directory", "-C", ROOT, "install", f"PREFIX={prefix}",
             f"BUILD={NEXUS_BUILD}", *args], cwd=ROOT, env=env, timeout=300)
    assert p.returncode == 0, f"make install failed\n{explain(p)}"
    for f in ("bin/nexus", "include/nexus/nexus.h", "include/nexus/plugin.h",
              "lib/pkgconfig/nexus.pc", "lib/nexus/plugins/hello.so"):
        assert os.path.exists(os.path.join(prefix, f)), f"make install did not install {f}"
    return prefix


def new_plugin(nexus, args, cwd, env=None):
    return run([nexus, "new", "plugin", *args], cwd=cwd, env=env)


def scaffold(nexus, name, cwd, env=None, extra=()):
    p = new_plugin(nexus, [name, *extra], cwd, env)
    assert p.returncode == 0, explain(p)
    return p


# ---- the round trip ---------------------------------------------------------------------

def test_round_trip_out_of_tree(prefix, tmp_path):
    nexus = os.path.join(prefix, "bin", "nexus")
    env = author_env(prefix)
    work = tmp_path / "work"
    work.mkdir()

    p = scaffold(nexus, "demo", work, env)
    proj = work / "demo"
    for f in SCAFFOLD_FILES:
        path = proj / f.format(n="demo")
        assert path.is_file(), f"{path} not created\n{explain(p)}"
        assert str(f.format(n="demo")) in p.stdout, f"{f} not listed\n{p.stdout}"
        text = path.read_text()
        assert "@NAME@" not in text and "@UPPER@" not in text, f"unexpanded template in {f}"
    assert os.access(proj / "test_demo.sh", os.X_OK)
    assert "next steps" in p.stdout and "make test" in p.stdout
    # An installed nexus under a PREFIX pkg-config does not search says what to export.
    assert f"PKG_CONFIG_PATH={prefix}/lib/pkgconfig" in p.stdout

    # Built through pkg-config against the installed headers, warning-free under -Werror.
    b = run(["make"], cwd=proj, env=env)
    assert b.returncode == 0, f"make failed\n{explain(b)}"
    assert f"-I{prefix}/include" in b.stdout, b.stdout
    for flag in ("-fPIC", "-shared", "-Wall", "-Wextra", "-Werror"):
        assert flag in b.stdout, f"{flag} not in the build line\n{b.stdout}"
    assert (proj / "demo.so").is_file()

    # The generated test: a server on a free port, the routes checked with curl.
    t = run(["make", "test"], cwd=proj, env=env, timeout=60)
    assert t.returncode == 0, f"make test failed\n{explain(t)}"
    assert "all checks passed" in t.stdout, explain(t)
    assert "FAIL" not in t.stdout + t.stderr, explain(t)

    # The installed server loads the scaffold folder and the installed bundled plugins.
    srv = Server(tmp_path / "srv", workers=2, name="scaffold",
                 env={"NEXUS_PLUGINS_DEMO_GREETING": "hi from pytest"})
    srv.cmd[0] = nexus
    i = srv.cmd.index("--plugins-dir")
    srv.cmd[i + 1] = f"{proj}:{prefix}/lib/nexus/plugins"
    srv.start()
    try:
        r = srv.get("/demo")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json"), r.headers
        assert r.json() == {"plugin": "demo", "message": "hi from pytest"}

        r = srv.get("/demo/items/7")
        assert r.status_code == 200, r.text
        assert r.json() == {"id": 7, "name": "item 7"}

        assert_problem(srv.get("/demo/items/5000"), 404, instance="/demo/items/5000",
                       detail_contains="no item 5000")
        assert_problem(srv.get("/demo/items/9999999999999999999"), 400,
                       instance="/demo/items/9999999999999999999")

        r = srv.get("/json")  # the bundled hello, from the installed plugins folder
        assert r.status_code == 200 and r.json() == {"message": "Hello, World!"}
        assert "plugin demo 0.1.0 loaded from " + str(proj) in srv.log()
    finally:
        srv.stop()

    c = run(["make", "clean"], cwd=proj, env=env)
    assert c.returncode == 0 and not (proj / "demo.so").exists(), explain(c)


def test_dir_option_and_underscore_name(prefix, tmp_path):
    """--dir puts the project elsewhere; a name with '_' and digits names the files, the
    route and the settings variable (NEXUS_PLUGINS_MY_API2_GREETING)."""
    nexus = os.path.join(prefix, "bin", "nexus")
    env = author_env(prefix)
    (tmp_path / "empty").mkdir()  # an existing empty folder is fine
    p = scaffold(nexus, "my_api2", tmp_path, env, extra=["--dir", "empty"])
    proj = tmp_path / "empty"
    assert sorted(os.listdir(proj)) == sorted(f.format(n="my_api2") for f in SCAFFOLD_FILES)
    assert not (tmp_path / "my_api2").exists()
    assert "NEXUS_PLUGINS_MY_API2_GREETING" in (proj / "README.md").read_text()
    assert "NEXUS_PLUGINS_MY_API2_GREETING" in (proj / "test_my_api2.sh").read_text()
    assert '"/my_api2/items/{id:int}"' in (proj / "my_api2.c").read_text()
    t = run(["make", "test"], cwd=proj, env=env, timeout=60)
    assert t.returncode == 0, f"make test failed\n{explain(t)}"
    assert "ok   GET /my_api2/items/42 -> 200" in t.stdout, explain(t)

    p = scaffold(nexus, "other", tmp_path, env, extra=["--dir=" + str(tmp_path / "abs")])
    assert (tmp_path / "abs" / "other.c").is_file(), explain(p)


def test_generated_test_fails_when_the_plugin_is_wrong(prefix, tmp_path):
    """The generated test is a real test: a plugin answering the wrong status fails it."""
    nexus = os.path.join(prefix, "bin", "nexus")
    env = author_env(prefix)
    scaffold(nexus, "broken", tmp_path, env)
    proj = tmp_path / "broken"
    src = proj / "broken.c"
    text = src.read_text()
    assert "nx_problem(res, 404," in text
    src.write_text(text.replace("nx_problem(res, 404,", "nx_problem(res, 410,"))
    t = run(["make", "test"], cwd=proj, env=env, timeout=60)
    assert t.returncode != 0, f"make test passed with a broken plugin\n{explain(t)}"
    assert "FAIL GET /broken/items/0 -> 410" in t.stderr, explain(t)


# ---- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Demo", "1demo", "_demo", "de-mo", "de.mo", "demo/x", "d" * 64,
                                  "", "dé", "health", "ready"])
def test_bad_name_is_a_usage_error(tmp_path, name):
    p = new_plugin(NEXUS_BIN, [name], tmp_path)
    assert p.returncode == EX_USAGE, explain(p)
    assert "not a valid plugin name" in p.stderr, p.stderr
    assert os.listdir(tmp_path) == [], "a bad name must create nothing"


@pytest.mark.parametrize("name", ["a", "x" * 63, "a_1", "todo_v2"])
def test_good_names(tmp_path, name):
    p = new_plugin(NEXUS_BIN, [name], tmp_path)
    assert p.returncode == 0, explain(p)
    assert (tmp_path / name / f"{name}.c").is_file()


@pytest.mark.parametrize("args, message", [
    ([], "what to create"),
    (["widget", "x"], "only 'plugin'"),
    (["plugin"], "NAME is missing"),
    (["plugin", "x", "y"], "unexpected argument 'y'"),
    (["plugin", "x", "--bogus"], "unknown option '--bogus'"),
    (["plugin", "x", "--dir"], "--dir needs a PATH"),
    (["plugin", "x", "--dir="], "non-empty PATH"),
])
def test_missing_or_bad_arguments(tmp_path, args, message):
    p = run([NEXUS_BIN, "new", *args], cwd=tmp_path)
    assert p.returncode == EX_USAGE, explain(p)
    assert message in p.stderr, p.stderr
    assert "usage: nexus new plugin NAME" in p.stderr
    assert os.listdir(tmp_path) == []


def test_help(tmp_path):
    p = run([NEXUS_BIN, "new", "--help"], cwd=tmp_path)
    assert p.returncode == 0 and "usage: nexus new plugin NAME [--dir PATH]" in p.stdout


def test_existing_non_empty_folder_is_refused(tmp_path):
    (tmp_path / "demo").mkdir()
    keep = tmp_path / "demo" / "demo.c"
    keep.write_text("mine\n")
    p = new_plugin(NEXUS_BIN, ["demo"], tmp_path)
    assert p.returncode == EX_CANTCREAT, explain(p)
    assert "already exists and is not empty" in p.stderr, p.stderr
    assert os.listdir(tmp_path / "demo") == ["demo.c"] and keep.read_text() == "mine\n"

    # The same with --dir, and a second run over a project just made.
    p = new_plugin(NEXUS_BIN, ["other", "--dir", "demo"], tmp_path)
    assert p.returncode == EX_CANTCREAT, explain(p)
    assert new_plugin(NEXUS_BIN, ["fresh"], tmp_path).returncode == 0
    again = new_plugin(NEXUS_BIN, ["fresh"], tmp_path)
    assert again.returncode == EX_CANTCREAT, explain(again)


def test_target_that_cannot_be_created(tmp_path):
    (tmp_path / "afile").write_text("x")
    p = new_plugin(NEXUS_BIN, ["demo", "--dir", "afile"], tmp_path)
    assert p.returncode == EX_CANTCREAT, explain(p)
    assert "is not a folder" in p.stderr, p.stderr

    p = new_plugin(NEXUS_BIN, ["demo", "--dir", "no/such/parent"], tmp_path)
    assert p.returncode == EX_CANTCREAT, explain(p)
    assert "cannot create the folder no/such/parent" in p.stderr, p.stderr
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_not_installed_binary_says_so(tmp_path):
    """The build tree's nexus has no nexus.pc beside it: the next steps say to install."""
    p = new_plugin(NEXUS_BIN, ["demo"], tmp_path)
    assert p.returncode == 0, explain(p)
    if not os.path.exists(os.path.join(os.path.dirname(NEXUS_BIN), "..", "lib", "pkgconfig",
                                       "nexus.pc")):
        assert "make install PREFIX=" in p.stdout, p.stdout
