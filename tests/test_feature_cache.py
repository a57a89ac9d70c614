"""sweettok.eval.feature_cache: a cache is used only for the videos and settings it was made for."""

import logging
import os

import torch

from sweettok.eval.feature_cache import cache_key, read_cache, write_cache


def videos(tmp_path, count=3):
    paths = []
    for i in range(count):
        path = tmp_path / f"v{i}.mp4"
        path.write_bytes(bytes([i]) * (10 + i))
        paths.append(str(path))
    return paths


def test_a_cache_is_read_back_for_the_same_key(tmp_path):
    paths = videos(tmp_path)
    key = cache_key(paths, resolution=128, num_frames=17)
    features = torch.randn(3, 400)
    write_cache(tmp_path / "cache" / "f.safetensors", {"features": features, "skipped": torch.tensor(0)}, key)
    assert not list((tmp_path / "cache").glob("*.partial"))
    stored = read_cache(tmp_path / "cache" / "f.safetensors", cache_key(paths, num_frames=17, resolution=128))
    assert torch.equal(stored["features"], features) and int(stored["skipped"]) == 0


def test_other_settings_videos_or_a_rewritten_video_refuse_the_cache(tmp_path, caplog):
    paths = videos(tmp_path)
    path = tmp_path / "f.safetensors"
    write_cache(path, {"features": torch.zeros(3, 4)}, cache_key(paths, resolution=128))
    with caplog.at_level(logging.INFO, logger="sweettok.eval.feature_cache"):
        assert read_cache(path, cache_key(paths, resolution=64)) is None
        assert read_cache(path, cache_key(paths[:2], resolution=128)) is None
        assert read_cache(path, cache_key(paths[::-1], resolution=128)) is None
        os.utime(paths[1], ns=(1, 1))  # the same bytes written again: a new modification time
        assert read_cache(path, cache_key(paths, resolution=128)) is None
    messages = [r.getMessage() for r in caplog.records]
    assert any("resolution: 128 -> 64" in m for m in messages)
    assert any("0 new, 1 gone" in m for m in messages)
    assert any("video order changed" in m for m in messages)
    assert any("1 videos rewritten" in m and "v1.mp4" in m for m in messages)


def test_a_missing_keyless_or_broken_file_is_a_miss(tmp_path, caplog):
    from safetensors.torch import save_file

    key = cache_key(videos(tmp_path))
    assert read_cache(tmp_path / "none.safetensors", key) is None
    save_file({"features": torch.zeros(2, 2)}, str(tmp_path / "old.safetensors"))  # written before keys existed
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 7)
    with caplog.at_level(logging.INFO, logger="sweettok.eval.feature_cache"):
        assert read_cache(tmp_path / "old.safetensors", key) is None
        assert read_cache(broken, key) is None
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "records no key" in messages and "unreadable" in messages
