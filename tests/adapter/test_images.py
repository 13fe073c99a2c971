"""The image fetcher against real HTTP servers on 127.0.0.1 and real files: hosts, redirects,
credentials, local roots, size limits and the transient/permanent split."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
import zlib

import numpy as np
import pytest

from clicksmith.labelstudio.client import LabelStudioError
from clicksmith.labelstudio.images import MAX_REDIRECTS, ImageFetcher, load_task_image
from clicksmith.settings import load_settings
from tests.adapter.fakehttp import Answer, png, png_rgb

KEY = "legacy-key-123"


def fetcher(ls_url: str = "", key: str = KEY, **overrides) -> ImageFetcher:
    return ImageFetcher(load_settings(env={}, label_studio_url=ls_url,
                                      label_studio_api_key=key, **overrides))


def refusal(call, status: int = 400, transient: bool = False, *words: str) -> str:
    with pytest.raises(LabelStudioError) as info:
        call()
    exc = info.value
    assert (exc.status, exc.transient) == (status, transient), (exc.status, exc.transient, exc)
    for word in words:
        assert word.lower() in str(exc).lower(), str(exc)
    return str(exc)


# --- hosts and redirects -------------------------------------------------------------------


def test_only_the_label_studio_origin_and_listed_hosts_are_contacted(ls, other):
    url = ls.image("/data/upload/1/a.png")
    rgb = fetcher(ls.url).load("/data/upload/1/a.png")
    assert np.array_equal(rgb, png_rgb())
    assert np.array_equal(fetcher(ls.url).load(url), png_rgb())  # the absolute form too
    assert np.array_equal(fetcher(ls.url).load("upload/1/a.png"), png_rgb())  # LS's stored form
    assert ls.paths() == ["/data/upload/1/a.png"] * 3

    elsewhere = other.image("/b.png")
    # same machine, another port: another origin, refused without a request
    refusal(lambda: fetcher(ls.url).load(elsewhere), 400, False, "refusing",
            f"127.0.0.1:{other.port}", "ALLOWED_IMAGE_HOSTS")
    refusal(lambda: fetcher(ls.url).load("http://169.254.169.254/latest/meta-data"), 400,
            False, "refusing", "169.254.169.254")
    refusal(lambda: fetcher("").load(url), 400, False, "refusing")  # no LS configured
    assert other.seen == []
    # listed: host:port allows that port, a bare host any port
    for allowed in (f"127.0.0.1:{other.port}", "127.0.0.1"):
        assert np.array_equal(fetcher(ls.url, allowed_image_hosts=allowed).load(elsewhere),
                              png_rgb())
    refusal(lambda: fetcher(ls.url, allowed_image_hosts="127.0.0.1:1").load(elsewhere))
    assert len(other.seen) == 2


def test_label_studio_paths_need_label_studio():
    refusal(lambda: fetcher("").load("/data/upload/1/a.png"), 400, False, "LABEL_STUDIO_URL")
    refusal(lambda: fetcher("").load("ftp://127.0.0.1/a.png"), 400, False, "neither")


def test_a_redirect_to_another_host_or_port_is_refused(ls, other):
    target = other.image("/b.png")
    ls.redirect("/data/upload/1/a.png", target)
    refusal(lambda: fetcher(ls.url).load("/data/upload/1/a.png"), 400, False, "refusing",
            "redirect", f"127.0.0.1:{other.port}")
    ls.redirect("/data/upload/1/c.png", f"http://localhost:{ls.port}/data/upload/1/d.png")
    refusal(lambda: fetcher(ls.url).load("/data/upload/1/c.png"), 400, False, "localhost")
    assert other.seen == []
    assert ls.paths() == ["/data/upload/1/a.png", "/data/upload/1/c.png"]


def test_a_redirect_on_the_label_studio_host_is_followed_with_the_key(ls):
    ls.redirect("/data/upload/1/a.png", "/storage-data/uploaded/?filepath=upload/1/a.png")
    ls.image("/storage-data/uploaded/?filepath=upload/1/a.png")
    assert np.array_equal(fetcher(ls.url).load("/data/upload/1/a.png"), png_rgb())
    assert [(s.path, s.auth) for s in ls.seen] == [
        ("/data/upload/1/a.png", f"Token {KEY}"),
        ("/storage-data/uploaded/?filepath=upload/1/a.png", f"Token {KEY}"),
    ]


def test_the_key_goes_only_to_label_studio(ls, other):
    target = other.image("/b.png")
    ls.redirect("/data/upload/1/a.png", target, status=303)
    allow = f"127.0.0.1:{other.port}"
    assert np.array_equal(fetcher(ls.url, allowed_image_hosts=allow).load(
        "/data/upload/1/a.png"), png_rgb())
    assert [s.auth for s in ls.seen] == [f"Token {KEY}"]
    assert [(s.path, s.auth) for s in other.seen] == [("/b.png", None)]
    # an allowed host redirecting into Label Studio does not get our key sent there
    other.redirect("/to-ls.png", ls.image("/data/upload/1/x.png"))
    fetcher(ls.url, allowed_image_hosts=allow).load(f"{other.url}/to-ls.png")
    assert (ls.seen[-1].path, ls.seen[-1].auth) == ("/data/upload/1/x.png", None)


def test_a_redirect_loop_is_bounded(ls):
    ls.redirect("/data/upload/loop.png", "/data/upload/loop.png")
    refusal(lambda: fetcher(ls.url).load("/data/upload/loop.png"), 502, False, "redirects")
    assert len(ls.seen) == MAX_REDIRECTS + 1


def test_cloud_uris_are_presigned_by_label_studio(ls, other):
    uri = "s3://bucket/folder/a.png"
    presign = f"/tasks/7/presign/?fileuri={base64.urlsafe_b64encode(uri.encode()).decode()}"
    ls.redirect(presign, other.image("/bucket/folder/a.png?X-Amz-Signature=abc"), status=303)
    allow = f"127.0.0.1:{other.port}"
    rgb = fetcher(ls.url, allowed_image_hosts=allow).load(uri, task_id=7)
    assert np.array_equal(rgb, png_rgb())
    assert [(s.path, s.auth) for s in ls.seen] == [(presign, f"Token {KEY}")]
    assert [(s.path, s.auth) for s in other.seen] == [
        ("/bucket/folder/a.png?X-Amz-Signature=abc", None)]
    # the presigned host is checked like any other
    refusal(lambda: fetcher(ls.url).load(uri, task_id=7), 400, False, "refusing")
    assert len(other.seen) == 1
    refusal(lambda: fetcher(ls.url).load(uri), 400, False, "task id")
    # a task's own id is used
    task = {"id": 7, "data": {"image": uri}}

    class Cfg:
        image_key = "image"

    settings = load_settings(env={}, label_studio_url=ls.url, label_studio_api_key=KEY,
                             allowed_image_hosts=allow)
    assert np.array_equal(load_task_image(settings, task, Cfg()), png_rgb())


# --- both kinds of token -------------------------------------------------------------------


def test_a_legacy_token_is_sent_as_token(ls):
    ls.image("/data/upload/1/a.png")
    fetcher(ls.url, key="abc123").load("/data/upload/1/a.png")
    assert [(s.method, s.auth) for s in ls.seen] == [("GET", "Token abc123")]


def test_a_personal_access_token_is_exchanged_once(ls):
    jwt = pytest.importorskip("jwt")
    pat = jwt.encode({"token_type": "refresh", "exp": int(time.time()) + 3600}, "k" * 32)
    access = jwt.encode({"token_type": "access", "exp": int(time.time()) + 300}, "k" * 32)
    ls.json("/api/token/refresh/", {"access": access})
    ls.image("/data/upload/1/a.png")
    fetcher(ls.url, key=pat).load("/data/upload/1/a.png")
    fetcher(ls.url, key=pat).load("/data/upload/1/a.png")  # a new fetcher, the same token
    assert [(s.method, s.path, s.auth) for s in ls.seen] == [
        ("POST", "/api/token/refresh/", None),
        ("GET", "/data/upload/1/a.png", f"Bearer {access}"),
        ("GET", "/data/upload/1/a.png", f"Bearer {access}"),
    ]
    assert json.loads(ls.seen[0].body) == {"refresh": pat}


def test_a_refused_personal_access_token_is_a_permanent_502(ls):
    jwt = pytest.importorskip("jwt")
    pat = jwt.encode({"token_type": "refresh", "exp": int(time.time()) + 3600}, "j" * 32)
    ls.json("/api/token/refresh/", {"detail": "Token is invalid"}, status=401)
    ls.image("/data/upload/1/a.png")
    refusal(lambda: fetcher(ls.url, key=pat).load("/data/upload/1/a.png"), 502, False,
            "LABEL_STUDIO_API_KEY")
    assert ls.paths() == ["/api/token/refresh/"]


# --- transient and permanent failures ------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_transient_and_permanent_failures(ls):
    f = fetcher(ls.url)
    ls.routes["/data/upload/busy.png"] = Answer(503, b"restarting")
    refusal(lambda: f.load("/data/upload/busy.png"), 502, True, "503")
    ls.routes["/data/upload/slow-down.png"] = Answer(429, b"")
    refusal(lambda: f.load("/data/upload/slow-down.png"), 502, True)
    refusal(lambda: f.load("/data/upload/missing.png"), 400, False, "404")
    ls.routes["/data/upload/secret.png"] = Answer(403, b"")
    refusal(lambda: f.load("/data/upload/secret.png"), 502, False, "LABEL_STUDIO_API_KEY")
    ls.routes["/data/upload/junk.png"] = Answer(200, b"this is not an image")
    refusal(lambda: f.load("/data/upload/junk.png"), 400, False, "not a readable image")
    port = closed_port()
    down = fetcher(f"http://127.0.0.1:{port}")
    refusal(lambda: down.load("/data/upload/1/a.png"), 502, True, "could not fetch")


def test_unreachable_hosts_look_alike_and_malformed_urls_are_refused(ls):
    """A closed port and a listening non-HTTP port of an allowed host give the same message (it
    would otherwise map which ports are open); a URL urlparse cannot read is a 400, not a 500."""
    closed = closed_port()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        messages = []
        for port in (closed, silent.getsockname()[1]):
            f = ImageFetcher(load_settings(env={}, allowed_image_hosts="127.0.0.1"), timeout=1.0)
            url = f"http://127.0.0.1:{port}/a.png"
            with pytest.raises(LabelStudioError) as info:
                f.load(url)
            messages.append(str(info.value).replace(str(port), "PORT"))
        assert messages[0] == messages[1]
    finally:
        silent.close()
    f = fetcher(ls.url)
    for bad in (f"http://[127.0.0.1]:{closed}/a.png", "http://[::1/a.png"):
        refusal(lambda bad=bad: f.load(bad), 400, False, "not a valid URL")


# --- local files ---------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    """root/ (allowed) holding in.png and a symlink out.png -> ../outside/secret.png."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "in.png").write_bytes(png())
    (outside / "secret.png").write_bytes(png())
    (root / "out.png").symlink_to(outside / "secret.png")
    (root / "sub").mkdir()
    (root / "sub" / "alias.png").symlink_to(root / "in.png")
    return root, outside


