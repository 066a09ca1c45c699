"""The plugin loader: dependency order, plugins.enabled, failures, strict and non-strict."""
import os
import re
import shutil
import subprocess

from conftest import EX_CONFIG, NEXUS_BIN, NEXUS_BUILD, free_port

CASES = os.path.join(NEXUS_BUILD, "plugin-cases")
HELLO = os.path.join(NEXUS_BUILD, "plugins", "hello.so")


def folder(tmp_path, *names, hello=False):
    d = tmp_path / "plugins"
    d.mkdir(exist_ok=True)
    for n in names:
        shutil.copy(os.path.join(CASES, f"{n}.so"), d / f"{n}.so")
    if hello:
        shutil.copy(HELLO, d / "hello.so")
    return str(d)


def clean_env(extra=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    e.update(extra or {})
    return e


EX_FAILED = 1   # a plugin that cannot load or init: its code, not the configuration


def refused(tmp_path, plugins_dir, status, env=None):
    """Starts a server that must refuse to start with exit status; returns its stderr."""
    out = subprocess.run(
        [NEXUS_BIN, "serve", "--port", str(free_port()), "--workers", "1", "--access-log", "off",
         "--plugins-dir", plugins_dir],
        capture_output=True, text=True, timeout=10, env=clean_env(env), cwd=str(tmp_path))
    assert out.returncode == status, (out.returncode, out.stderr)
    return out.stderr


def loaded_order(log):
    return re.findall(r'plugin (\w+) [\d.]+ loaded from', log)


def test_dependencies_are_inited_first(spawn, tmp_path):
    # alpha sorts before beta by name, but depends on it
    s = spawn(workers=1, args=["--plugins-dir", folder(tmp_path, "alpha", "beta")])
    assert loaded_order(s.log()) == ["beta", "alpha"]
    assert s.get("/case/alpha").text == "alpha"
    assert s.get("/case/beta").text == "beta"


def test_missing_dependency_stops_startup(tmp_path):
    err = refused(tmp_path, folder(tmp_path, "gamma", "beta"), EX_CONFIG)
    assert "gamma" in err and "'missing'" in err and "gamma.so" in err


def test_cycle_is_refused_even_when_not_strict(tmp_path):
    err = refused(tmp_path, folder(tmp_path, "cyc1", "cyc2"), EX_CONFIG,
                  env={"NEXUS_PLUGINS_STRICT": "false"})
    assert "cycle" in err and "cyc1" in err and "cyc2" in err


def test_wrong_abi_is_refused_before_init(tmp_path):
    err = refused(tmp_path, folder(tmp_path, "oldabi"), EX_FAILED)
    assert "oldabi.so" in err and "built for plugin ABI" in err


def test_object_without_descriptor_is_refused(tmp_path):
    err = refused(tmp_path, folder(tmp_path, "nodesc"), EX_FAILED)
    assert "nodesc.so" in err and "nexus_plugin" in err


def test_init_failure_is_refused(tmp_path):
    err = refused(tmp_path, folder(tmp_path, "badinit"), EX_FAILED)
    assert "badinit" in err and "init failed" in err


def test_route_clash_names_both_plugins(tmp_path):
    err = refused(tmp_path, folder(tmp_path, "clash", hello=True), EX_FAILED)
    assert "GET /plaintext" in err and "hello" in err and "clash" in err


def test_not_strict_leaves_failures_out_and_keeps_serving(spawn, tmp_path):
    d = folder(tmp_path, "badinit", "dependent", "gamma", "oldabi", "beta")
    s = spawn(workers=1, args=["--plugins-dir", d], env={"NEXUS_PLUGINS_STRICT": "false"})
    assert loaded_order(s.log()) == ["beta"]
    assert s.get("/case/beta").status_code == 200
    # the failed plugin's route and readiness check went with it
    assert s.get("/case/badinit").status_code == 404
    assert s.get("/ready").status_code == 200
    for name in ("badinit", "dependent", "gamma", "oldabi"):
        assert name in s.log()
    assert "continuing without it" in s.log()


def test_enabled_loads_only_the_named(spawn, tmp_path):
    d = folder(tmp_path, "beta", "clash", hello=True)
    s = spawn(workers=1, args=["--plugins-dir", d], env={"NEXUS_PLUGINS_ENABLED": "beta,hello"})
    assert sorted(loaded_order(s.log())) == ["beta", "hello"]
    assert s.get("/plaintext").text == "Hello, World!"   # no clash: clash.so was not loaded


def test_enabled_naming_an_absent_plugin_is_refused(tmp_path):
    err = refused(tmp_path, folder(tmp_path, "beta"), EX_CONFIG,
                  env={"NEXUS_PLUGINS_ENABLED": "beta, nope"})
    assert "plugins.enabled" in err and "'nope'" in err


def test_enabled_dependency_left_out_is_refused(tmp_path):
    # alpha is enabled but its dependency is not: alpha cannot load
    d = folder(tmp_path, "alpha", "beta", hello=True)
    err = refused(tmp_path, d, EX_CONFIG, env={"NEXUS_PLUGINS_ENABLED": "alpha,hello"})
    assert "alpha" in err and "'beta'" in err


def test_enabled_dependency_left_out_not_strict_skips_the_dependent(spawn, tmp_path):
    d = folder(tmp_path, "alpha", "beta", hello=True)
    s = spawn(workers=1, args=["--plugins-dir", d],
              env={"NEXUS_PLUGINS_ENABLED": "alpha,hello", "NEXUS_PLUGINS_STRICT": "false"})
    assert loaded_order(s.log()) == ["hello"]
    assert s.get("/case/alpha").status_code == 404
    assert s.get("/json").status_code == 200


def command(tmp_path, *args, env=None):
    return subprocess.run([NEXUS_BIN, *args], capture_output=True, text=True, timeout=10,
                          env=clean_env(env), cwd=str(tmp_path))


def test_plugins_command_lists_state_routes_and_file(tmp_path):
    d = folder(tmp_path, "alpha", "beta", "badinit")
    out = command(tmp_path, "plugins", "--plugins-dir", d, env={"NEXUS_PLUGINS_STRICT": "false"})
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]
            if line and not line.startswith(" ")}
    assert rows["alpha"][1:4] == ["1.0.0", "loaded", "1"]
    assert rows["alpha"][4] == os.path.join(d, "alpha.so")
    assert rows["badinit"][2] == "skipped" and rows["badinit"][3] == "0"
    assert "init failed" in out.stdout
    # init order: beta before alpha
    names = [line.split()[0] for line in out.stdout.splitlines()[1:] if line[:1].strip()]
    assert names.index("beta") < names.index("alpha")


