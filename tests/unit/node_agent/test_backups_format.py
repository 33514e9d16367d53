"""The encrypted chunk format: round trips, and every way to break a file is detected."""

from __future__ import annotations

import io
import secrets
import uuid

import pytest

from shared.backup_format import (
    HEADER_BYTES,
    MIN_CHUNK_BYTES,
    TAG_BYTES,
    BackupIntegrityError,
    BackupReader,
    BackupWriter,
    decrypt_chunks,
)

CHUNK = MIN_CHUNK_BYTES
BLOCK = CHUNK + TAG_BYTES


def encrypt(data: bytes, key: bytes, backup_id: uuid.UUID) -> bytes:
    sink = io.BytesIO()
    writer = BackupWriter(sink, key, backup_id, chunk_bytes=CHUNK)
    for start in range(0, len(data), 1000):
        writer.write(data[start : start + 1000])
    writer.close()
    return sink.getvalue()


def decrypt(blob: bytes, key: bytes, backup_id: uuid.UUID) -> bytes:
    return b"".join(decrypt_chunks(io.BytesIO(blob), key, backup_id))


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 77])
def test_round_trip_of_any_size(key: bytes, size: int) -> None:
    backup_id = uuid.uuid4()
    data = secrets.token_bytes(size)
    blob = encrypt(data, key, backup_id)
    assert decrypt(blob, key, backup_id) == data
    reader = BackupReader(io.BytesIO(blob), key, backup_id)
    assert reader.read(7) + reader.read() == data


def test_the_same_plaintext_encrypts_differently_each_time(key: bytes) -> None:
    backup_id = uuid.uuid4()
    assert encrypt(b"x" * 100, key, backup_id) != encrypt(b"x" * 100, key, backup_id)


def _damaged(blob: bytes) -> list[tuple[str, bytes]]:
    chunks = [blob[HEADER_BYTES + i * BLOCK : HEADER_BYTES + (i + 1) * BLOCK] for i in range(4)]
    header = blob[:HEADER_BYTES]
    flipped = bytearray(blob)
    flipped[HEADER_BYTES + BLOCK + 5] ^= 0x01
    header_flipped = bytearray(blob)
    header_flipped[10] ^= 0x01  # inside the chunk size field
    return [
        ("truncated at a chunk boundary", blob[: HEADER_BYTES + 2 * BLOCK]),
        ("truncated mid-chunk", blob[: HEADER_BYTES + 2 * BLOCK + 100]),
        ("last chunk dropped", blob[: len(blob) - len(blob[HEADER_BYTES + 3 * BLOCK :])]),
        ("two chunks swapped", header + chunks[1] + chunks[0] + chunks[2] + chunks[3]),
        ("one byte flipped", bytes(flipped)),
        ("header changed", bytes(header_flipped)),
        ("data appended", blob + b"\x00"),
        ("header only", header),
        ("empty", b""),
    ]


def test_truncation_reordering_and_tampering_are_detected(key: bytes) -> None:
    backup_id = uuid.uuid4()
    blob = encrypt(secrets.token_bytes(3 * CHUNK + 500), key, backup_id)
    undetected = []
    for label, broken in _damaged(blob):
        try:
            decrypt(broken, key, backup_id)
        except BackupIntegrityError:
            continue
        undetected.append(label)
    assert undetected == []


def test_wrong_key_and_other_backup_are_refused(key: bytes) -> None:
    backup_id = uuid.uuid4()
    blob = encrypt(b"hello" * 1000, key, backup_id)
    with pytest.raises(BackupIntegrityError):
        decrypt(blob, secrets.token_bytes(32), backup_id)
    with pytest.raises(BackupIntegrityError, match="another backup"):
        decrypt(blob, key, uuid.uuid4())


def test_a_chunk_spliced_from_another_backup_under_the_same_key_is_refused(key: bytes) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    one = encrypt(secrets.token_bytes(2 * CHUNK + 10), key, first)
    two = encrypt(secrets.token_bytes(2 * CHUNK + 10), key, second)
    spliced = one[: HEADER_BYTES + BLOCK] + two[HEADER_BYTES + BLOCK :]
    with pytest.raises(BackupIntegrityError):
        decrypt(spliced, key, first)
