import os
from pathlib import Path

import pytest

from appliance.settings import Settings, SettingsError, load_settings, settings_table


def test_defaults_without_environment() -> None:
    s = load_settings(env={})
    assert s.port == 8000
    assert s.host == "127.0.0.1"
    assert s.resolved_public_url == "http://127.0.0.1:8000"
    assert not s.cookies_secure
    assert not s.uses_postgres


def test_environment_variables_are_read_and_typed() -> None:
    s = load_settings(
        env={"ESTRADE_PORT": "9001", "ESTRADE_DEMO": "yes", "ESTRADE_DATA_DIR": "/tmp/x"}
    )
    assert s.port == 9001
    assert s.demo is True
    assert s.data_dir == Path("/tmp/x")


def test_toml_file_then_environment_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "estrade.toml"
    cfg.write_text('port = 8100\npublic_url = "https://classe.example.org"\n')
    s = load_settings(env={"ESTRADE_CONFIG": str(cfg)})
    assert s.port == 8100
    assert s.cookies_secure  # https public URL -> Secure cookies
    s2 = load_settings(env={"ESTRADE_CONFIG": str(cfg), "ESTRADE_PORT": "8200"})
    assert s2.port == 8200


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ESTRADE_PORT": "eighty"}, "'port': 'eighty'"),
        ({"ESTRADE_PORT": "70000"}, "'port': 70000"),
        ({"ESTRADE_DEMO": "maybe"}, "'demo': 'maybe'"),
        ({"ESTRADE_DATABASE_URL": "mysql://x"}, "'database_url': 'mysql://x'"),
        ({"ESTRADE_LOG_LEVEL": "loud"}, "'log_level': 'loud'"),
        ({"ESTRADE_SESSION_STORE": "disk"}, "'session_store': 'disk'"),
        ({"ESTRADE_NOPE": "1"}, "'ESTRADE_NOPE'"),
        ({"ESTRADE_SECRET_KEY": "short"}, "'secret_key'"),
        (
            {"ESTRADE_METRICS_ALLOW_CIDRS": "127.0.0.1/32,localhost"},
            "'metrics_allow_cidrs': 'localhost'",
        ),
        ({"ESTRADE_METRICS_TOKEN": "short"}, "'metrics_token'"),
        ({"ESTRADE_CAPACITY_CPU_TARGET": "1.5"}, "'capacity_cpu_target': 1.5"),
        ({"ESTRADE_CAPACITY_VIDEO_TRACK_CPU": "-1"}, "'capacity_video_track_cpu': -1.0"),
        ({"ESTRADE_CAPACITY_LEARNER_CPU": "lots"}, "'capacity_learner_cpu': 'lots'"),
    ],
)
def test_bad_values_name_the_key_and_value(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env=env)
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ESTRADE_REDIS_URL": "redis://:hunter2@db:6379/0"},
            "setting 'redis_url': 'redis://:***@db:6379/0' means several app hosts, which need"
            " PostgreSQL: set database_url (postgresql://)",
        ),
        (
            {"ESTRADE_REDIS_URL": "redis://db", "ESTRADE_DATABASE_URL": "sqlite:///x.db"},
            "need PostgreSQL",
        ),
        (
            {
                "ESTRADE_REDIS_URL": "redis://db",
                "ESTRADE_DATABASE_URL": "postgresql://e@db/e",
                "ESTRADE_SESSION_STORE": "memory",
            },
            "setting 'session_store': 'memory' is per process",
        ),
        ({"ESTRADE_REDIS_URL": "db:6379"}, "'redis_url': 'db:6379' must start with redis://"),
    ],
)
def test_several_hosts_need_postgresql_and_shared_sessions(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env=env)
    assert message in str(err.value)
    assert "hunter2" not in str(err.value)


def test_several_hosts_on_postgresql_are_accepted() -> None:
    env = {"ESTRADE_REDIS_URL": "redis://db:6379/0", "ESTRADE_DATABASE_URL": "postgresql://e@db/e"}
    s = load_settings(env=env)
    assert s.redis_url == "redis://db:6379/0"
    assert load_settings(env={}).redis_url == ""


def test_unknown_key_in_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="unknown key 'prot'"):
        load_settings(env={"ESTRADE_CONFIG": str(cfg)})


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(env={"ESTRADE_CONFIG": str(tmp_path / "nope.toml")})


