"""Uploads: the real type from the content, size and pixel limits, metadata stripped, random names."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from okapp.reviews.media import MB, MediaLimits, MediaRejected, sniff, store_upload
from tests import review_files as files

LIMITS = MediaLimits(max_photo_bytes=2 * MB, max_video_bytes=1 * MB)


def store(tmp_path, data: bytes, limits: MediaLimits = LIMITS):
    return store_upload(io.BytesIO(data), tmp_path, limits)


def stored_files(root):
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("fmt, content_type, out_format", [
    ("JPEG", "image/jpeg", "JPEG"), ("PNG", "image/png", "PNG"),
    ("WEBP", "image/webp", "WEBP"), ("HEIF", "image/jpeg", "JPEG"),
])
def test_photos_are_re_encoded_upright_without_exif_or_gps(tmp_path, fmt, content_type,
                                                             out_format):
    stored = store(tmp_path, files.photo(fmt, size=(640, 480)))

    assert (stored.kind, stored.content_type) == ("photo", content_type)
    path = tmp_path / stored.path
    raw = path.read_bytes()
    assert b"PhoneMaker" not in raw and b"Exif" not in raw
    with Image.open(path) as image:
        assert image.format == out_format
        assert not image.getexif()
        # EXIF said "rotate 90°": applied before the EXIF was dropped, so the photo stays upright.
        assert image.size == (480, 640) == (stored.width, stored.height)
    assert stored.size_bytes == len(raw)
    # A random name, nothing of the customer's file name or its original extension.
    assert path.name.count(".") == 1 and len(path.stem) >= 24
    assert stored_files(tmp_path) == [path]  # the spooled temporary file is gone


def test_large_photos_are_scaled_down(tmp_path):
    stored = store(tmp_path, files.photo("PNG", size=(3000, 1000), gps=False),
                   MediaLimits(max_edge=1200))
    assert (stored.width, stored.height) == (1200, 400)


@pytest.mark.parametrize("brand, content_type", [(b"isom", "video/mp4"),
                                                 (b"qt  ", "video/quicktime")])
def test_videos_keep_their_bytes_but_lose_the_location(tmp_path, brand, content_type):
    data = files.iso_video(brand)
    assert files.GPS_PLACE.encode() in data
    stored = store(tmp_path, data)
    assert (stored.kind, stored.content_type, stored.size_bytes) == ("video", content_type, len(data))
    kept = (tmp_path / stored.path).read_bytes()
    assert files.GPS_PLACE.encode() not in kept and b"\xa9xyz" not in kept
    assert kept.count(b"free") == 3  # moov/udta, moov/meta and trak/udta blanked in place
    assert kept.endswith(b"\x00\x11\x22\x33" * 256)  # the media data is untouched


def test_webm_is_accepted(tmp_path):
    stored = store(tmp_path, files.webm_video())
    assert (stored.kind, stored.content_type) == ("video", "video/webm")


@pytest.mark.parametrize("data, message", [
    (files.renamed_executable(), "is not a supported photo or video"),
    (files.svg_with_script(), "is not a supported photo or video"),
    (b"", "is empty"),
    (files.html_disguised_as_jpeg(), "could not be read as a photo"),
    (files.iso_video()[:-100], "could not be read as a video"),  # truncated: boxes don't add up
    (b"\0\0\0\x18ftypavif\0\0\0\0avifmif1" + b"\0" * 64, "is not a supported photo or video"),
])
def test_hostile_or_broken_files_are_refused_and_nothing_is_kept(tmp_path, data, message):
    with pytest.raises(MediaRejected, match=message):
        store(tmp_path, data)
    assert stored_files(tmp_path) == []


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = files.decompression_bomb()  # 256 MP: past Pillow's own bomb guard too
    assert len(bomb) < 100_000
    with pytest.raises(MediaRejected, match="more pixels than the 50 megapixel limit"):
        store(tmp_path, bomb)
    # Under Pillow's guard but over ours: refused from the header, before any decoding.
    with pytest.raises(MediaRejected, match="is 3000×2000 pixels, more than the 5 megapixel"):
        store(tmp_path, files.photo("PNG", size=(3000, 2000), gps=False),
              MediaLimits(max_pixels=5_000_000))
    assert stored_files(tmp_path) == []


def test_oversized_files_are_refused_while_reading(tmp_path):
    big_photo = files.photo("JPEG") + b"\0" * (2 * MB)
    with pytest.raises(MediaRejected, match="larger than the 2 MB limit"):
        store(tmp_path, big_photo)
    big_video = files.iso_video() + b"\0" * MB
    with pytest.raises(MediaRejected, match="larger than the 1 MB limit"):
        store(tmp_path, big_video)
    assert stored_files(tmp_path) == []


def test_sniffing_ignores_names_and_reads_content():
    assert sniff(files.photo("JPEG")[:64]).content_type == "image/jpeg"
    assert sniff(files.photo("HEIF")[:64]).content_type == "image/heic"
    assert sniff(b"GIF89a" + b"\0" * 40) is None  # not on the list
    assert sniff(b"%PDF-1.7\n") is None
