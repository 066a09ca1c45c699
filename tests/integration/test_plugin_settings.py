"""A plugin's own settings: plugins.<name>.<key> in the file, NEXUS_PLUGINS_<NAME>_<KEY>."""
import subprocess

from conftest import EX_CONFIG, NEXUS_BIN, PLUGINS_DIR, free_port


def test_defaults_file_env_and_secret_file(spawn, tmp_path):
    cfg = tmp_path / "nexus.yaml"
    cfg.write_text("plugins:\n  testkit:\n    greeting: from file\n    limit: 42\n"
                   "    delay: 2s\n")
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    s = spawn(workers=1, args=["--config", str(cfg)],
              env={"NEXUS_PLUGINS_TESTKIT_LIMIT": "7", "NEXUS_PLUGINS_TESTKIT_VERBOSE": "yes",
                   "NEXUS_PLUGINS_TESTKIT_TOKEN_FILE": str(token)})
    got = s.get("/test/settings").json()
    assert got.pop("pid") in [int(p) for p in s.worker_pids()]
    assert got == {"greeting": "from file",     # file
                   "limit": 7,                  # the variable wins over the file
                   "verbose": True,             # variable
                   "delay_ms": 2000,            # file, typed
                   "buffer": 4096,              # default "4k"
                   "token_length": len("s3cret-token")}  # _FILE, newline stripped


def start_failing(tmp_path, args=(), env=None):
    import os
    e = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    e.update(env or {})
    return subprocess.run(
        [NEXUS_BIN, "serve", "--port", str(free_port()), "--workers", "1",
         "--plugins-dir", PLUGINS_DIR, "--access-log", "off", *args],
        capture_output=True, text=True, timeout=10, env=e, cwd=str(tmp_path))


def test_undeclared_key_stops_startup_naming_file_line_and_choices(tmp_path):
    cfg = tmp_path / "nexus.yaml"
    cfg.write_text("plugins:\n  testkit:\n    limt: 4\n")
    out = start_failing(tmp_path, ["--config", str(cfg)])
    assert out.returncode == EX_CONFIG, out.stderr
    assert f"{cfg}:3" in out.stderr
    assert "plugins.testkit.limt" in out.stderr
    assert "greeting, limit" in out.stderr


def test_wrong_type_from_variable_stops_startup(tmp_path):
    out = start_failing(tmp_path, env={"NEXUS_PLUGINS_TESTKIT_LIMIT": "many"})
    assert out.returncode == EX_CONFIG, out.stderr
    assert "NEXUS_PLUGINS_TESTKIT_LIMIT" in out.stderr
    assert "plugins.testkit.limit" in out.stderr and "expected an integer" in out.stderr


def test_setting_for_a_plugin_not_loaded_is_a_warning(spawn, tmp_path):
    cfg = tmp_path / "nexus.yaml"
    cfg.write_text("plugins:\n  absent:\n    x: 1\n")
    s = spawn(workers=1, args=["--config", str(cfg)])
    assert s.get("/health").status_code == 200
    assert "plugins.absent.x is not a setting of any loaded plugin" in s.log()


# ---- nexus config check | show: the plugins' settings beside the core keys -----------------


def config_cmd(tmp_path, *args, env=None):
    import os
    e = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    e.update(env or {})
    return subprocess.run([NEXUS_BIN, "config", *args], capture_output=True, text=True,
                          timeout=10, env=e, cwd=str(tmp_path))


def test_config_check_checks_plugin_settings_like_serve(tmp_path):
    good = config_cmd(tmp_path, "check", "--plugins-dir", PLUGINS_DIR,
                      env={"NEXUS_PLUGINS_TESTKIT_LIMIT": "7"})
    assert good.returncode == 0, good.stderr
    assert "plugins checked:" in good.stdout and "testkit" in good.stdout
    assert "loaded from" not in good.stderr  # the server's log lines stay out of the answer
    bad = config_cmd(tmp_path, "check", "--plugins-dir", PLUGINS_DIR,
                     env={"NEXUS_PLUGINS_TESTKIT_LIMIT": "many"})
    assert bad.returncode == EX_CONFIG, bad.stderr
    assert "NEXUS_PLUGINS_TESTKIT_LIMIT" in bad.stderr and "expected an integer" in bad.stderr
    assert "configuration is valid" not in bad.stdout
    served = start_failing(tmp_path, env={"NEXUS_PLUGINS_TESTKIT_LIMIT": "many"})
    assert served.returncode == bad.returncode  # the check answers what serve would do


def test_config_check_refuses_an_undeclared_plugin_key(tmp_path):
    cfg = tmp_path / "nexus.yaml"
    cfg.write_text("plugins:\n  testkit:\n    limt: 4\n")
    out = config_cmd(tmp_path, "check", "--config", str(cfg), "--plugins-dir", PLUGINS_DIR)
    assert out.returncode == EX_CONFIG, out.stderr
    assert f"{cfg}:3" in out.stderr and "plugins.testkit.limt" in out.stderr


def test_config_show_lists_plugin_settings_with_sources_and_redacts_secrets(tmp_path):
    import yaml
    cfg = tmp_path / "nexus.yaml"
    cfg.write_text("plugins:\n  testkit:\n    greeting: from file\n")
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    out = config_cmd(tmp_path, "show", "--config", str(cfg), "--plugins-dir", PLUGINS_DIR,
                     env={"NEXUS_PLUGINS_TESTKIT_LIMIT": "7",
                          "NEXUS_PLUGINS_TESTKIT_TOKEN_FILE": str(token)})
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)["plugins"]["testkit"]
    assert shown == {"greeting": "from file", "limit": "7", "verbose": "false",
                     "delay": "250ms", "buffer": "4k", "token": "(redacted)",
                     "fail_worker_start": "false"}
    assert "s3cret" not in out.stdout
    lines = {line.split(":")[0].strip(): line for line in out.stdout.splitlines()}
    assert lines["greeting"].endswith(f"# {cfg}:3")
    assert lines["limit"].endswith("# environment NEXUS_PLUGINS_TESTKIT_LIMIT")
    assert lines["verbose"].endswith("# default")


def test_config_check_without_the_plugins_folder_checks_the_core_and_says_so(tmp_path):
    missing = tmp_path / "app" / "plugins"
    out = config_cmd(tmp_path, "check", "--plugins-dir", str(missing),
                     env={"NEXUS_PLUGINS_TESTKIT_LIMIT": "many"})
    assert out.returncode == 0, out.stderr
    assert "configuration is valid" in out.stdout and "plugins checked" not in out.stdout
    assert f"the plugins folder {missing} is not on this machine" in out.stderr
    core = config_cmd(tmp_path, "check", "--plugins-dir", str(missing),
                      env={"NEXUS_APP_PORT": "abc"})
    assert core.returncode == EX_CONFIG and "app.port" in core.stderr


def test_config_show_names_the_installation_plugins_folder(tmp_path):
    import os
    import yaml
    from conftest import NEXUS_BUILD
    out = config_cmd(tmp_path, "show")
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)["plugins"]
    assert os.path.realpath(shown["dir"]) == os.path.realpath(os.path.join(NEXUS_BUILD, "plugins"))
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("dir:") and
                "plugins" in x)
    assert line.endswith("# default (this installation's plugins)"), line
    assert "todo" in shown  # the bundled plugins of that folder were loaded and listed
