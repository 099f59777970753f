"""The agent's engine cache: key stability and sensitivity, atomic entries, lookup."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgefarm.agent.engine_cache import (
    EngineCache,
    EngineKey,
    artifact_sha256,
    collect_l4t_release,
    key_flags,
    parse_l4t_release,
)

KEY = EngineKey(artifact_sha256="ab" * 32, backend="tensorrt", precision="fp16",
                flags=key_flags({"dla_core": -1, "sparsity": False, "batch_size": 1}),
                runtime_version="10.3.0", gpu_name="Orin", compute_capability="8.7",
                l4t_release="R36.4.3", cpu_model="ARMv8 Processor rev 1 (v8l)")
# Pinned: a changed digest for the same key orphans every engine already built on the boards.
KEY_DIGEST = "eb531bc1498ffdd95a73d082c562aece5a5b87dcad1442aec8ca86cd95a7ddbb"


def _other_value(value: object) -> object:
    if isinstance(value, tuple):
        return value + (("extra", "1"),)
    return f"{value}-changed"


def test_digest_is_pinned_and_independent_of_the_process() -> None:
    code = "from tests.test_engine_cache import KEY; print(KEY.digest())"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                           cwd=Path(__file__).resolve().parent.parent)
    assert KEY.digest() == other.stdout.strip() == KEY_DIGEST


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(EngineKey)])
def test_every_field_changes_the_digest(field: str) -> None:
    changed = dataclasses.replace(KEY, **{field: _other_value(getattr(KEY, field))})
    assert changed.digest() != KEY.digest()


@pytest.mark.parametrize("setting", ["dla_core", "sparsity", "batch_size"])
def test_every_build_flag_changes_the_digest(setting: str) -> None:
    settings = {"dla_core": -1, "sparsity": False, "batch_size": 1}
    settings[setting] = {"dla_core": 0, "sparsity": True, "batch_size": 8}[setting]
    assert dataclasses.replace(KEY, flags=key_flags(settings)).digest() != KEY.digest()


def test_flags_are_canonical_whatever_the_order_given() -> None:
    assert key_flags({"b": 1, "a": True}) == key_flags({"a": True, "b": 1}) == (("a", "true"), ("b", "1"))


def test_lookup_misses_then_finds_what_was_written(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    assert cache.lookup(KEY) is None
    path = cache.write_bytes(KEY, b"serialized engine")
    assert cache.lookup(KEY) == path == cache.path_for(KEY)
    assert path.read_bytes() == b"serialized engine"
    assert path.name == f"tensorrt-{KEY.digest()}.engine"
    assert cache.lookup(dataclasses.replace(KEY, precision="int8")) is None


def test_entry_carries_a_readable_record_of_its_key(tmp_path: Path) -> None:
    path = EngineCache(tmp_path).write_bytes(KEY, b"x")
    record = json.loads(path.with_name(path.name + ".key.json").read_text())
    assert record["gpu_name"] == "Orin" and record["precision"] == "fp16"


def test_a_failed_write_leaves_no_entry_and_no_temp_file(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    with pytest.raises(RuntimeError), cache.staged(KEY) as temp:
        temp.write_bytes(b"half an eng")
        raise RuntimeError("worker killed mid-build")
    assert cache.lookup(KEY) is None
    assert list(tmp_path.iterdir()) == []


def test_the_entry_appears_only_by_rename(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    with cache.staged(KEY) as temp:
        temp.write_bytes(b"engine")
        assert temp.parent == cache.path_for(KEY).parent  # same filesystem: the rename is atomic
        assert cache.lookup(KEY) is None                  # not visible while being written
    assert cache.lookup(KEY) is not None and not temp.exists()


def test_nothing_written_commits_nothing(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    with cache.staged(KEY):
        pass
    assert cache.lookup(KEY) is None


def test_a_rewrite_replaces_the_entry(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    cache.write_bytes(KEY, b"old")
    assert cache.write_bytes(KEY, b"new").read_bytes() == b"new"


def test_evict_removes_entry_and_record(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    cache.write_bytes(KEY, b"corrupt")
    cache.evict(KEY)
    assert cache.lookup(KEY) is None and list(tmp_path.iterdir()) == []


def test_artifact_sha256_trusts_store_names_and_hashes_other_files(tmp_path: Path) -> None:
    named = tmp_path / ("cd" * 32)
    named.write_bytes(b"anything")
    assert artifact_sha256(str(named)) == "cd" * 32
    loose = tmp_path / "model.onnx"
    loose.write_bytes(b"model bytes")
    assert artifact_sha256(str(loose)) == hashlib.sha256(b"model bytes").hexdigest()


@pytest.mark.parametrize(("line", "release"), [
    # Verbatim first lines of /etc/nv_tegra_release (JetPack 5.1.2 on AGX Orin; JetPack 5.0.2).
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
     "DATE: Tue Aug  1 19:57:35 UTC 2023", "R35.4.1"),
    ("# R35 (release), REVISION: 1.0, GCID: 31346300, BOARD: t186ref, EABI: aarch64, "
     "DATE: Thu Aug 25 18:41:45 UTC 2022", "R35.1.0"),
    ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64", "R32.7.1"),
    ("not a release line", ""),
])
def test_l4t_release_is_parsed(line: str, release: str) -> None:
    assert parse_l4t_release(line) == release


def test_l4t_release_is_read_from_etc_and_empty_off_a_jetson(tmp_path: Path) -> None:
    assert collect_l4t_release(str(tmp_path)) == ""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.3, GCID: 38968081\n")
    assert collect_l4t_release(str(tmp_path)) == "R36.4.3"
