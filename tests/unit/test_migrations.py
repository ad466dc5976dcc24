"""Migration files, checksums and the database secret, without a database."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from deployment import migrations
from deployment.migrations import MigrationError


def write(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_text(f"-- {name}\nSELECT 1;\n")


def test_migrations_are_found_in_version_order(tmp_path: Path) -> None:
    write(tmp_path, "0010_c.sql", "0002_b_2.sql", "0001_a.sql", "README.md")

    found = migrations.discover_migrations(tmp_path)

    assert [(m.version, m.path.name) for m in found] == [
        ("0001", "0001_a.sql"),
        ("0002", "0002_b_2.sql"),
        ("0010", "0010_c.sql"),
    ]


@pytest.mark.parametrize("name", ["1_a.sql", "0001-a.sql", "0001_.sql", "0001_Add.sql", "x.sql"])
def test_a_badly_named_file_is_refused(tmp_path: Path, name: str) -> None:
    write(tmp_path, "0001_a.sql", name)

    with pytest.raises(MigrationError, match=f"{name} is not named NNNN_description.sql"):
        migrations.discover_migrations(tmp_path)


def test_two_files_with_one_version_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "0001_b.sql")

    with pytest.raises(MigrationError, match="0001_a.sql and 0001_b.sql share version 0001"):
        migrations.discover_migrations(tmp_path)


def test_the_checksum_is_the_sha256_of_the_files_bytes(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_bytes(b"CREATE TABLE a (id int);\r\n")

    [found] = migrations.discover_migrations(tmp_path)

    assert found.checksum == hashlib.sha256(b"CREATE TABLE a (id int);\r\n").hexdigest()
    assert found.sql == "CREATE TABLE a (id int);\r\n"


def test_the_projects_migrations_are_well_formed() -> None:
    found = migrations.discover_migrations(migrations.MIGRATIONS_DIR)

    assert found[0].path.name == "0001_create_tasks.sql"


def test_a_bad_file_stops_before_any_connection(tmp_path: Path) -> None:
    write(tmp_path, "create_tasks.sql")

    with pytest.raises(MigrationError, match="create_tasks.sql is not named"):
        migrations.apply_migrations("host=127.0.0.1 port=1 dbname=none", tmp_path)
