"""Customer photo and video uploads: checked, cleaned and stored under the media root.

Nothing a customer sends is trusted: the type comes from the file's first bytes (never its name or
the browser's content type), sizes are capped per kind, photos are decoded and re-encoded with
Pillow under a pixel limit (so a decompression bomb is refused before it is decoded, and EXIF and
GPS data never survive), videos must parse as a real MP4/MOV/WebM container and lose their metadata
boxes (where phones keep the location). Stored files get random names; the database row keeps the
content type the media route serves them with.
"""

from __future__ import annotations

import os
import secrets
import shutil
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps

try:  # HEIC support needs pillow-heif's bundled libheif; without it HEIC is refused, clearly.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIC_SUPPORTED = True
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    HEIC_SUPPORTED = False

MB = 1024 * 1024
CHUNK = 1024 * 1024
SUPPORTED_TYPES = "JPEG, PNG, WebP or HEIC photos, or MP4, MOV or WebM videos"


class MediaRejected(ValueError):
    """An upload we refuse; the message is written for the customer."""


@dataclass(frozen=True)
class MediaLimits:
    max_photo_bytes: int = 20 * MB
    max_video_bytes: int = 200 * MB
    max_pixels: int = 50_000_000  # decoded size cap: a 50 MP photo is ~150 MB of RGB in memory
    max_edge: int = 2560  # stored photos are scaled down to this longest side
    max_files_per_review: int = 6

    @classmethod
    def from_config(cls, config) -> MediaLimits:
        return cls(max_photo_bytes=config.review_max_photo_mb * MB,
                   max_video_bytes=config.review_max_video_mb * MB,
                   max_pixels=config.review_max_megapixels * 1_000_000)


@dataclass(frozen=True)
class Sniffed:
    kind: str  # photo | video
    format: str  # JPEG, PNG, WEBP, HEIF | mp4, mov, webm
    content_type: str  # of the upload (for videos, also what is served)


@dataclass(frozen=True)
class StoredMedia:
    kind: str
    path: str  # relative to the media root
    content_type: str  # what the file is served as
    size_bytes: int
    width: int | None = None
    height: int | None = None


# ---- type sniffing ---------------------------------------------------------------------------

HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
MP4_BRAND_PREFIXES = (b"iso", b"mp4", b"mp7", b"M4V", b"M4A", b"avc1", b"dash", b"MSNV", b"3gp",
                      b"3g2", b"XAVC", b"mmp4", b"f4v")
# QuickTime files from old cameras start straight with one of these atoms instead of `ftyp`.
QT_FIRST_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


def _ftyp_brands(head: bytes) -> list[bytes] | None:
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    size = struct.unpack(">I", head[:4])[0]
    end = min(size, len(head)) if size >= 16 else 16
    brands = [head[8:12]]  # major brand, then (after the minor version) the compatible ones
    brands += [head[i:i + 4] for i in range(16, end - 3, 4)]
    return brands


