"""Adding uploaded files to a project: several image files and/or zip archives in one request.

Every file gets its own result (``FileResult``: added / duplicate / rejected, with a message),
and one bad file never costs the good ones: each good image is stored and committed on its
own. Checks, in order:

* an upload whose bytes start like a zip archive is opened as one (never by its extension);
  the archive is refused whole when it has too many members or is not a readable zip;
* each zip member: unsafe paths (absolute, ``..``, backslashes, drive letters), symbolic links,
  encrypted members, members over the byte limit, compression ratios over
  ``max_zip_ratio`` (zip bombs) and archives whose members add up to more than
  ``max_zip_total_bytes`` are refused before anything is decompressed; a member is read with
  a bound, so a header that lies about the size cannot exhaust memory; zips inside zips are
  refused;
* each file: ``image_files.inspect_image`` (decoded as PNG/JPEG/WebP, byte and pixel limits);
* duplicates by sha256 checksum, against the project's images and within the upload.

The stored file's key is content-addressed (``images/<project id>/<sha256><ext>``), so a
concurrent upload of the same bytes can never overwrite a different file.
"""

from __future__ import annotations

import re
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .image_files import ImageLimits, ImageRejected, InspectedImage, human_bytes, inspect_image
from .models import Image, Project, User
from .storage import BlobStore

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|\._[^/]*$|Thumbs\.db$)")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class UploadLimits:
    image: ImageLimits = field(default_factory=ImageLimits)
    max_zip_members: int = 10_000
    max_zip_total_bytes: int = 8 * 1024**3  # uncompressed, all members together
    max_zip_ratio: float = 100.0  # uncompressed / compressed, per member

    @classmethod
    def from_config(cls, config) -> UploadLimits:
        return cls(
            image=ImageLimits(max_bytes=int(config["MAX_IMAGE_BYTES"]), max_pixels=int(config["MAX_IMAGE_PIXELS"])),
            max_zip_members=int(config["MAX_ZIP_MEMBERS"]),
            max_zip_total_bytes=int(config["MAX_ZIP_TOTAL_BYTES"]),
            max_zip_ratio=float(config["MAX_ZIP_RATIO"]),
        )


@dataclass
class FileResult:
    file: str  # the uploaded file's name; for a zip member "archive.zip/path/in/zip.png"
    status: str  # added | duplicate | rejected
    message: str
    image_id: int | None = None

    def to_json(self) -> dict:
        return {"file": self.file, "status": self.status, "message": self.message, "image_id": self.image_id}


@dataclass(frozen=True)
class Candidate:
    """One file to add: its bytes, or the reason it was refused before it was read."""

    name: str
    data: bytes | None
    error: str | None = None


def display_name(name: str | None) -> str:
    name = (name or "").replace("\x00", "")
    name = "".join(ch for ch in name if ch.isprintable())
    return (name or "(unnamed file)")[:255]


def upload_name(name: str | None) -> str:
    """An uploaded file's name as stored: its last path component only (a client may send
    ``../../x.png`` or ``C:\\dir\\x.png``; the name ends up in the exports' ``file_name``, which
    tools join to a folder), printable, never ``.`` or ``..``."""
    base = display_name(name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base if base not in ("", ".", "..") else "(unnamed file)"


def _unsafe_member_path(name: str) -> str | None:
    if "\\" in name:
        return "its path contains a backslash"
    if name.startswith("/") or _DRIVE.match(name):
        return "its path is absolute"
    if any(part == ".." for part in name.split("/")):
        return "its path leaves the archive ('..')"
    return None


def expand_zip(zip_name: str, stream: BinaryIO, limits: UploadLimits) -> Iterator[Candidate]:
    """The members of one uploaded zip archive, each read with a bound or refused with a reason."""
    try:
        zf = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        yield Candidate(zip_name, None, f"not a readable zip archive ({e})")
        return
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_zip_members:
            yield Candidate(zip_name, None, f"the archive has {len(infos)} members; the limit is {limits.max_zip_members}")
            return
        declared_total = 0
        max_bytes = limits.image.max_bytes
        for info in infos:
            if not info.filename:  # a crafted central directory (ZipInfo.is_dir() fails on it)
                yield Candidate(f"{zip_name}/(unnamed member)", None, "refused from the zip: the member has no name")
                continue
            if info.is_dir() or _JUNK.search(info.filename):
                continue
            name = f"{zip_name}/{display_name(info.filename)}"
            reason = _unsafe_member_path(info.filename)
            if reason is None and stat.S_ISLNK(info.external_attr >> 16):
                reason = "it is a symbolic link"
            if reason is None and info.flag_bits & 0x1:
                reason = "it is encrypted"
            if reason is None and info.file_size > max_bytes:
                reason = f"it is {human_bytes(info.file_size)} uncompressed; the limit is {human_bytes(max_bytes)}"
            if reason is None and info.file_size > limits.max_zip_ratio * max(info.compress_size, 1):
                ratio = info.file_size / max(info.compress_size, 1)
                reason = (f"its compression ratio is {ratio:,.0f}:1, over the limit of {limits.max_zip_ratio:,.0f}:1 "
                          "(zip bomb)")
            if reason is None:
                declared_total += info.file_size
                if declared_total > limits.max_zip_total_bytes:
                    reason = (f"the archive's members add up to more than {human_bytes(limits.max_zip_total_bytes)} "
                              "uncompressed (zip bomb)")
            if reason is not None:
                yield Candidate(name, None, f"refused from the zip: {reason}")
                continue
            try:
                with zf.open(info) as f:
                    data = f.read(max_bytes + 1)
            except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, ValueError, EOFError) as e:
                yield Candidate(name, None, f"could not be extracted from the zip ({e})")
                continue
            if len(data) > max_bytes:  # the header lied about the size
                yield Candidate(name, None, f"it decompresses to more than {human_bytes(max_bytes)} (zip bomb)")
                continue
            if data.startswith(ZIP_MAGIC):
                yield Candidate(name, None, "a zip inside a zip is not supported; upload it on its own")
                continue
            yield Candidate(name, data)