def test_routes_command_lists_every_route_with_its_plugin(tmp_path):
    d = folder(tmp_path, "beta", hello=True)
    out = command(tmp_path, "routes", "--plugins-dir", d)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert ["GET", "/health", "-", "nexus"] in rows
    assert ["GET", "/plaintext", "-", "hello"] in rows
    assert ["GET", "/case/beta", "-", "beta"] in rows


def test_routes_command_fails_like_the_server(tmp_path):
    out = command(tmp_path, "routes", "--plugins-dir", folder(tmp_path, "gamma"))
    assert out.returncode == EX_CONFIG and "'missing'" in out.stderr


def test_middleware_order_and_onion(spawn, tmp_path):
    s = spawn(workers=1, args=["--plugins-dir", folder(tmp_path, "mw", hello=True)])
    r = s.get("/plaintext")
    assert r.status_code == 200 and r.text == "Hello, World!"
    # priority first (gate 5, outer 10, outer2 10, inner 20), registration order within one
    assert r.headers["X-Before"] == "gate, outer, outer2, inner"
    assert r.headers["X-After"] == "inner, outer2, outer, gate"
    # a 404 passes through the middleware too
    assert s.get("/nope").headers["X-Before"] == "gate, outer, outer2, inner"


def test_middleware_can_answer_by_itself(spawn, tmp_path):
    s = spawn(workers=1, args=["--plugins-dir", folder(tmp_path, "mw", hello=True)])
    r = s.get("/plaintext", headers={"X-Block": "1"})
    assert r.status_code == 403
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.headers["X-Before"] == "gate"       # the others never ran
    assert r.headers["X-After"] == "gate"        # and only what ran is unwound


def test_probes_bypass_middleware(spawn, tmp_path):
    s = spawn(workers=1, args=["--plugins-dir", folder(tmp_path, "mw")])
    for path in ("/health", "/ready"):
        r = s.get(path, headers={"X-Block": "1"})
        assert r.status_code == 200 and "X-Before" not in r.headers


def test_worker_hooks_run_in_every_worker(spawn, tmp_path):
    record = tmp_path / "record"
    s = spawn(workers=2, args=["--plugins-dir", folder(tmp_path, "hooks", hello=True)],
              env={"NEXUS_PLUGINS_HOOKS_FILE": str(record)})
    pids = set(s.worker_pids())
    assert len(pids) == 2
    starts = {int(line.split()[1]) for line in record.read_text().splitlines()
              if line.startswith("start")}
    assert starts == pids
    s.stop()
    stops = {int(line.split()[1]) for line in record.read_text().splitlines()
             if line.startswith("stop")}
    assert stops == pids
