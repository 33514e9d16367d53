"""Key rotation: ``reencrypt_all`` and ``stellar-cp secrets reencrypt`` on SQLite and PostgreSQL.

No app table holds secrets yet, so a table of this module (own metadata, created in the migrated
test database) is registered in ENCRYPTED_COLUMNS for the duration of each test.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import String, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from control_plane.__main__ import main
from control_plane.db.engine import create_engine, session_factory
from control_plane.db.migrate import upgrade
from control_plane.db.session import transaction
from control_plane.security.encryption import (
    ENCRYPTED_COLUMNS,
    EncryptionNotConfigured,
    SecretBox,
)
from control_plane.services.secrets import ReencryptReport, UnreadableSecret, reencrypt_all

OLD_HEX, NEW_HEX = secrets.token_hex(32), secrets.token_hex(32)
OLD_BOX = SecretBox({"k1": bytes.fromhex(OLD_HEX)})
ROTATED_BOX = SecretBox({"k2": bytes.fromhex(NEW_HEX), "k1": bytes.fromhex(OLD_HEX)})
AUTH_SECRET = "k3Jd9QmX2vLp7RtN4wYb8ZcF6hGs1aEu0iOy5TnM"


class _Base(DeclarativeBase):
    pass


class Vault(_Base):
    """Stands in for the webhooks / TOTP / backup-key tables to come: two encrypted columns."""

    __tablename__ = "test_vault"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    secret: Mapped[str] = mapped_column(String(300))
    backup_key: Mapped[str | None] = mapped_column(String(300), default=None)


REGISTERED = [(Vault, "secret"), (Vault, "backup_key")]


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    ENCRYPTED_COLUMNS.extend(REGISTERED)
    yield
    for entry in REGISTERED:
        ENCRYPTED_COLUMNS.remove(entry)


@pytest.fixture
async def vault_engine(engine: AsyncEngine) -> AsyncEngine:
    """The migrated database of each kind plus the test table (dropped with the database)."""
    async with engine.begin() as connection:
        await connection.run_sync(_Base.metadata.create_all)
    return engine


def plaintexts(index: int) -> tuple[str, str | None]:
    return f"secret-{index}", (f"backup-{index}" if index % 3 else None)


async def fill(engine: AsyncEngine, box: SecretBox, count: int) -> list[uuid.UUID]:
    """``count`` rows sealed with ``box``; every third has no backup key."""
    rows = []
    for index in range(count):
        row = Vault()
        secret, backup = plaintexts(index)
        box.seal(row, "secret", secret)
        if backup is not None:
            box.seal(row, "backup_key", backup)
        rows.append(row)
    async with transaction(session_factory(engine)) as session:
        session.add_all(rows)
    return [row.id for row in rows]


async def load(engine: AsyncEngine) -> list[Vault]:
    async with transaction(session_factory(engine)) as session:
        return list((await session.scalars(select(Vault))).all())


async def kids(engine: AsyncEngine) -> list[str]:
    """The key id of every stored value, after checking that each one decrypts."""
    found = []
    for row in await load(engine):
        assert ROTATED_BOX.unseal(row, "secret") is not None
        ROTATED_BOX.unseal(row, "backup_key")
        found += [v.split(":")[1] for v in (row.secret, row.backup_key) if v is not None]
    return found


def place(attr: str, row_id: uuid.UUID) -> dict[str, str]:
    return {"table": "test_vault", "column": attr, "row_id": str(row_id)}


async def test_sealed_values_survive_the_database_and_stay_bound_to_their_row(
    vault_engine: AsyncEngine,
) -> None:
    ids = await fill(vault_engine, OLD_BOX, 3)
    rows = {row.id: row for row in await load(vault_engine)}
    assert set(rows) == set(ids)
    for index, row_id in enumerate(ids):
        assert OLD_BOX.unseal(rows[row_id], "secret") == plaintexts(index)[0]
        assert OLD_BOX.unseal(rows[row_id], "backup_key") == plaintexts(index)[1]


async def test_rotation_upgrades_every_value_and_a_second_run_is_a_no_op(
    vault_engine: AsyncEngine,
) -> None:
    ids = await fill(vault_engine, OLD_BOX, 25)
    values = 25 + sum(1 for index in range(25) if plaintexts(index)[1] is not None)

    first = await reencrypt_all(vault_engine, ROTATED_BOX, batch=7)
    assert first == ReencryptReport(rows_seen=values, rows_updated=values, key_id="k2")
    assert set(await kids(vault_engine)) == {"k2"}

    rows = {row.id: row for row in await load(vault_engine)}
    new_only = SecretBox({"k2": bytes.fromhex(NEW_HEX)})  # the old key can now be retired
    for index, row_id in enumerate(ids):
        assert new_only.unseal(rows[row_id], "secret") == plaintexts(index)[0]
        assert new_only.unseal(rows[row_id], "backup_key") == plaintexts(index)[1]

    second = await reencrypt_all(vault_engine, ROTATED_BOX, batch=7)
    assert second == ReencryptReport(rows_seen=values, rows_updated=0, key_id="k2")
    assert {row.id: row.secret for row in await load(vault_engine)} == {
        row_id: row.secret for row_id, row in rows.items()
    }


class CrashingBox(SecretBox):
    """The rotated box, but the process "dies" at the n-th encryption."""

    def __init__(self, crash_at: int) -> None:
        super().__init__({"k2": bytes.fromhex(NEW_HEX), "k1": bytes.fromhex(OLD_HEX)})
        self.remaining = crash_at

    def encrypt(self, plaintext: str, *, table: str, column: str, row_id: str | uuid.UUID) -> str:
        self.remaining -= 1
        if self.remaining < 0:
            raise KeyboardInterrupt
        return super().encrypt(plaintext, table=table, column=column, row_id=row_id)


async def test_an_interrupted_run_leaves_every_value_readable_and_a_rerun_completes(
    vault_engine: AsyncEngine,
) -> None:
    await fill(vault_engine, OLD_BOX, 10)
    values = len(await kids(vault_engine))

    with pytest.raises(KeyboardInterrupt):
        await reencrypt_all(vault_engine, CrashingBox(crash_at=4), batch=1)
    after_crash = await kids(vault_engine)  # every value still decrypts
    assert after_crash.count("k2") == 4
    assert after_crash.count("k1") == values - 4

    with pytest.raises(KeyboardInterrupt):  # one batch holding every row rolls back as a whole
        await reencrypt_all(vault_engine, CrashingBox(crash_at=2), batch=50)
    assert (await kids(vault_engine)).count("k2") == 4

    rerun = await reencrypt_all(vault_engine, ROTATED_BOX, batch=3)
    assert (rerun.rows_seen, rerun.rows_updated, rerun.unreadable) == (values, values - 4, ())
    assert set(await kids(vault_engine)) == {"k2"}
    assert (await reencrypt_all(vault_engine, ROTATED_BOX)).rows_updated == 0


async def test_unreadable_values_are_reported_by_place_and_the_rest_upgraded(
    vault_engine: AsyncEngine,
) -> None:
    ids = await fill(vault_engine, OLD_BOX, 6)
    rows = {row.id: row for row in await load(vault_engine)}
    moved_row, moved_column, garbage, lost_key = ids[0], ids[1], ids[2], ids[4]
    lost = SecretBox({"k0": secrets.token_bytes(32)}).encrypt("x", **place("secret", lost_key))
    broken = {
        (moved_row, "secret"): rows[ids[3]].secret,
        (moved_column, "backup_key"): rows[moved_column].secret,
        (garbage, "secret"): "v1:k1:not-a-ciphertext",
        (lost_key, "secret"): lost,
    }
    async with vault_engine.begin() as connection:
        for (row_id, attr), value in broken.items():
            await connection.execute(update(Vault).where(Vault.id == row_id).values({attr: value}))

    report = await reencrypt_all(vault_engine, ROTATED_BOX, batch=2)
    expected = {UnreadableSecret("test_vault", attr, str(row_id)) for row_id, attr in broken}
    assert set(report.unreadable) == expected
    assert len(report.unreadable) == len(expected)
    assert report.rows_updated == report.rows_seen - len(expected)

    again = await reencrypt_all(vault_engine, ROTATED_BOX, batch=2)
    assert (again.rows_updated, set(again.unreadable)) == (0, expected)
    untouched = {row.id: row for row in await load(vault_engine)}
    for (row_id, attr), value in broken.items():
        assert getattr(untouched[row_id], attr) == value


async def test_an_unconfigured_box_fails_before_touching_the_database(
    vault_engine: AsyncEngine,
) -> None:
    await fill(vault_engine, OLD_BOX, 1)
    with pytest.raises(EncryptionNotConfigured):
        await reencrypt_all(vault_engine, SecretBox({}))


async def test_a_registered_attribute_that_is_not_a_column_is_refused(tmp_path: Path) -> None:
    ENCRYPTED_COLUMNS.append((Vault, "no_such_column"))
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(LookupError, match="no_such_column"):
            await reencrypt_all(engine, ROTATED_BOX)
    finally:
        ENCRYPTED_COLUMNS.remove((Vault, "no_such_column"))
        await engine.dispose()


def test_cli_reencrypts_and_names_unreadable_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    async def prepare() -> uuid.UUID:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            async with engine.begin() as connection:
                await connection.run_sync(_Base.metadata.create_all)
            ids = await fill(engine, OLD_BOX, 4)
            async with engine.begin() as connection:
                await connection.execute(
                    update(Vault).where(Vault.id == ids[0]).values(secret="v1:k1:AAAA")
                )
            return ids[0]
        finally:
            await engine.dispose()

    broken = asyncio.run(prepare())
    monkeypatch.setenv("STELLAR_DATABASE_URL", url)
    monkeypatch.setenv("STELLAR_AUTH_SECRET", AUTH_SECRET)
    monkeypatch.setenv("STELLAR_ENCRYPTION_KEYS", f"k2:{NEW_HEX},k1:{OLD_HEX}")

    assert main(["secrets", "reencrypt", "--batch", "2"]) == 1
    out, err = capsys.readouterr()
    assert out == "6 secret(s) checked, 5 re-encrypted under key k2\n"
    assert f"test_vault.secret row {broken}" in err
    assert NEW_HEX not in out + err
    assert OLD_HEX not in out + err

    monkeypatch.delenv("STELLAR_ENCRYPTION_KEYS")
    assert main(["secrets", "reencrypt"]) == 1
    assert "STELLAR_ENCRYPTION_KEYS is not set" in capsys.readouterr().err
