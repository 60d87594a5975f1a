"""One chunk file of the embedding cache: text hashes and their float32 embeddings, checksummed, written atomically.

Layout of a ``.emb`` file::

    MAGIC (8 bytes) | header length (uint32, little-endian) | header (UTF-8 JSON) | payload

The header is ``{"format", "fingerprint", "role", "rows", "dim", "dtype": "<f4", "sha256"}``; the payload is
``rows`` SHA-256 text digests (32 bytes each) followed by the ``(rows, dim)`` little-endian float32 matrix, row ``i``
embedding the text of digest ``i``; ``sha256`` is the hex digest of the whole payload. A reader checks the magic,
the header, the exact file size, and (before any embedding is used) the checksum: a chunk that fails any check is
:class:`CorruptChunkError`, never data.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedtune.io import atomic_file

MAGIC = b"ETEMB\x00\x01\n"
CHUNK_SUFFIX = ".emb"
TEMP_SUFFIX = ".tmp"
DIGEST_BYTES = 32
CHUNK_FORMAT = 1
_LENGTH = struct.Struct("<I")
_MAX_HEADER_BYTES = 4096
_ALIGN = 64


class CorruptChunkError(ValueError):
    """A chunk file that is truncated, tampered with, or does not match what its place in the cache promises."""


@dataclass(frozen=True)
class ChunkHeader:
    """What a chunk file says about itself.

    Attributes:
        fingerprint: The model fingerprint (64 hex characters) the rows were encoded with.
        role: ``"query"`` or ``"document"``.
        rows: Number of texts (and embedding rows).
        dim: Embedding dimension.
        sha256: Hex digest of the payload (text digests, then the float32 matrix).
        payload_offset: Byte offset of the payload in the file.
    """

    fingerprint: str
    role: str
    rows: int
    dim: int
    sha256: str
    payload_offset: int

    @property
    def file_bytes(self) -> int:
        """The exact size in bytes a complete file with this header has."""
        return self.payload_offset + self.rows * (DIGEST_BYTES + 4 * self.dim)


def text_digest(text: str) -> bytes:
    """Return the 32-byte SHA-256 of a text's UTF-8 bytes (lone surrogates kept), the key of its embedding.

    Raises:
        TypeError: if ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"the embedding cache keys texts only, got {type(text).__name__}")
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def chunk_name(digests: bytes) -> str:
    """Name of the chunk holding these concatenated text digests: the same texts always give the same file."""
    return hashlib.sha256(digests).hexdigest()[:40] + CHUNK_SUFFIX


def write_chunk(path: Path, fingerprint: str, role: str, digests: bytes, matrix: np.ndarray) -> int:
    """Write a chunk file atomically: a temporary file in the same folder, ``fsync``, then ``os.replace``.

    A crash leaves at most a ``.*.tmp`` file, which readers never open; concurrent writers of the same chunk each
    replace the file with complete, identical content.

    Args:
        path: Destination ``.emb`` file; its folder is created if missing.
        fingerprint: The model fingerprint.
        role: ``"query"`` or ``"document"``.
        digests: ``rows * 32`` bytes, the text digests in row order.
        matrix: ``(rows, dim)`` embeddings (converted to float32).

    Returns:
        The file's size in bytes.

    Raises:
        ValueError: if ``digests`` and ``matrix`` disagree on the number of rows or ``matrix`` is not 2-D.
        OSError: if the file cannot be written (nothing is left behind).
    """
    matrix = np.ascontiguousarray(matrix, dtype="<f4")
    if matrix.ndim != 2 or len(digests) != DIGEST_BYTES * matrix.shape[0]:
        raise ValueError(f"chunk of {len(digests) // DIGEST_BYTES} digests and a {matrix.shape} matrix")
    payload_hash = hashlib.sha256(digests)
    payload_hash.update(memoryview(matrix).cast("B"))
    header = {
        "format": CHUNK_FORMAT,
        "fingerprint": fingerprint,
        "role": role,
        "rows": int(matrix.shape[0]),
        "dim": int(matrix.shape[1]),
        "dtype": "<f4",
        "sha256": payload_hash.hexdigest(),
    }
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    header_bytes += b" " * (-(len(MAGIC) + _LENGTH.size + len(header_bytes)) % _ALIGN)  # aligned float32 rows
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, binary=True, suffix=TEMP_SUFFIX) as handle:
        handle.write(MAGIC + _LENGTH.pack(len(header_bytes)) + header_bytes)
        handle.write(digests)
        handle.write(memoryview(matrix).cast("B"))
    return len(MAGIC) + _LENGTH.size + len(header_bytes) + len(digests) + matrix.nbytes


