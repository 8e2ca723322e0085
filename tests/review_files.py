"""Real files, and hostile ones, for the review upload tests: built here so nothing binary is
committed. Photos carry GPS EXIF so the tests can prove it is stripped."""

from __future__ import annotations

import io
import struct

from PIL import Image

GPS_PLACE = "+48.8584+002.2945/"  # the Eiffel Tower, in ISO 6709, as phones write it in videos


def _exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 30.0)
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    return exif


def photo(fmt: str = "JPEG", size: tuple[int, int] = (640, 480), gps: bool = True) -> bytes:
    image = Image.new("RGB", size, (200, 60, 40))
    image.paste((30, 90, 200), (0, 0, size[0] // 2, size[1] // 4))  # something to look at
    out = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    options = {"exif": _exif_with_gps().tobytes()} if gps else {}
    image.save(out, fmt, **options)
    return out.getvalue()


def decompression_bomb() -> bytes:
    """A 30 KB PNG that decodes to 256 million pixels."""
    out = io.BytesIO()
    Image.new("1", (16000, 16000)).save(out, "PNG", optimize=True)
    return out.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, payload: bytes) -> bytes:
    return _box(kind, b"\0\0\0\0" + payload)


def iso_video(brand: bytes = b"isom") -> bytes:
    """An MP4 (or MOV with brand `qt  `) laid out as phones write them, GPS included."""
    location = _box(b"\xa9xyz", struct.pack(">HH", len(GPS_PLACE), 0) + GPS_PLACE.encode())
    keys = _full_box(b"keys", struct.pack(">I", 1) + _box(
        b"mdta", b"com.apple.quicktime.location.ISO6709"))
    ilst = _box(b"ilst", _box(struct.pack(">I", 1), _box(b"data", b"\0\0\0\1\0\0\0\0"
                                                        + GPS_PLACE.encode())))
    moov = _box(b"moov", _full_box(b"mvhd", b"\0" * 96)
                + _box(b"trak", _full_box(b"tkhd", b"\0" * 80) + _box(b"udta", location))
                + _box(b"udta", location)
                + _full_box(b"meta", _full_box(b"hdlr", b"\0" * 20) + keys + ilst))
    ftyp = _box(b"ftyp", brand + b"\0\0\2\0" + brand + b"mp41")
    return ftyp + moov + _box(b"mdat", b"\x00\x11\x22\x33" * 256)


def webm_video() -> bytes:
    def element(element_id: bytes, payload: bytes) -> bytes:
        return element_id + bytes([0x80 | len(payload)]) + payload

    header = element(b"\x1a\x45\xdf\xa3", element(b"\x42\x86", b"\x01")
                     + element(b"\x42\x82", b"webm") + element(b"\x42\x87", b"\x04"))
    segment = b"\x18\x53\x80\x67" + b"\x01\xff\xff\xff\xff\xff\xff\xff" + b"\x15\x49\xa9\x66\x80"
    return header + segment


def renamed_executable() -> bytes:
    return b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x00" * 200


def svg_with_script() -> bytes:
    return (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">'
            b'<script>alert(document.cookie)</script><rect width="10" height="10"/></svg>')


def html_disguised_as_jpeg() -> bytes:
    """The first three JPEG bytes, then an HTML page: passes a naive magic check."""
    return b"\xff\xd8\xff<html><script>alert(1)</script></html>" + b" " * 100
