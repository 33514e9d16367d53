"""The encrypted backup file (``.stbk``): a header, then AES-256-GCM chunks, numbered.

Both sides use this module: the agent writes backups and reads them back to restore; the
control plane can decrypt a downloaded one. The plaintext is a gzip-compressed tar.

Layout (big-endian)::

    header  48 bytes   magic "STBK" | version u8 (1) | compression u8 (1 = gzip)
                       | reserved u16 (0) | chunk size u32 | backup id (16, the uuid)
                       | salt (16, random) | nonce prefix (4, random)
    chunk i            AES-GCM(ciphertext ‖ 16-byte tag) of ``chunk size`` plaintext bytes;
                       the last chunk holds 0..chunk size bytes and is the only one so flagged

The file key is HKDF-SHA256(server key, salt, "stellarstack backup v1" ‖ backup id), so a
nonce can never repeat under one key even if two backups drew the same random prefix. Each
chunk's nonce is ``prefix ‖ u64 index`` and its associated data is ``header ‖ u64 index ‖
final flag (u8)``: the header (hence backup id, chunk size, version) is authenticated by
every chunk, and a truncated file (its last chunk was not written as final), chunks
reordered or spliced from another backup, or any flipped byte fail to decrypt.
"""

from __future__ import annotations

import secrets
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC: Final = b"STBK"
VERSION: Final = 1
GZIP: Final = 1
KEY_BYTES: Final = 32
TAG_BYTES: Final = 16
DEFAULT_CHUNK_BYTES: Final = 1024 * 1024
MIN_CHUNK_BYTES: Final = 4096
MAX_CHUNK_BYTES: Final = 16 * 1024 * 1024
_HEADER: Final = struct.Struct(">4sBBHI16s16s4s")
HEADER_BYTES: Final = _HEADER.size
_KDF_INFO: Final = b"stellarstack backup v1"


class BackupIntegrityError(ValueError):
    """The file is not a backup, belongs to another backup, was damaged, or the key is wrong."""


@dataclass(frozen=True)
class BackupHeader:
    """The clear-text header of a backup file."""

    backup_id: uuid.UUID
    chunk_bytes: int
    salt: bytes
    nonce_prefix: bytes
    version: int = VERSION
    compression: int = GZIP

    def pack(self) -> bytes:
        return _HEADER.pack(
            MAGIC,
            self.version,
            self.compression,
            0,
            self.chunk_bytes,
            self.backup_id.bytes,
            self.salt,
            self.nonce_prefix,
        )

    @classmethod
    def unpack(cls, data: bytes) -> BackupHeader:
        if len(data) != HEADER_BYTES:
            raise BackupIntegrityError("the file is too short to be a backup")
        magic, version, compression, reserved, chunk, raw_id, salt, prefix = _HEADER.unpack(data)
        if magic != MAGIC:
            raise BackupIntegrityError("the file is not a StellarStack backup")
        if version != VERSION or compression != GZIP or reserved != 0:
            raise BackupIntegrityError(f"unsupported backup format version {version}")
        if not MIN_CHUNK_BYTES <= chunk <= MAX_CHUNK_BYTES:
            raise BackupIntegrityError("the backup's chunk size is out of range")
        return cls(uuid.UUID(bytes=raw_id), chunk, salt, prefix, version, compression)


def _file_cipher(key: bytes, header: BackupHeader) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise ValueError("a backup key is 32 bytes")
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=header.salt,
        info=_KDF_INFO + header.backup_id.bytes,
    ).derive(key)
    return AESGCM(derived)


def _nonce(header: BackupHeader, index: int) -> bytes:
    return header.nonce_prefix + index.to_bytes(8, "big")


def _associated_data(header_bytes: bytes, index: int, final: bool) -> bytes:
    return header_bytes + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


