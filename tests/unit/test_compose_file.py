"""docker-compose.localstack.yml, with no Docker engine: valid by the Compose specification's
JSON schema (vendored by check-jsonschema), and, once interpolated with the environment
localcloud.compose passes, the services, ports, health checks and volumes the scripts and
localcloud.settings expect."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from localcloud import compose, container
from localcloud.settings import (
    COMPOSE_FILE,
    DEFAULT_PG_PORT,
    DEFAULT_PORT,
    DEFAULT_PROXY_PORT,
    LOCALSTACK_REQUIREMENT,
    PG_MAX_CONNECTIONS,
    Settings,
)
from localcloud_ext import contract

VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[?-])(?P<arg>[^}]*))?\}")


def compose_spec_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's ${NAME}, ${NAME:?message} and ${NAME:-default} (those this file uses)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op = match["name"], match["op"]
        if env.get(name):
            return env[name]
        if op == ":-":
            return match["arg"]
        raise KeyError(f"${{{name}}} is required and not set ({match['arg']})")

    return VARIABLE.sub(substitute, value)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def project(raw: Mapping[str, Any], cfg: Settings) -> dict[str, Any]:
    env = compose.compose_environment(cfg, "monitor-password", "superuser-password")
    document: dict[str, Any] = interpolate(raw, env)
    return document


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings.from_env({"LOCALCLOUD_STATE_DIR": str(tmp_path_factory.mktemp("state"))})


def test_the_file_is_valid_by_the_compose_specification(raw: dict[str, Any], cfg: Settings) -> None:
    schema = compose_spec_schema()
    assert "compose" in schema["title"].lower()
    validator = jsonschema.Draft202012Validator(schema)
    for document in (raw, project(raw, cfg)):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_a_misspelt_key_is_caught_by_the_schema(raw: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(raw))
    broken["services"]["postgres"]["healthchek"] = broken["services"]["postgres"]["healthcheck"]
    assert list(jsonschema.Draft202012Validator(compose_spec_schema()).iter_errors(broken))


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def test_every_variable_the_file_reads_is_one_the_driver_passes(raw: dict[str, Any]) -> None:
    read = {m["name"] for text in strings(raw) for m in VARIABLE.finditer(text)}
    passed = set(compose.compose_environment(Settings.from_env({}), "m", "s"))
    assert read == passed


def test_the_three_services_the_driver_names(raw: dict[str, Any]) -> None:
    assert set(raw["services"]) == {
        compose.SERVICES.localstack,
        compose.SERVICES.postgres,
        compose.SERVICES.database_proxy,
    }


def test_the_embedded_defaults_ports_published_on_127_0_0_1_only(
    raw: dict[str, Any], cfg: Settings
) -> None:
    services = project(raw, cfg)["services"]
    assert (
        (cfg.port, cfg.pg_port, cfg.proxy_port)
        == (
            DEFAULT_PORT,
            DEFAULT_PG_PORT,
            DEFAULT_PROXY_PORT,
        )
        == (4566, 15432, 16432)
    )
    # all on the service that holds the network namespace; the others join it
    assert services["postgres"]["ports"] == [
        f"127.0.0.1:{port}:{port}" for port in (4566, 15432, 16432)
    ]
    for name in ("localstack", "pgbouncer"):
        assert "ports" not in services[name]
        assert services[name]["network_mode"] == "service:postgres"


def test_other_ports_follow_the_settings_inside_and_out(
    raw: dict[str, Any], tmp_path: Path
) -> None:
    cfg = Settings.from_env(
        {
            "LOCALCLOUD_STATE_DIR": str(tmp_path),
            "LOCALCLOUD_PORT": "4600",
            "LOCALCLOUD_PG_PORT": "25432",
            "LOCALCLOUD_PROXY_PORT": "26432",
        }
    )
    services = project(raw, cfg)["services"]
    assert services["postgres"]["ports"] == [
        "127.0.0.1:4600:4600",
        "127.0.0.1:25432:25432",
        "127.0.0.1:26432:26432",
    ]
    # each server listens on the port the host (and so the functions) use
    assert services["postgres"]["environment"]["PGPORT"] == "25432"
    for name in ("localstack", "pgbouncer"):
        env = services[name]["environment"]
        in_container = Settings.from_env({k: str(v) for k, v in env.items()})
        assert in_container.pg_port == 25432 and in_container.proxy_port == 26432
    assert Settings.from_env(services["localstack"]["environment"]).port == 4600


def test_the_extensions_settings_reach_localstack(raw: dict[str, Any], tmp_path: Path) -> None:
    cfg = Settings.from_env(
        {
            "LOCALCLOUD_STATE_DIR": str(tmp_path),
            contract.ESM_SCALE_UP_PER_MINUTE.variable: "600",
            contract.ACCOUNT_CONCURRENCY.variable: "400",
        }
    )
    env = project(raw, cfg)["services"]["localstack"]["environment"]
    seen = Settings.from_env(env)
    assert (seen.esm_scale_up_per_minute, seen.account_concurrency) == (600, 400)
    assert env["LOCALCLOUD_MONITOR_PASSWORD"] == "monitor-password"


def test_postgresql_is_configured_as_the_host_configures_it(
    raw: dict[str, Any], cfg: Settings
) -> None:
    postgres = project(raw, cfg)["services"]["postgres"]
    command = postgres["command"]
    options = dict(command[k + 1].split("=", 1) for k, w in enumerate(command) if w == "-c")
    assert options["max_connections"] == str(PG_MAX_CONNECTIONS)
    assert options["password_encryption"] == "scram-sha-256"
    configs = {c["target"]: c["source"] for c in postgres["configs"]}
    files = {name: Path(c["file"]) for name, c in project(raw, cfg)["configs"].items()}
    assert {files[configs[options["hba_file"]]], files[configs[options["ident_file"]]]} == set(
        compose.access_rules(cfg)
    )
    assert files[configs[options["hba_file"]]].name == compose.HBA_FILE
    assert "--auth-local=peer" in postgres["environment"]["POSTGRES_INITDB_ARGS"]


def test_health_checks_on_each_service_name_their_own_server(
    raw: dict[str, Any], cfg: Settings
) -> None:
    services = project(raw, cfg)["services"]
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][0] == "CMD", name
        assert int(check["retries"]) > 0
    assert services["postgres"]["healthcheck"]["test"][1:] == [
        "pg_isready",
        "-q",
        "-h",
        "127.0.0.1",
    ]
    for name in ("localstack", "pgbouncer"):
        test = services[name]["healthcheck"]["test"]
        assert test[1:] == ["python3.13", "-m", "localcloud.container", "health", name]
        parsed = container.parser().parse_args(test[4:])
        assert (parsed.command, parsed.server) == ("health", name)
        assert services[name]["command"] == [name]  # the same entry point serves it


def test_postgresqls_data_in_a_named_volume_and_its_socket_shared_with_the_proxy(
    raw: dict[str, Any],
) -> None:
    assert set(raw["volumes"]) == {"pg-data", "pg-socket"}
    postgres = raw["services"]["postgres"]["volumes"]
    assert "pg-data:/var/lib/postgresql/data" in postgres
    socket = f"pg-socket:{container.PG_SOCKET_DIR}"
    assert socket in postgres
    assert raw["services"]["pgbouncer"]["volumes"] == [socket]
    assert "volumes" not in raw["services"]["localstack"]  # PERSISTENCE=0: nothing to keep


def test_one_image_built_from_the_dockerfile_serves_localstack_and_the_proxy(
    raw: dict[str, Any],
) -> None:
    localstack, proxy = raw["services"]["localstack"], raw["services"]["pgbouncer"]
    assert localstack["image"] == proxy["image"]
    assert (
        localstack["build"]
        == proxy["build"]
        == {
            "context": ".",
            "dockerfile": "infra/localcloud/Dockerfile",
        }
    )
    assert raw["services"]["postgres"]["image"].startswith("postgres:16")
    # the image's tag names the LocalStack it holds (a new pin: a new tag, not a stale image)
    assert localstack["image"].endswith(LOCALSTACK_REQUIREMENT.split("==")[1])


def test_the_file_says_what_the_official_image_would_need() -> None:
    text = COMPOSE_FILE.read_text()
    assert "LOCALSTACK_AUTH_TOKEN" in text and "/var/run/docker.sock" in text
    assert "LOCALSTACK_AUTH_TOKEN" not in yaml.safe_load(text)["services"]["localstack"].get(
        "environment", {}
    )
