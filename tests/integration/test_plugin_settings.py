"""A plugin's own settings: plugins.<name>.<key> in the file, NEXUS_PLUGINS_<NAME>_<KEY>."""
import subprocess

from conftest import NEXUS_BIN, PLUGINS_DIR, free_port


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
    assert out.returncode != 0
    assert f"{cfg}:3" in out.stderr
    assert "plugins.testkit.limt" in out.stderr
    assert "greeting, limit" in out.stderr


def test_wrong_type_from_variable_stops_startup(tmp_path):
    out = start_failing(tmp_path, env={"NEXUS_PLUGINS_TESTKIT_LIMIT": "many"})
    assert out.returncode != 0
    assert "NEXUS_PLUGINS_TESTKIT_LIMIT" in out.stderr
    assert "plugins.testkit.limit" in out.stderr and "expected an integer" in out.stderr


def test_setting_for_a_plugin_not_loaded_is_a_warning(spawn, tmp_path):
    cfg = tmp_path / "nexus.yaml"
    cfg.write_text("plugins:\n  absent:\n    x: 1\n")
    s = spawn(workers=1, args=["--config", str(cfg)])
    assert s.get("/health").status_code == 200
    assert "plugins.absent.x is not a setting of any loaded plugin" in s.log()