def read_chunk_header(path: Path, fingerprint: str, role: str) -> ChunkHeader:
    """Read and check a chunk's header only (cheap: no payload is read), e.g. to count its rows.

    Raises:
        CorruptChunkError: bad magic or header, another fingerprint or role, or a file size other than the header
            implies.
        FileNotFoundError: if the file vanished.
    """
    return read_chunk_digests(path, fingerprint, role, digests=False)[0]


def read_chunk_digests(path: Path, fingerprint: str, role: str, digests: bool = True) -> tuple[ChunkHeader, bytes]:
    """Read a chunk's header and text digests only (not its embeddings), checking the header and the file size.

    Args:
        path: The ``.emb`` file.
        fingerprint: The fingerprint the file must carry (that of its folder).
        role: The role the file must carry.
        digests: Read the digests; ``False`` returns ``b""`` in their place.

    Returns:
        ``(header, digests)``: ``rows * 32`` bytes. The digests are not checksummed yet; :func:`read_chunk` checks
        them with the embeddings before anything is used.

    Raises:
        CorruptChunkError: bad magic or header, another fingerprint or role, a non-float32 dtype, or a file size
            other than the header implies (truncated or padded).
        FileNotFoundError: if the file vanished (evicted meanwhile).
    """
    with path.open("rb") as handle:
        header = _parse_header(handle.read(len(MAGIC) + _LENGTH.size + _MAX_HEADER_BYTES), path, fingerprint, role)
        size = os.fstat(handle.fileno()).st_size
        if size != header.file_bytes:
            raise CorruptChunkError(f"{path}: {size} bytes, expected {header.file_bytes} (truncated or padded)")
        if not digests:
            return header, b""
        handle.seek(header.payload_offset)
        data = handle.read(header.rows * DIGEST_BYTES)
    if len(data) != header.rows * DIGEST_BYTES:
        raise CorruptChunkError(f"{path}: truncated while reading")
    return header, data


def read_chunk(path: Path, fingerprint: str, role: str) -> tuple[ChunkHeader, bytes, np.ndarray]:
    """Read and verify a whole chunk.

    Args:
        path: The ``.emb`` file.
        fingerprint: The fingerprint the file must carry.
        role: The role the file must carry.

    Returns:
        ``(header, digests, matrix)``: the ``rows * 32`` digest bytes and the read-only ``(rows, dim)`` float32
        matrix, both covered by the verified checksum.

    Raises:
        CorruptChunkError: on any failed check of :func:`read_chunk_digests`, or a checksum mismatch.
        FileNotFoundError: if the file vanished.
    """
    data = path.read_bytes()
    header = _parse_header(data[: len(MAGIC) + _LENGTH.size + _MAX_HEADER_BYTES], path, fingerprint, role)
    if len(data) != header.file_bytes:
        raise CorruptChunkError(f"{path}: {len(data)} bytes, expected {header.file_bytes} (truncated or padded)")
    payload = memoryview(data)[header.payload_offset :]
    if hashlib.sha256(payload).hexdigest() != header.sha256:
        raise CorruptChunkError(f"{path}: checksum mismatch")
    split = header.rows * DIGEST_BYTES
    matrix = np.frombuffer(data, dtype="<f4", offset=header.payload_offset + split).reshape(header.rows, header.dim)
    return header, bytes(payload[:split]), matrix


def _parse_header(start: bytes, path: Path, fingerprint: str, role: str) -> ChunkHeader:
    if not start.startswith(MAGIC) or len(start) < len(MAGIC) + _LENGTH.size:
        raise CorruptChunkError(f"{path}: not an embedtune cache chunk (bad magic)")
    (length,) = _LENGTH.unpack_from(start, len(MAGIC))
    offset = len(MAGIC) + _LENGTH.size
    if length > _MAX_HEADER_BYTES or len(start) < offset + length:
        raise CorruptChunkError(f"{path}: header truncated or too long")
    try:
        header = json.loads(start[offset : offset + length].decode("utf-8"))
        result = ChunkHeader(
            fingerprint=header["fingerprint"],
            role=header["role"],
            rows=header["rows"],
            dim=header["dim"],
            sha256=header["sha256"],
            payload_offset=offset + length,
        )
        valid = header["format"] == CHUNK_FORMAT and header["dtype"] == "<f4"
        valid = valid and all(type(value) is int and value > 0 for value in (result.rows, result.dim))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise CorruptChunkError(f"{path}: unreadable header") from None
    if not valid:
        raise CorruptChunkError(f"{path}: unsupported format, dtype or shape")
    if result.fingerprint != fingerprint or result.role != role:
        raise CorruptChunkError(f"{path}: holds {result.role} rows of another model, not {role} rows of this one")
    return result
