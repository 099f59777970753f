"""Built engines kept on the agent, so a re-run of the same job builds nothing (benchmark P3).

An entry is named by the digest of an EngineKey: everything that makes a built engine valid
on this board (the artifact, the backend and its build flags, the runtime version, the GPU,
the L4T release). Entries appear atomically (temp file + rename): a worker killed mid-build
leaves no half-written engine behind for the next job to load.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Mapping, Tuple

from edgefarm.agent.digest import sha256_file

# Bump when the digest's input changes shape: old entries then simply stop matching.
KEY_SCHEMA = "edgefarm-engine-key/1"
_SUFFIXES = {"onnxruntime": ".onnx", "tensorrt": ".engine"}
_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")
# First line of /etc/nv_tegra_release, e.g. "# R35 (release), REVISION: 4.1, GCID: ..." = L4T R35.4.1.
_L4T_RELEASE = re.compile(r"#\s*R(\d+)\s*\([^)]*\),\s*REVISION:\s*([\d.]+)")

Flags = Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class EngineKey:
    """What a built engine depends on; two jobs share an engine only when every field matches."""

    artifact_sha256: str
    backend: str                    # registry name: onnxruntime, tensorrt
    precision: str = ""             # fp32 / fp16 / int8; "" where the backend builds at the model's own
    flags: Flags = ()               # other build settings as sorted (name, value) pairs: see key_flags()
    runtime_version: str = ""
    gpu_name: str = ""
    compute_capability: str = ""    # "8.7"; an engine built for one SM does not load on another
    l4t_release: str = ""           # "R35.4.1" on a Jetson: JetPack upgrades change TensorRT/CUDA builds
    cpu_model: str = ""             # ONNX Runtime's CPU layout optimizations depend on the ISA

    def digest(self) -> str:
        """sha256 over a canonical JSON of the fields: the same on every Python, platform and run."""
        text = json.dumps([KEY_SCHEMA, asdict(self)], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def key_flags(settings: Mapping[str, object]) -> Flags:
    """Build settings in a canonical form: sorted by name, values as JSON text (True -> "true")."""
    return tuple((name, json.dumps(value, sort_keys=True)) for name, value in sorted(settings.items()))


class EngineCache:
    """A folder of built engines, one file (or, for runtimes that keep their own files, one folder) per key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, key: EngineKey) -> Path:
        return self.root / f"{key.backend}-{key.digest()}{_SUFFIXES.get(key.backend, '.bin')}"

    def dir_for(self, key: EngineKey) -> Path:
        """A folder for a runtime that names its own cache files (ONNX Runtime's TensorRT/OpenVINO EPs)."""
        return self.root / f"{key.backend}-{key.digest()}.d"

    def lookup(self, key: EngineKey) -> Path | None:
        path = self.path_for(key)
        return path if path.is_file() else None

    def write_bytes(self, key: EngineKey, data: bytes) -> Path:
        with self.staged(key) as temp:
            temp.write_bytes(data)
        return self.path_for(key)

    @contextmanager
    def staged(self, key: EngineKey) -> Iterator[Path]:
        """Yield a temp path to write the entry to. What the block wrote there becomes the entry when
        the block succeeds; an exception, or nothing written, leaves the cache as it was."""
        final = self.path_for(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            yield temp
            if temp.exists():
                _fsync(temp)  # boards get power-cycled: the data must be on disk before the name is
                os.replace(temp, final)
                _write_key_record(key, final)
        finally:
            if temp.exists():
                temp.unlink()

    def evict(self, key: EngineKey) -> None:
        """Drop an entry the runtime refused to load (corrupt, or built by a build it no longer accepts)."""
        for path in (self.path_for(key), _key_record_path(self.path_for(key))):
            if path.exists():
                path.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _key_record_path(entry: Path) -> Path:
    return entry.with_name(entry.name + ".key.json")


def _write_key_record(key: EngineKey, entry: Path) -> None:
    """A readable record of what the entry was built from, for whoever inspects the folder."""
    record = _key_record_path(entry)
    temp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(asdict(key), indent=1, sort_keys=True))
    os.replace(temp, record)


def artifact_sha256(path: str) -> str:
    """The artifact's sha256: its file name in the agent's store (verified on upload), else hashed here."""
    name = os.path.basename(path)
    if _SHA256_NAME.match(name):
        return name
    return sha256_file(path)


def parse_l4t_release(text: str) -> str:
    """"# R35 (release), REVISION: 4.1, ..." -> "R35.4.1"; "" when the text is not an L4T release line."""
    match = _L4T_RELEASE.search(text)
    return f"R{match.group(1)}.{match.group(2)}" if match else ""


def collect_l4t_release(root: str = "/") -> str:
    """The Jetson's L4T release from /etc/nv_tegra_release; "" off a Jetson."""
    try:
        with open(os.path.join(root, "etc/nv_tegra_release"), errors="replace") as file:
            return parse_l4t_release(file.readline())
    except OSError:
        return ""
