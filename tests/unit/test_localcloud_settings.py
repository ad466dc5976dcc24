"""Settings: defaults, overrides, and invalid values that stop with a message naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcloud.settings import PROJECT_ROOT, Settings, SettingsError


def test_defaults_put_state_in_the_repo_and_use_the_usual_ports() -> None:
    cfg = Settings.from_env({})
    assert cfg.state_dir == PROJECT_ROOT / ".localcloud"
    assert cfg.venvs_dir == cfg.state_dir
    assert (cfg.port, cfg.pg_port) == (4566, 15432)
    assert cfg.host == "127.0.0.1"
    assert cfg.region == "us-east-1"
    assert cfg.localstack_url == "http://127.0.0.1:4566"


def test_environment_overrides_state_dir_venvs_dir_and_ports(tmp_path: Path) -> None:
    cfg = Settings.from_env(
        {
            "LOCALCLOUD_STATE_DIR": str(tmp_path / "state"),
            "LOCALCLOUD_VENVS_DIR": str(tmp_path / "venvs"),
            "LOCALCLOUD_PORT": "4600",
            "LOCALCLOUD_PG_PORT": " 15500 ",
        }
    )
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.localstack_python == tmp_path / "venvs" / "localstack-venv" / "bin" / "python"
    assert cfg.runtimes_dir == tmp_path / "venvs" / "runtimes"
    assert cfg.functions_pids_dir == tmp_path / "state" / "run" / "functions"
    assert (cfg.port, cfg.pg_port) == (4600, 15500)


def test_empty_values_mean_the_default() -> None:
    assert Settings.from_env({"LOCALCLOUD_PORT": "", "LOCALCLOUD_STATE_DIR": " "}).port == 4566


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LOCALCLOUD_PORT", "http", "not a port number"),
        ("LOCALCLOUD_PORT", "45.66", "not a port number"),
        ("LOCALCLOUD_PG_PORT", "80", "out of range"),
        ("LOCALCLOUD_PG_PORT", "70000", "out of range"),
        ("LOCALCLOUD_STATE_DIR", "relative/dir", "absolute path"),
    ],
)
def test_an_invalid_value_names_the_variable_and_the_fix(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: value})
    message = str(info.value)
    assert variable in message
    assert expected in message


def test_the_same_port_for_both_servers_is_refused() -> None:
    with pytest.raises(SettingsError, match="LOCALCLOUD_PORT and LOCALCLOUD_PG_PORT"):
        Settings.from_env({"LOCALCLOUD_PORT": "5000", "LOCALCLOUD_PG_PORT": "5000"})


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(SettingsError, match="not a directory"):
        Settings.from_env({"LOCALCLOUD_STATE_DIR": str(afile)})


def test_the_mapping_scale_up_rate_defaults_to_aws_and_reaches_localstack() -> None:
    from localcloud.localstack import localstack_environment

    assert Settings.from_env({}).esm_scale_up_per_minute == 300.0
    faster = Settings.from_env({"LOCALCLOUD_ESM_SCALE_UP_PER_MINUTE": "3000"})
    assert localstack_environment(faster)["LOCALCLOUD_ESM_SCALE_UP_PER_MINUTE"] == "3000"


@pytest.mark.parametrize("raw", ["fast", "0", "-5", "60001"])
def test_a_bad_scale_up_rate_names_the_variable_and_the_range(raw: str) -> None:
    with pytest.raises(
        SettingsError, match=r"LOCALCLOUD_ESM_SCALE_UP_PER_MINUTE=.* from 1 to 60000"
    ):
        Settings.from_env({"LOCALCLOUD_ESM_SCALE_UP_PER_MINUTE": raw})


def test_the_account_concurrency_defaults_to_aws_s_1000_and_reaches_localstack_s_limits() -> None:
    from localcloud.localstack import localstack_environment

    default = localstack_environment(Settings.from_env({}))
    assert default["LAMBDA_LIMITS_CONCURRENT_EXECUTIONS"] == "1000"
    assert default["LAMBDA_LIMITS_MINIMUM_UNRESERVED_CONCURRENCY"] == "100"  # AWS's
    low = localstack_environment(Settings.from_env({"LOCALCLOUD_ACCOUNT_CONCURRENCY": "20"}))
    assert low["LAMBDA_LIMITS_CONCURRENT_EXECUTIONS"] == "20"
    # a function may still reserve most of a low limit, as most of AWS's 1,000 can be reserved
    assert low["LAMBDA_LIMITS_MINIMUM_UNRESERVED_CONCURRENCY"] == "2"


@pytest.mark.parametrize("raw", ["many", "9", "20.5", "100001", "nan", "inf"])
def test_a_bad_account_concurrency_names_the_variable_and_the_range(raw: str) -> None:
    with pytest.raises(
        SettingsError,
        match=r"LOCALCLOUD_ACCOUNT_CONCURRENCY=.* whole number .* from 10 to 100000",
    ):
        Settings.from_env({"LOCALCLOUD_ACCOUNT_CONCURRENCY": raw})


def test_localstack_inherits_room_for_the_descriptors_of_1000_environments() -> None:
    import resource

    from localcloud.localstack import OPEN_FILES_WANTED, raise_open_files_limit

    soft = raise_open_files_limit()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert soft == resource.RLIM_INFINITY or soft >= min(OPEN_FILES_WANTED, hard)