def test_local_files_only_under_the_configured_roots(tree):
    root, outside = tree
    f = fetcher(local_image_roots=f" {root} ,/nonexistent-root")
    assert np.array_equal(f.load(str(root / "in.png")), png_rgb())
    assert np.array_equal(f.load(f"file://{root}/in.png"), png_rgb())
    assert np.array_equal(f.load(str(root / "sub" / "alias.png")), png_rgb())  # stays inside
    for escape in (str(outside / "secret.png"),                 # plainly outside
                   f"{root}/../outside/secret.png",             # `..` out of the root
                   f"{root}/sub/../../outside/secret.png",
                   str(root / "out.png"),                       # a symlink out of the root
                   f"file://{root}/out.png",
                   "file:///etc/passwd"):
        refusal(lambda u=escape: f.load(u), 400, False, "refusing", "LOCAL_IMAGE_ROOTS")
    refusal(lambda: f.load(str(root / "gone.png")), 400, False, "no such file", "gone.png")
    refusal(lambda: f.load("in.png"), 400, False, "absolute")
    refusal(lambda: f.load("file://otherhost/etc/passwd"), 400, False, "local file")


def test_no_local_files_without_roots(tree):
    root, _ = tree
    refusal(lambda: fetcher().load(str(root / "in.png")), 400, False, "LOCAL_IMAGE_ROOTS")
    refusal(lambda: fetcher().load(f"file://{root}/in.png"), 400, False, "LOCAL_IMAGE_ROOTS")


