"""Torch hub cache files: the cache answers first, a missing file is downloaded (hash-checked), a failed
download is None and leaves nothing behind. The network is mocked at torch.hub.download_url_to_file."""

from __future__ import annotations

import socket
import urllib.error

import torch

from sweettok.hub_weights import DOWNLOAD_TIMEOUT_S, fetch_hub_checkpoint, hub_checkpoint_path

URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


def test_a_cached_file_is_used_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir()
    path.write_bytes(b"weights")

    def refuse(*args, **kwargs):
        raise AssertionError("downloaded although the file is cached")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    assert hub_checkpoint_path(URL) == path and fetch_hub_checkpoint(URL) == path


def test_a_missing_file_is_downloaded_into_the_cache_with_its_hash_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix, socket.getdefaulttimeout()))
        open(dst, "wb").write(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    before = socket.getdefaulttimeout()
    path = fetch_hub_checkpoint(URL)
    assert path == tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth" and path.read_bytes() == b"weights"
    assert calls == [(URL, str(path), "7be5be79", DOWNLOAD_TIMEOUT_S)]  # a silent firewall cannot hang it
    assert socket.getdefaulttimeout() == before


def test_a_failed_download_is_none_and_says_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    assert fetch_hub_checkpoint(URL) is None
    assert "could not download " + URL in caplog.text and "Name or service not known" in caplog.text
    assert not list((tmp_path / "checkpoints").iterdir())

    def bad_hash(url, dst, hash_prefix=None, progress=True):
        raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got "0000")')

    monkeypatch.setattr(torch.hub, "download_url_to_file", bad_hash)
    assert fetch_hub_checkpoint(URL) is None and "invalid hash value" in caplog.text