def test_every_setting_is_documented_in_readme() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for var, _default, doc in settings_table():
        assert doc, f"{var} has no docstring"
        assert var in readme, f"{var} is missing from README.md"


def test_settings_are_immutable() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_admin_password_variable_is_not_an_unknown_setting() -> None:
    # `estrade create-admin --password-from-env` reads it; the settings must not refuse it.
    s = load_settings(
        env={"ESTRADE_ADMIN_PASSWORD": "correct-horse-battery", "ESTRADE_PORT": "8201"}
    )
    assert s.port == 8201


def test_tooling_variables_exported_by_the_makefile_are_not_settings() -> None:
    """`make test` exports these to every process it starts, servers included."""
    import re

    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    exported = set(re.findall(r"^export (ESTRADE_\w+)", makefile, flags=re.M))
    env = {name: "x" for name in exported if name != "ESTRADE_DATA_DIR"}
    load_settings(env=env)  # no "unknown variable"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ESTRADE_PORT": " 9001 "}, ("port", 9001)),
        ({"ESTRADE_DEMO": "On"}, ("demo", True)),
        ({"ESTRADE_DEMO": "off"}, ("demo", False)),
        ({"ESTRADE_SECURE_COOKIES": "auto"}, ("secure_cookies", None)),
        ({"ESTRADE_SECURE_COOKIES": ""}, ("secure_cookies", None)),
        ({"ESTRADE_SECURE_COOKIES": "no"}, ("secure_cookies", False)),
        ({"ESTRADE_WS_IDLE_TIMEOUT_S": "2"}, ("ws_idle_timeout_s", 2.0)),
        (
            {"ESTRADE_SESSION_STORE": "rediss://cache:6380"},
            ("session_store", "rediss://cache:6380"),
        ),
    ],
)
def test_environment_spellings_are_read(env: dict[str, str], expected: tuple[str, object]) -> None:
    key, value = expected
    got = getattr(load_settings(env=env), key)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("host = 5\n", "setting 'host': 5 is not a string"),
        ("port = true\n", "setting 'port': True is not an integer"),
        ('data_dir = ""\n', "setting 'data_dir': '' is not a path"),
        ('session_store = "filex"\n', "setting 'session_store': 'filex' must be file, memory"),
        ("chat_history = 0\n", "setting 'chat_history': 0 must be positive"),
        ('media_send_path = "fast"\n', "setting 'media_send_path': 'fast' is not one of"),
        ("media_workers = -1\n", "setting 'media_workers': -1 must be 0 or more"),
        (
            "media_port_min = 40000\nmedia_port_max = 40001\nmedia_workers = 3\n",
            "setting 'media_workers': 3 is more than the 2 ports",
        ),
        ('turn_secret = "s"\nturn_url = "http://t"\n', "'turn_url': 'http://t' must start with"),
        ('secret_key = "hunter2"\n', "setting 'secret_key': '***' is too short"),
    ],
)
def test_toml_values_are_checked_by_type(tmp_path: Path, toml: str, message: str) -> None:
    cfg = tmp_path / "estrade.toml"
    cfg.write_text(toml)
    with pytest.raises(SettingsError) as err:
        load_settings(env={"ESTRADE_CONFIG": str(cfg)})
    assert message in str(err.value)
    assert "hunter2" not in str(err.value)  # a secret is never echoed


def test_media_workers_default_to_the_cores_this_process_may_use(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    assert load_settings(env={}).media_worker_count == max(1, cores)
    assert load_settings(env={"ESTRADE_MEDIA_WORKERS": "auto"}).media_workers is None
    assert load_settings(env={"ESTRADE_MEDIA_WORKERS": ""}).media_worker_count == cores
    assert load_settings(env={"ESTRADE_MEDIA_WORKERS": "0"}).media_worker_count == 0  # in process
    assert load_settings(env={"ESTRADE_MEDIA_WORKERS": "3"}).media_worker_count == 3
    cfg = tmp_path / "estrade.toml"
    cfg.write_text('media_workers = "auto"\nmedia_port_min = 40000\nmedia_port_max = 40000\n')
    one_port = load_settings(env={"ESTRADE_CONFIG": str(cfg)})
    assert one_port.media_worker_count == 1  # never more workers than ports
    with pytest.raises(SettingsError, match="'media_workers': 'many' is not an integer"):
        load_settings(env={"ESTRADE_MEDIA_WORKERS": "many"})