def sniff(head: bytes) -> Sniffed | None:
    """What the first bytes of a file say it is, or None for anything we do not accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("photo", "JPEG", "image/jpeg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("photo", "PNG", "image/png")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("photo", "WEBP", "image/webp")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return Sniffed("video", "webm", "video/webm") if b"webm" in head[:64] else None
    brands = _ftyp_brands(head)
    if brands is not None:
        if brands[0] in AVIF_BRANDS:
            return None
        if brands[0] == b"qt  ":
            return Sniffed("video", "mov", "video/quicktime")
        if any(b in HEIC_BRANDS for b in brands) and not any(b in AVIF_BRANDS for b in brands):
            return Sniffed("photo", "HEIF", "image/heic")
        if any(b.startswith(MP4_BRAND_PREFIXES) for b in brands):
            return Sniffed("video", "mp4", "video/mp4")
        return None
    if len(head) >= 8 and head[4:8] in QT_FIRST_ATOMS:
        return Sniffed("video", "mov", "video/quicktime")
    return None


# ---- storing ---------------------------------------------------------------------------------

def _megabytes(n: int) -> str:
    return f"{n / MB:g} MB"


def _new_path(media_root: Path, extension: str) -> tuple[Path, str]:
    name = secrets.token_urlsafe(18)  # 144 random bits: not guessable, not derived from input
    relative = f"reviews/{name[:2]}/{name}.{extension}"
    full = media_root / relative
    full.parent.mkdir(parents=True, exist_ok=True)
    return full, relative


def _spool(stream: BinaryIO, head: bytes, limit: int, directory: Path) -> Path:
    """Copy the upload to a temporary file, refusing it as soon as it passes `limit` bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            total = len(head)
            while chunk := stream.read(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise MediaRejected(f"is larger than the {_megabytes(limit)} limit")
                out.write(chunk)
        return path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def store_upload(stream: BinaryIO, media_root: Path, limits: MediaLimits) -> StoredMedia:
    """Check, clean and store one upload. Raises MediaRejected with a reason a customer can read
    (completing the sentence "<file name> …"); on any failure nothing is left on disk."""
    head = stream.read(64)
    if not head:
        raise MediaRejected("is empty")
    sniffed = sniff(head)
    if sniffed is None:
        raise MediaRejected(f"is not a supported photo or video; upload {SUPPORTED_TYPES}")
    if sniffed.format == "HEIF" and not HEIC_SUPPORTED:
        raise MediaRejected("is a HEIC photo, which this server cannot read; "
                            "please upload it as JPEG (iPhone: Settings › Camera › Formats › "
                            "Most Compatible)")
    limit = limits.max_photo_bytes if sniffed.kind == "photo" else limits.max_video_bytes
    spooled = _spool(stream, head, limit, media_root / "tmp")
    try:
        if sniffed.kind == "photo":
            return _store_photo(spooled, sniffed, media_root, limits)
        return _store_video(spooled, sniffed, media_root)
    finally:
        spooled.unlink(missing_ok=True)


def remove_stored(media_root: Path, stored: list[StoredMedia]) -> None:
    """Undo stores whose database rows were never committed."""
    for item in stored:
        (media_root / item.path).unlink(missing_ok=True)


# ---- photos ----------------------------------------------------------------------------------

# What each accepted photo format is stored as. HEIC becomes JPEG: browsers cannot show HEIC.
PHOTO_OUTPUT = {
    "JPEG": ("JPEG", "jpg", "image/jpeg"),
    "PNG": ("PNG", "png", "image/png"),
    "WEBP": ("WEBP", "webp", "image/webp"),
    "HEIF": ("JPEG", "jpg", "image/jpeg"),
}


def _decode(path: Path, sniffed: Sniffed, limits: MediaLimits) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow warns, then raises, on images past its own bomb limit; both mean "refuse".
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=[sniffed.format])
            width, height = image.size
            if width * height > limits.max_pixels:
                raise MediaRejected(
                    f"is {width}×{height} pixels, more than the "
                    f"{limits.max_pixels / 1_000_000:g} megapixel limit")
            image.load()
        except MediaRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise MediaRejected(f"has more pixels than the {limits.max_pixels / 1_000_000:g} "
                                "megapixel limit") from exc
        except (OSError, ValueError, SyntaxError, struct.error, EOFError) as exc:
            raise MediaRejected("could not be read as a photo; it may be damaged") from exc
    return image


def _store_photo(path: Path, sniffed: Sniffed, media_root: Path,
                 limits: MediaLimits) -> StoredMedia:
    image = _decode(path, sniffed, limits)
    image = ImageOps.exif_transpose(image)  # keep it upright once the EXIF orientation is gone
    image.thumbnail((limits.max_edge, limits.max_edge))
    out_format, extension, content_type = PHOTO_OUTPUT[sniffed.format]
    options: dict = {}
    if out_format == "JPEG":
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        options = {"quality": 85, "optimize": True}
    elif out_format == "WEBP":
        options = {"quality": 85}
    elif image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA")
    icc = image.info.get("icc_profile")
    if icc:
        options["icc_profile"] = icc  # colour, not identity: the one piece of metadata kept
    full, relative = _new_path(media_root, extension)
    # No exif=, no pnginfo=: the re-encoded file carries no EXIF, GPS, XMP or text chunks.
    image.save(full, out_format, **options)
    return StoredMedia("photo", relative, content_type, full.stat().st_size, *image.size)