class BackupWriter:
    """A write-only file object: what is written to it lands encrypted in ``sink``.

    Call :meth:`close` exactly once when all plaintext is written: it writes the final chunk.
    Memory stays at about one chunk.
    """

    def __init__(
        self,
        sink: BinaryIO,
        key: bytes,
        backup_id: uuid.UUID,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        self._header = BackupHeader(
            backup_id, chunk_bytes, secrets.token_bytes(16), secrets.token_bytes(4)
        )
        self._header_bytes = self._header.pack()
        self._cipher = _file_cipher(key, self._header)
        self._sink = sink
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        self.plaintext_bytes = 0
        sink.write(self._header_bytes)

    def _emit(self, data: bytes | bytearray, final: bool) -> None:
        aad = _associated_data(self._header_bytes, self._index, final)
        self._sink.write(self._cipher.encrypt(_nonce(self._header, self._index), data, aad))
        self._index += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("the backup is closed")
        self._buffer += data
        self.plaintext_bytes += len(data)
        size = self._header.chunk_bytes
        # Strictly more than a chunk: the final chunk is never empty unless the whole input is.
        while len(self._buffer) > size:
            self._emit(bytes(self._buffer[:size]), final=False)
            del self._buffer[:size]
        return len(data)

    def flush(self) -> None:
        """Nothing to do: a chunk is written as soon as it is complete."""

    def close(self) -> None:
        """Write the last chunk, flagged final (the sink is not closed)."""
        if self._closed:
            return
        self._closed = True
        self._emit(bytes(self._buffer), final=True)
        self._buffer.clear()


def _read_up_to(source: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left > 0:
        data = source.read(left)
        if not data:
            break
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def read_header(source: BinaryIO, backup_id: uuid.UUID) -> tuple[BackupHeader, bytes]:
    """The header of ``source``, which must belong to ``backup_id``."""
    header_bytes = _read_up_to(source, HEADER_BYTES)
    header = BackupHeader.unpack(header_bytes)
    if header.backup_id != backup_id:
        raise BackupIntegrityError("the file belongs to another backup")
    return header, header_bytes


def decrypt_chunks(source: BinaryIO, key: bytes, backup_id: uuid.UUID) -> Iterator[bytes]:
    """The plaintext of the backup in ``source``, chunk by chunk, each authenticated.

    Raises BackupIntegrityError at the first chunk that fails, if the final chunk is
    missing, or if anything follows it. A consumer must read to the end (StopIteration)
    before trusting what it got.
    """
    header, header_bytes = read_header(source, backup_id)
    cipher = _file_cipher(key, header)
    block = header.chunk_bytes + TAG_BYTES
    index = 0
    current = _read_up_to(source, block)
    while True:
        if len(current) < TAG_BYTES:
            raise BackupIntegrityError("the backup is truncated")
        following = _read_up_to(source, block) if len(current) == block else b""
        final = not following
        if final and len(current) < block and source.read(1):
            raise BackupIntegrityError("data follows the backup's last chunk")
        aad = _associated_data(header_bytes, index, final)
        try:
            plain = cipher.decrypt(_nonce(header, index), current, aad)
        except InvalidTag as err:
            raise BackupIntegrityError(
                f"chunk {index} does not verify: wrong key, or the backup was damaged, "
                "truncated or reordered"
            ) from err
        yield plain
        if final:
            return
        index += 1
        current = following


class BackupReader:
    """A read-only file object over the decrypted plaintext (for gzip and tarfile)."""

    def __init__(self, source: BinaryIO, key: bytes, backup_id: uuid.UUID) -> None:
        self._chunks = decrypt_chunks(source, key, backup_id)
        self._pending = b""
        self._offset = 0
        self.finished = False

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            if self._offset >= len(self._pending):
                if self.finished:
                    break
                try:
                    self._pending, self._offset = next(self._chunks), 0
                except StopIteration:
                    self.finished = True
                    break
                continue
            take = len(self._pending) - self._offset
            if size >= 0:
                take = min(take, size - len(out))
            out += self._pending[self._offset : self._offset + take]
            self._offset += take
        return bytes(out)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read (and so verify) everything left, up to the final chunk."""
        while self.read(DEFAULT_CHUNK_BYTES):
            pass