# --- size limits ---------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says width x height, followed by pixel data that is not there: any
    attempt to decode it fails, so a 413 proves the limit was read from the header alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x78\x9c\x03")


def test_the_pixel_limit_is_read_from_the_header_before_decoding(tmp_path, ls):
    fake = tmp_path / "huge.png"
    fake.write_bytes(png_header_only(5000, 4000))
    f = fetcher(ls.url, local_image_roots=str(tmp_path), max_image_pixels=1_000_000)
    refusal(lambda: f.load(str(fake)), 413, False, "5000x4000", "20000000", "MAX_IMAGE_PIXELS")
    # the same bytes under the limit reach the decoder, which cannot decode them
    roomy = fetcher(local_image_roots=str(tmp_path), max_image_pixels=30_000_000)
    refusal(lambda: roomy.load(str(fake)), 400, False, "cannot be decoded")
    # far over PIL's own bomb limit, and over HTTP
    ls.image("/data/upload/bomb.png", png_header_only(100_000, 100_000))
    refusal(lambda: f.load("/data/upload/bomb.png"), 413, False, "pixel limit")
    # a real image over the limit
    small = fetcher(ls.url, max_image_pixels=100)
    ls.image("/data/upload/1/a.png")
    refusal(lambda: small.load("/data/upload/1/a.png"), 413, False, "768")


def test_a_download_stops_at_the_byte_bound(ls):
    f = fetcher(ls.url, max_image_pixels=1)  # bound: 8 bytes + 1 MiB
    ls.routes["/data/upload/big.png"] = Answer(200, os.urandom((1 << 20) + 100))
    refusal(lambda: f.load("/data/upload/big.png"), 413, False, "bytes")
