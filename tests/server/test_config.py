"""Configuration: defaults, then a TOML file, then KEFU_* variables, then command-line values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kefu.server.config import Config, ConfigError, load_config


def write(tmp_path: Path, text: str, name: str = "kefu.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment() -> None:
    config = load_config(environ={})
    assert config == Config()
    assert config.host == "127.0.0.1"
    assert config.port == 8080
    assert config.log_level == "INFO"
    assert config.log_format == "json"
    assert config.database_url == ""
    assert config.embedded_database
    assert config.postgres_dir == Path("kefu-data") / "postgres"


def test_top_level_file_settings(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9000\nhost = "0.0.0.0"\nshutdown_grace = 3\ndata_dir = "/srv/kefu"\n')
    config = load_config(path, environ={})
    assert config.port == 9000
    assert config.host == "0.0.0.0"
    assert config.shutdown_grace == 3.0
    assert isinstance(config.shutdown_grace, float)
    assert config.data_dir == Path("/srv/kefu")


def test_kefu_table_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[kefu]\nport = 9100\nlog_level = "DEBUG"\ndatabase_url = "postgresql://db/kefu"\n')
    config = load_config(path, environ={})
    assert (config.port, config.log_level, config.database_url) == (9100, "DEBUG", "postgresql://db/kefu")
    assert not config.embedded_database


def test_file_named_by_kefu_config_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 9200\n")
    assert load_config(environ={"KEFU_CONFIG": str(path)}).port == 9200


def test_environment_overrides_file_and_cli_overrides_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9000\nhost = "10.0.0.1"\nlog_level = "ERROR"\n')
    env = {"KEFU_PORT": "9001", "KEFU_HOST": "10.0.0.2"}
    config = load_config(path, environ=env)
    assert (config.port, config.host, config.log_level) == (9001, "10.0.0.2", "ERROR")
    config = load_config(path, environ=env, port=9002, host=None)
    assert (config.port, config.host, config.log_level) == (9002, "10.0.0.2", "ERROR")


def test_empty_environment_variable_is_ignored() -> None:
    assert load_config(environ={"KEFU_PORT": ""}).port == 8080


@pytest.mark.parametrize(
    ("text", "env", "setting"),
    [
        ("colour = 'blue'\n", {}, "colour"),
        ("[kefu]\nprot = 1\n", {}, "prot"),
        ("port = 'eighty'\n", {}, "port"),
        ("port = 1.5\n", {}, "port"),
        ("port = true\n", {}, "port"),
        ("log_level = 5\n", {}, "log_level"),
        ("host = ['a', 'b']\n", {}, "host"),
        ("shutdown_grace = 'soon'\n", {}, "shutdown_grace"),
        ("", {"KEFU_SHUTDOWN_GRACE": "nan"}, "shutdown_grace"),
        ("", {"KEFU_PORT": "eighty"}, "port"),
        ("", {"KEFU_DATABASE_POOL_SIZE": "1.5"}, "database_pool_size"),
        ("log_level = 'LOUD'\n", {}, "log_level"),
        ("", {"KEFU_LOG_LEVEL": "verbose"}, "log_level"),
        ("log_format = 'xml'\n", {}, "log_format"),
        ("port = 70000\n", {}, "port"),
        ("", {"KEFU_PORT": "-1"}, "port"),
        ("database_pool_size = 1\n", {}, "database_pool_size"),
        ("shutdown_grace = -1\n", {}, "shutdown_grace"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path: Path, text: str, env: dict[str, str], setting: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"'{setting}'"):
        load_config(path, environ=env)


def test_bad_cli_value_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="'port'"):
        load_config(environ={}, port=123456)


def test_kefu_key_that_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="table"):
        load_config(write(tmp_path, "kefu = 3\n"), environ={})


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "port = = 1\n"), environ={})
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "absent.toml", environ={})


def kefu_command(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kefu.server.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    # Point at an unusable database so a mistaken start fails fast instead of serving.
    env["KEFU_DATA_DIR"] = str(tmp_path / "data")
    env["KEFU_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    return env


def test_cli_missing_config_file_exits_2_without_traceback(tmp_path: Path) -> None:
    result = kefu_command("--config", "missing.toml", "serve", env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "missing.toml" in result.stderr
    assert "cannot read configuration file" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_bad_setting_exits_2_naming_it(tmp_path: Path) -> None:
    write(tmp_path, "port = 1.5\n")
    result = kefu_command("--config", "kefu.toml", "serve", env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "'port'" in result.stderr
    assert "Traceback" not in result.stderr
    env = clean_env(tmp_path) | {"KEFU_LOG_LEVEL": "chatty"}
    result = kefu_command("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "'log_level'" in result.stderr
    assert "Traceback" not in result.stderr


def test_upload_settings_from_file_and_environment(tmp_path: Path) -> None:
    config = load_config(environ={})
    assert config.max_upload_bytes == 20 * 1024 * 1024
    assert config.upload_content_types["image/png"] == "image"
    assert config.upload_content_types["audio/amr"] == "voice"
    assert config.upload_content_types["video/quicktime"] == "video"
    assert config.upload_content_types["application/pdf"] == "file"
    path = write(tmp_path, 'max_upload_bytes = 1024\n[upload_content_types]\n"Image/PNG" = "image"\n')
    config = load_config(path, environ={})
    assert config.max_upload_bytes == 1024
    assert config.upload_content_types == {"image/png": "image"}
    config = load_config(environ={"KEFU_UPLOAD_CONTENT_TYPES": "text/plain=file, audio/ogg=voice"})
    assert config.upload_content_types == {"text/plain": "file", "audio/ogg": "voice"}
    for environ, setting in [
        ({"KEFU_MAX_UPLOAD_BYTES": "0"}, "max_upload_bytes"),
        ({"KEFU_UPLOAD_CONTENT_TYPES": "text/plain"}, "upload_content_types"),
        ({"KEFU_UPLOAD_CONTENT_TYPES": "text/plain=document"}, "upload_content_types"),
        ({"KEFU_UPLOAD_CONTENT_TYPES": "not a type=file"}, "upload_content_types"),
    ]:
        with pytest.raises(ConfigError, match=setting):
            load_config(environ=environ)
