"""Parts of a split file: the part header and the plan a sender cuts a file by.

A file larger than the sender's part size travels as several ordinary
bundles of content kind "part" (docs/protocol.md section 25). "Part" and
not "chunk": chunks are the 1 MiB STREAM units inside every bundle
(section 6). The part header lives in the signed, encrypted metadata, so a
relay learns only each part's size. Pure logic: no files, clock or random
generator here; the sender passes the file id it drew.
"""

from __future__ import annotations

import dataclasses

from rise_dtn.core.errors import BundleError

FILE_ID_BYTES = 16  # random per split file: collisions across a sender's files are negligible
# At most this many parts per file. It bounds the receiver's work and state
# per reassembly (one marker per part); at 1 GiB a part it is still 64 TiB.
MAX_PARTS = 1 << 16
# A file of more than 1 PiB is refused before any I/O, as bundle bodies are.
MAX_TOTAL_BYTES = 1 << 50


@dataclasses.dataclass(frozen=True, slots=True)
class PartHeader:
    """Which piece of which file a part bundle carries (section 25.2).

    `part_bytes` is the size of every part but the last; the offset and the
    length of part `index` follow from it, so a part cannot claim to lie
    anywhere else.
    """

    file_id: bytes
    index: int
    count: int
    total_bytes: int
    part_bytes: int

    def __post_init__(self) -> None:
        check(self)

    @property
    def offset(self) -> int:
        return self.index * self.part_bytes

    @property
    def length(self) -> int:
        """The payload bytes this part must carry."""
        return min(self.part_bytes, self.total_bytes - self.offset)

    def fields(self) -> list[object]:
        return [self.file_id, self.index, self.count, self.total_bytes, self.part_bytes]

    @classmethod
    def from_fields(cls, fields: list[object]) -> PartHeader:
        """From the last five metadata fields; anything malformed is a BundleError."""
        if len(fields) != 5:
            raise BundleError("part metadata is malformed")
        file_id, *numbers = fields
        if not isinstance(file_id, bytes) or len(file_id) != FILE_ID_BYTES:
            raise BundleError("part metadata is malformed: the file id is not 16 bytes")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            raise BundleError("part metadata is malformed: a count is not a whole number")
        index, count, total, part = (int(n) for n in numbers)  # type: ignore[call-overload]
        return cls(file_id, index, count, total, part)

    def agrees_with(self, other: PartHeader) -> str | None:
        """Why two parts cannot belong to one file, or None when they can."""
        for name in ("count", "total_bytes", "part_bytes"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                shown = name.replace("_", " ")
                return f"its {shown} ({mine}) disagrees with earlier parts ({theirs})"
        return None


def check(header: PartHeader) -> None:
    """The consistency rules of section 25.2; the first broken one is the reason."""
    if not 1 <= header.total_bytes <= MAX_TOTAL_BYTES:
        raise BundleError(f"part of a file of {header.total_bytes} bytes (1 B .. 1 PiB)")
    if header.part_bytes < 1:
        raise BundleError("part size is zero")
    if not 1 <= header.count <= MAX_PARTS:
        raise BundleError(f"too many parts: {header.count} (at most {MAX_PARTS})")
    expected = -(-header.total_bytes // header.part_bytes)
    if header.count != expected:
        raise BundleError(
            f"part count {header.count} disagrees with the total size "
            f"({header.total_bytes} bytes in parts of {header.part_bytes} make {expected})"
        )
    if header.index >= header.count:
        raise BundleError(f"part index {header.index} is not below the count {header.count}")


def plan(file_id: bytes, total_bytes: int, part_bytes: int) -> list[PartHeader]:
    """The parts a sender cuts a file of `total_bytes` into (raises UsageError-worthy
    BundleErrors for impossible plans; the caller words them for the user)."""
    count = -(-total_bytes // part_bytes)
    return [PartHeader(file_id, index, count, total_bytes, part_bytes) for index in range(count)]
