"""Uploads: every file decoded as a real image, each kind of bad file refused with its own
message, the good files of the same upload kept; zips checked for traversal and bombs;
duplicates found by checksum. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib

from app_helpers import ADMIN, create_project, image_bytes, login, results_by_file, upload, zip_bytes
from PIL import Image

from webapp.db import get_db
from webapp.models import Image as ImageRow


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h pixels and whose data is a few bytes: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def test_good_files_survive_beside_every_kind_of_bad_file(app, admin_client):
    p = create_project(admin_client)
    good_png, good_jpg, good_webp = image_bytes(seed=1), image_bytes(seed=2, fmt="JPEG"), image_bytes(seed=3, fmt="WEBP")
    zipped_good = image_bytes(seed=4)
    bomb_member = b"\0" * (4 * 1024 * 1024)  # compresses ~1000:1
    files = {
        "good.png": good_png,
        "photo.jpeg": good_jpg,
        "really-a-png.jpg": image_bytes(seed=5),  # the extension lies; the content decides
        "pic.webp": good_webp,
        "script.png": b"#!/bin/sh\necho not an image\n",
        "truncated.png": good_png[: len(good_png) // 2],
        "empty.png": b"",
        "anim.gif": _gif(),
        "bomb.png": png_header_only(100_000, 100_000),
        "same-again.png": good_png,
        "batch.zip": zip_bytes({
            "dir/inside.png": zipped_good,
            "../escape.png": image_bytes(seed=6),
            "/etc/abs.png": image_bytes(seed=7),
            "dir\\win.png": image_bytes(seed=8),
            "zeros.png": bomb_member,
            "nested.zip": zip_bytes({"x.png": image_bytes(seed=9)}),
            "__MACOSX/._inside.png": b"junk",
        }),
        "not-a-zip.zip": b"PK\x03\x04 but then garbage",
    }
    resp = upload(admin_client, p["id"], files)
    assert resp.status_code == 201, resp.get_json()
    r = results_by_file(resp)
    added = {name for name, v in r.items() if v["status"] == "added"}
    assert added == {"good.png", "photo.jpeg", "really-a-png.jpg", "pic.webp", "batch.zip/dir/inside.png"}
    msg = {name: v["message"] for name, v in r.items() if v["status"] != "added"}
    assert "not a PNG, JPEG or WebP image" in msg["script.png"]
    assert "corrupt or truncated" in msg["truncated.png"]
    assert msg["empty.png"] == "the file is empty"
    assert "not a PNG, JPEG or WebP image" in msg["anim.gif"]
    assert "decompression bomb" in msg["bomb.png"]
    assert r["same-again.png"]["status"] == "duplicate" and "good.png" in msg["same-again.png"]
    assert "leaves the archive" in msg["batch.zip/../escape.png"]
    assert "absolute" in msg["batch.zip//etc/abs.png"]
    assert "backslash" in msg["batch.zip/dir\\win.png"]
    assert "zip bomb" in msg["batch.zip/zeros.png"] and "compression ratio" in msg["batch.zip/zeros.png"]
    assert "zip inside a zip" in msg["batch.zip/nested.zip"]
    assert "not a readable zip" in msg["not-a-zip.zip"]
    assert not any("__MACOSX" in name for name in r)
    assert resp.get_json()["counts"] == {"added": 5, "duplicate": 1, "rejected": len(r) - 6}

    # The good ones are stored with their decoded format, size and checksum, and served back byte for byte.
    images = {im["filename"]: im for im in admin_client.get(f"/api/projects/{p['id']}/images").get_json()["images"]}
    assert set(images) == added
    assert images["really-a-png.jpg"]["format"] == "png" and images["photo.jpeg"]["format"] == "jpeg"
    assert images["pic.webp"]["format"] == "webp"
    assert (images["good.png"]["width"], images["good.png"]["height"]) == (64, 48)
    for name, data in (("good.png", good_png), ("batch.zip/dir/inside.png", zipped_good), ("pic.webp", good_webp)):
        assert images[name]["checksum"] == hashlib.sha256(data).hexdigest()
        f = admin_client.get(images[name]["urls"]["file"])
        assert f.status_code == 200 and f.data == data
    assert admin_client.get(images["photo.jpeg"]["urls"]["file"]).mimetype == "image/jpeg"
    assert admin_client.get(images["pic.webp"]["urls"]["file"]).mimetype == "image/webp"


def _gif() -> bytes:
    buf = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def test_duplicates_across_uploads_and_within_one(app, admin_client):
    p = create_project(admin_client)
    a = image_bytes(seed=11)
    first = upload(admin_client, p["id"], {"a.png": a})
    iid = first.get_json()["results"][0]["image_id"]
    again = upload(admin_client, p["id"], {"a-copy.png": a, "b.png": image_bytes(seed=12), "b-copy.png": image_bytes(seed=12)})
    assert again.status_code == 201
    r = results_by_file(again)
    assert r["a-copy.png"] == {"file": "a-copy.png", "status": "duplicate", "image_id": iid,
                               "message": f"already in the project as image {iid} (a.png)"}
    assert r["b.png"]["status"] == "added"
    assert r["b-copy.png"]["status"] == "duplicate" and "b.png in this upload" in r["b-copy.png"]["message"]
    only_dupes = upload(admin_client, p["id"], {"a.png": a})
    assert only_dupes.status_code == 200 and only_dupes.get_json()["counts"]["duplicate"] == 1
    # The same file may be in another project.
    q = create_project(admin_client, "Q")
    assert upload(admin_client, q["id"], {"a.png": a}).status_code == 201
    with get_db(app).session() as s:
        assert s.query(ImageRow).count() == 3


def test_limits_from_the_config(make_app, users):
    app = make_app(MAX_IMAGE_PIXELS=10_000, MAX_IMAGE_BYTES=60_000, MAX_ZIP_MEMBERS=3, MAX_ZIP_TOTAL_BYTES=10**9)
    c = login(app.test_client(), *ADMIN)  # the `users` fixture's accounts, same database
    p = create_project(c)
    buf = io.BytesIO()
    Image.new("RGB", (200, 100), "teal").save(buf, format="PNG")
    big_pixels = buf.getvalue()  # 20,000 pixels in a few hundred bytes
    big_bytes = image_bytes(100, 100, seed=22)  # 10,000 pixels, ~30 KB -> fine
    noisy = image_bytes(150, 150, seed=23)  # 22,500 pixels and ~68 KB
    resp = upload(c, p["id"], {"wide.png": big_pixels, "ok.png": big_bytes, "noisy.png": noisy,
                               "many.zip": zip_bytes({f"{i}.png": image_bytes(8, 8, seed=30 + i) for i in range(4)})})
    r = results_by_file(resp)
    assert r["ok.png"]["status"] == "added"
    assert "20,000 pixels; the limit is 10,000 pixels" in r["wide.png"]["message"]
    assert "decompression bomb" in r["wide.png"]["message"]
    assert r["noisy.png"]["message"] == "the file is larger than the limit of 58.6 KiB"
    assert "4 members; the limit is 3" in r["many.zip"]["message"]


def test_zip_member_over_the_byte_limit_and_total(make_app, users):
    app = make_app(MAX_IMAGE_BYTES=50_000, MAX_ZIP_TOTAL_BYTES=30_000)
    c = login(app.test_client(), *ADMIN)
    p = create_project(c)
    members = {"a.png": image_bytes(64, 64, seed=41), "b.png": image_bytes(64, 64, seed=42)}  # ~12 KB each
    members["big.png"] = image_bytes(160, 160, seed=43)  # ~77 KB
    stored = zip_bytes(members, compression=zipfile.ZIP_STORED)
    r = results_by_file(upload(c, p["id"], {"z.zip": stored}))
    assert r["z.zip/a.png"]["status"] == "added" and r["z.zip/b.png"]["status"] == "added"
    assert "uncompressed; the limit is 48.8 KiB" in r["z.zip/big.png"]["message"]
    more = zip_bytes({f"{i}.png": image_bytes(64, 64, seed=50 + i) for i in range(4)}, compression=zipfile.ZIP_STORED)
    r = results_by_file(upload(c, p["id"], {"more.zip": more}))
    statuses = [r[f"more.zip/{i}.png"]["status"] for i in range(4)]
    assert statuses[:2] == ["added", "added"] and statuses[2:] == ["rejected", "rejected"]
    assert "add up to more than" in r["more.zip/3.png"]["message"]


def test_all_bad_upload_is_422_and_no_files_is_400(app, admin_client):
    p = create_project(admin_client)
    resp = upload(admin_client, p["id"], {"x.png": b"nope"})
    assert resp.status_code == 422
    body = resp.get_json()
    assert body["error"].startswith("no image was added: x.png: not a PNG") and body["counts"]["rejected"] == 1
    resp = admin_client.post(f"/api/projects/{p['id']}/images", data={}, content_type="multipart/form-data")
    assert resp.status_code == 400 and "no files" in resp.get_json()["error"]
    assert upload(admin_client, 9999, {"a.png": image_bytes()}).status_code == 404


def test_request_over_max_content_length_is_413_json(make_app, users):
    app = make_app(MAX_CONTENT_LENGTH=20_000)
    c = login(app.test_client(), *ADMIN)
    p = create_project(c)
    resp = upload(c, p["id"], {"big.png": image_bytes(120, 120, seed=5)})
    assert resp.status_code == 413 and "too large" in resp.get_json()["error"]


def test_exif_orientation_swaps_width_and_height(app, admin_client):
    p = create_project(admin_client)
    im = Image.fromarray(image_bytes_array(40, 20))
    exif = im.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: shown as 20 wide, 40 high
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes())
    resp = upload(admin_client, p["id"], {"rot.jpg": buf.getvalue()})
    iid = resp.get_json()["results"][0]["image_id"]
    meta = admin_client.get(f"/api/images/{iid}").get_json()["image"]
    assert (meta["width"], meta["height"]) == (20, 40)


def image_bytes_array(w, h):
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_zip_member_without_a_name_is_refused_not_a_500(app, admin_client):
    """Found by the fuzz pass: a central directory entry with an empty file name (zipfile's
    ZipInfo.is_dir() raises IndexError on it). The good image beside it is kept."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x", b"tiny")
        zf.writestr("good.png", image_bytes(seed=7))
    raw = bytearray(buf.getvalue())
    cd = raw.index(b"PK\x01\x02")  # the first central directory entry: name length 1 -> 0
    assert raw[cd + 28:cd + 30] == b"\x01\x00"
    raw[cd + 28:cd + 30] = b"\x00\x00"
    del raw[cd + 46]  # its one-byte name
    eocd = raw.index(b"PK\x05\x06")
    size = struct.unpack("<I", raw[eocd + 12:eocd + 16])[0]
    raw[eocd + 12:eocd + 16] = struct.pack("<I", size - 1)
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        assert zf.infolist()[0].filename == ""
    p = create_project(admin_client)
    resp = upload(admin_client, p["id"], {"odd.zip": bytes(raw)})
    assert resp.status_code == 201, resp.get_json()
    res = results_by_file(resp)
    assert "the member has no name" in res["odd.zip/(unnamed member)"]["message"]
    assert res["odd.zip/good.png"]["status"] == "added"
