"""The local cloud's image (infra/localcloud/Dockerfile), read without building anything: its
base images, its pins (those of infra/localstack-constraints.txt, the file itself) and the
layout localcloud.settings expects inside it."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from localcloud import install, settings
from localcloud.settings import Settings

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)$")


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(settings.DOCKERFILE), env_replace=False)


def instructions(dockerfile: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in dockerfile.structure if i["instruction"] == name]


def pip_installs(dockerfile: DockerfileParser) -> list[list[str]]:
    """Each `pip install` of a RUN, as its words up to the end of that command."""
    found = []
    for run in instructions(dockerfile, "RUN"):
        words = shlex.split(run.replace(";", " ; "), posix=True)
        for at, word in enumerate(words):
            if word.endswith("/pip") and words[at + 1 : at + 2] == ["install"]:
                end = next(
                    (k for k in range(at + 2, len(words)) if words[k] in ("&&", ";", "||")),
                    len(words),
                )
                found.append(words[at + 2 : end])
    return found


def constraints() -> dict[str, str]:
    pins = {}
    for line in settings.LOCALSTACK_CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = PIN.match(line)
            assert match, f"not an exact pin: {line!r}"
            pins[match[1].lower().replace("_", "-")] = match[3]
    return pins


def copied_to(dockerfile: DockerfileParser, source: Path) -> str:
    """Where the image keeps a file of the project (its COPY destination)."""
    relative = str(source.relative_to(settings.PROJECT_ROOT))
    for copy in instructions(dockerfile, "COPY"):
        words = copy.split()
        if words[0] == relative:
            return words[-1]
    raise AssertionError(f"the Dockerfile does not copy {relative}")


def test_localstack_runs_on_the_python_its_venv_needs_pinned_by_tag(
    dockerfile: DockerfileParser,
) -> None:
    image, _, tag = dockerfile.baseimage.partition(":")
    assert image == "python"
    assert tag.startswith(f"3.{settings.LOCALSTACK_PYTHON_MINOR}-"), tag
    assert tag.endswith("-bookworm")  # Debian's pgbouncer 1.18, as scripts/setup installs


def test_the_apps_lambda_runtime_python_comes_from_an_image_of_the_same_debian(
    dockerfile: DockerfileParser,
) -> None:
    assert dockerfile.parent_images[0] == f"python:3.{install.TOOLS_PYTHON_MINOR}-slim-bookworm"
    assert all(":" in image and not image.endswith(":latest") for image in dockerfile.parent_images)


def test_localstack_core_is_the_settings_requirement(dockerfile: DockerfileParser) -> None:
    assert dockerfile.args["LOCALSTACK_REQUIREMENT"] == settings.LOCALSTACK_REQUIREMENT


def test_every_pip_install_is_pinned_by_the_projects_own_files(
    dockerfile: DockerfileParser,
) -> None:
    constraints_in_image = copied_to(dockerfile, settings.LOCALSTACK_CONSTRAINTS)
    runtime_requirements = copied_to(dockerfile, settings.LAMBDA_RUNTIME_REQUIREMENTS)
    installs = pip_installs(dockerfile)
    assert len(installs) == 3  # LocalStack, the runtimes, the extension
    for words in installs:
        pinned_by = {words[k + 1] for k, w in enumerate(words[:-1]) if w in ("-c", "-r")}
        assert pinned_by in ({constraints_in_image}, {runtime_requirements}), words
        assert "--no-deps" not in words  # the extension's psycopg comes with it, pinned
    localstack = next(w for w in installs if "${LOCALSTACK_REQUIREMENT}" in w)
    assert "-c" in localstack and constraints_in_image in localstack


def test_no_version_in_the_dockerfile_disagrees_with_the_constraints(
    dockerfile: DockerfileParser,
) -> None:
    pins = constraints()
    written = [*dockerfile.args.values(), *instructions(dockerfile, "RUN")]
    found = [
        match
        for text in written
        for word in shlex.split(text)
        if (match := PIN.match(word.strip("\"'")))
    ]
    assert found, "the LocalStack requirement should be among them"
    for match in found:
        name, version = match[1].lower(), match[3]
        if name == "localstack-core":
            assert f"{name}{match[2] or ''}=={version}" == settings.LOCALSTACK_REQUIREMENT
        else:
            assert pins.get(name) == version, f"{name}=={version} is not the constraints' pin"


def test_the_venvs_are_where_localcloud_settings_looks_inside_the_image(
    dockerfile: DockerfileParser,
) -> None:
    cfg = Settings.from_env(dockerfile.envs)
    runs = " ".join(instructions(dockerfile, "RUN"))
    assert f"venv {cfg.localstack_venv}" in runs
    assert str(cfg.localstack_python.parent / "pip") in runs
    assert f'venv "{cfg.runtimes_dir}/$python"' in runs
    for minor in (install.TOOLS_PYTHON_MINOR, settings.LOCALSTACK_PYTHON_MINOR):
        assert f"python3.{minor}" in runs.split("for python in ", 1)[1].split(";", 1)[0]
    assert cfg.state_dir == Path("/var/lib/localcloud")


def test_the_entry_point_is_localclouds_own_code(dockerfile: DockerfileParser) -> None:
    entrypoint = instructions(dockerfile, "ENTRYPOINT")[-1]
    assert '"-m", "localcloud.container"' in entrypoint
    assert instructions(dockerfile, "CMD")[-1] == '["localstack"]'
    assert dockerfile.envs["PYTHONPATH"] == "/opt/localcloud/infra"
    assert copied_to(dockerfile, settings.PROJECT_ROOT / "infra" / "localcloud") == (
        "/opt/localcloud/infra/localcloud"
    )


def test_pgbouncers_user_has_the_uid_of_the_postgres_images_server() -> None:
    # peer authentication of the proxy's lookup role over the shared socket
    text = settings.DOCKERFILE.read_text()
    assert "--gid 999 postgres" in text and "--uid 999" in text


def test_the_build_context_lets_in_exactly_what_the_image_copies(
    dockerfile: DockerfileParser,
) -> None:
    ignore = (settings.PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}
    sources = {
        copy.split()[0] for copy in instructions(dockerfile, "COPY") if "--from=" not in copy
    }
    assert sources == allowed
    # and nothing large slips in with them
    assert any(fnmatch.fnmatch("infra/localcloud/__pycache__", rule) for rule in rules)