# ---- videos ----------------------------------------------------------------------------------

class _BadContainer(Exception):
    pass


def _boxes(f: BinaryIO, start: int, end: int):
    """ISO BMFF boxes (MP4/MOV atoms) between two offsets: (type, offset, header size, size)."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise _BadContainer
        f.seek(pos)
        size, box_type = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise _BadContainer
        if not all(32 <= c < 127 or c == 0xA9 for c in box_type):
            raise _BadContainer
        yield box_type, pos, header, size
        pos += size


# Boxes that only hold metadata (titles, GPS position, device): never needed to play the video.
METADATA_BOXES = {b"udta", b"meta"}


def _blank(f: BinaryIO, offset: int, header: int, size: int) -> None:
    """Turn a box into a `free` box of the same size with zeroed content."""
    f.seek(offset + 4)
    f.write(b"free")
    f.seek(offset + header)
    remaining = size - header
    while remaining:
        step = min(remaining, CHUNK)
        f.write(b"\0" * step)
        remaining -= step


def _clean_iso_media(path: Path) -> None:
    end = path.stat().st_size
    with open(path, "r+b") as f:
        top = list(_boxes(f, 0, end))
        if not any(t == b"moov" for t, *_ in top):
            raise _BadContainer
        for box_type, offset, header, size in top:
            if box_type in METADATA_BOXES:
                _blank(f, offset, header, size)
            if box_type != b"moov":
                continue
            for child, c_off, c_head, c_size in list(_boxes(f, offset + header, offset + size)):
                if child in METADATA_BOXES:
                    _blank(f, c_off, c_head, c_size)
                elif child == b"trak":
                    for sub, s_off, s_head, s_size in list(
                            _boxes(f, c_off + c_head, c_off + c_size)):
                        if sub in METADATA_BOXES:
                            _blank(f, s_off, s_head, s_size)


def _ebml_vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or pos + length > len(data):
        raise _BadContainer
    value = first if keep_marker else first & (0xFF >> length)
    for byte in data[pos + 1:pos + length]:
        value = (value << 8) | byte
    return value, pos + length


def _check_webm(path: Path) -> None:
    """An EBML header whose DocType is `webm`, followed by a Segment."""
    with open(path, "rb") as f:
        data = f.read(4096)
    element, pos = _ebml_vint(data, 0, keep_marker=True)
    size, pos = _ebml_vint(data, pos, keep_marker=False)
    if element != 0x1A45DFA3 or pos + size > len(data):
        raise _BadContainer
    header_end, doc_type = pos + size, b""
    while pos < header_end:
        child, pos = _ebml_vint(data, pos, keep_marker=True)
        child_size, pos = _ebml_vint(data, pos, keep_marker=False)
        if child == 0x4282:
            doc_type = data[pos:pos + child_size]
        pos += child_size
    segment, _ = _ebml_vint(data, header_end, keep_marker=True)
    if doc_type != b"webm" or segment != 0x18538067:
        raise _BadContainer


VIDEO_EXTENSIONS = {"mp4": "mp4", "mov": "mov", "webm": "webm"}


def _store_video(path: Path, sniffed: Sniffed, media_root: Path) -> StoredMedia:
    try:
        if sniffed.format == "webm":
            _check_webm(path)
        else:
            _clean_iso_media(path)
    except (_BadContainer, struct.error, IndexError) as exc:
        raise MediaRejected("could not be read as a video; it may be damaged") from exc
    full, relative = _new_path(media_root, VIDEO_EXTENSIONS[sniffed.format])
    size = path.stat().st_size
    shutil.move(path, full)
    return StoredMedia("video", relative, sniffed.content_type, size)