def expand_upload(name: str, stream: BinaryIO, limits: UploadLimits) -> Iterator[Candidate]:
    """One uploaded file: an image candidate, or the members of a zip archive."""
    head = stream.read(4)
    stream.seek(0)
    if head in ZIP_MAGIC:
        yield from expand_zip(name, stream, limits)
        return
    data = stream.read(limits.image.max_bytes + 1)
    if len(data) > limits.image.max_bytes:
        yield Candidate(name, None, f"the file is larger than the limit of {human_bytes(limits.image.max_bytes)}")
        return
    yield Candidate(name, data)


def image_key(project_id: int, image: InspectedImage) -> str:
    return f"images/{project_id}/{image.checksum}{image.extension}"


def _existing_by_checksum(session: Session, project_id: int, checksum: str) -> Image | None:
    return session.scalar(select(Image).where(Image.project_id == project_id, Image.checksum == checksum))


def add_uploads(
    session: Session,
    store: BlobStore,
    project: Project,
    uploader: User,
    files: list[tuple[str, BinaryIO]],
    limits: UploadLimits,
    on_added: Callable[[Image], None] | None = None,
) -> list[FileResult]:
    """Validate and store every file of one upload; ``on_added`` is called after each commit."""
    results: list[FileResult] = []
    seen: dict[str, str] = {}  # checksum -> name, within this upload
    for raw_name, stream in files:
        for cand in expand_upload(upload_name(raw_name), stream, limits):
            if cand.data is None:
                results.append(FileResult(cand.name, "rejected", cand.error or "refused"))
                continue
            try:
                info = inspect_image(cand.data, limits.image)
            except ImageRejected as e:
                results.append(FileResult(cand.name, "rejected", str(e)))
                continue
            if info.checksum in seen:
                results.append(FileResult(cand.name, "duplicate", f"same file as {seen[info.checksum]} in this upload"))
                continue
            seen[info.checksum] = cand.name
            existing = _existing_by_checksum(session, project.id, info.checksum)
            if existing is not None:
                results.append(FileResult(cand.name, "duplicate",
                                          f"already in the project as image {existing.id} ({existing.filename})",
                                          existing.id))
                continue
            key = image_key(project.id, info)
            store.put(key, cand.data)
            image = Image(
                project_id=project.id,
                filename=cand.name,
                storage_key=key,
                format=info.format,
                width=info.width,
                height=info.height,
                size_bytes=info.size_bytes,
                checksum=info.checksum,
                uploaded_by_id=uploader.id,
            )
            session.add(image)
            try:
                session.commit()
            except IntegrityError:  # a concurrent upload added the same bytes first
                session.rollback()
                existing = _existing_by_checksum(session, project.id, info.checksum)
                results.append(FileResult(cand.name, "duplicate", "added meanwhile by another upload",
                                          existing.id if existing else None))
                continue
            results.append(FileResult(cand.name, "added", f"{info.format.upper()} {info.width}x{info.height}", image.id))
            if on_added is not None:
                on_added(image)
    return results
