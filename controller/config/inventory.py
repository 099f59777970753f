"""The device inventory: devices.yaml loaded into frozen, validated records.

Every mistake in the file is an InventoryError whose message is one line: the file and line,
what is wrong, and the valid choices. To know lines, the file is walked as a YAML node tree
(`yaml.compose`) instead of being loaded into plain dicts.

Values are taken as YAML types them and never coerced: `port: "50051"` is a string and is
rejected. Coercion would hide the loss it causes elsewhere (`jetpack: 6.10` reads as the float
6.1), so the rule is the same everywhere: write the type you mean, quote strings that look
like numbers.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from edgefarm import yaml_nodes as yn
from edgefarm.agent.security import is_loopback

BACKENDS = ("onnxruntime", "litert", "tensorrt", "openvino", "executorch")
EXECUTION_PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider",
                       "TensorrtExecutionProvider", "OpenVINOExecutionProvider")
DELEGATES = ("edgetpu", "gpu")        # "" (or left out) = XNNPACK on the CPU
PRECISIONS = ("fp32", "fp16", "int8")
# Only the Xavier and Orin Jetsons have DLA cores, two at most (Orin NX 8GB has one; the agent
# checks the real count). TensorRT builds DLA engines in FP16 or INT8 only.
DLA_SOCS = ("xavier", "orin")
DLA_CORES = (0, 1)
DLA_PRECISIONS = ("fp16", "int8")
# OpenVINO: its device plugins, performance hints, and the precisions its plugins may lower float layers to.
OPENVINO_DEVICES = ("CPU", "GPU", "NPU")
OPENVINO_HINTS = ("latency", "throughput")
OPENVINO_PRECISIONS = ("fp32", "fp16", "bf16")

LEASE_URL_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")
SECURITY_MODES = ("tls", "token", "plaintext")
DEVICE_KEYS = ("name", "host", "port", "security", "tags", "backends", "backend_options")
REQUIRED_DEVICE_KEYS = ("name", "host", "port", "backends")
OPTION_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "onnxruntime": ("threads", "execution_provider"),
    "litert": ("threads", "delegate", "benchmark_model"),
    "tensorrt": ("precision", "dla_core"),
    "openvino": ("threads", "device", "performance_hint", "precision"),
    "executorch": ("threads",),   # delegation and precision are fixed when the .pte is exported
})
NAME_PATTERN = "[a-z0-9][a-z0-9._-]*"
_NAME = re.compile(NAME_PATTERN)
_HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class InventoryError(yn.ConfigError):
    """devices.yaml is missing or wrong; the message is one line: file:line: what; how to fix."""


class UnknownDeviceError(InventoryError, LookupError):
    """A device name that the inventory does not hold."""


@dataclass(frozen=True)
class BackendSettings:
    """How one device runs one backend; "" / 0 / None mean the runtime's own default."""

    backend: str
    threads: int = 0
    execution_provider: str = ""      # onnxruntime
    delegate: str = ""                # litert: "" = XNNPACK on the CPU
    precision: str = ""               # tensorrt: "" = fp32
    dla_core: int | None = None       # tensorrt on a Jetson: None = the GPU
    benchmark_model: str = ""         # litert: absolute path of a benchmark_model binary on the board (per-op time)
    device: str = ""                  # openvino: CPU, GPU or NPU; "" = CPU
    performance_hint: str = ""        # openvino: latency or throughput; "" = latency


@dataclass(frozen=True)
class Device:
    """One agent the controller can reach, and what it runs."""

    name: str
    host: str
    port: int
    tags: Mapping[str, str] = field(hash=False)
    backends: tuple[str, ...]
    backend_options: Mapping[str, BackendSettings] = field(default_factory=dict, hash=False)
    security: str = ""                # tls | token | plaintext; "" = default_security(host)

    def __post_init__(self) -> None:
        # Read-only copies, so a frozen Device is frozen all the way down.
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))
        object.__setattr__(self, "backends", tuple(self.backends))
        object.__setattr__(self, "backend_options", MappingProxyType(dict(self.backend_options)))
        object.__setattr__(self, "security", self.security or default_security(self.host))

    def __reduce__(self) -> tuple[type[Device], tuple[object, ...]]:
        # MappingProxyType cannot be pickled; rebuild from plain dicts instead.
        return (Device, (self.name, self.host, self.port, dict(self.tags), self.backends,
                         dict(self.backend_options), self.security))

    @property
    def address(self) -> str:
        """host:port as a gRPC target; IPv6 literals go in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def has_tags(self, wanted: Mapping[str, str]) -> bool:
        return all(self.tags.get(key) == value for key, value in wanted.items())

    def settings(self, backend: str) -> BackendSettings:
        """This device's settings for `backend`: those in devices.yaml, else the defaults."""
        if backend not in self.backends:
            raise InventoryError(f"device {self.name!r} has no backend {backend!r}; "
                                 f"its backends: {', '.join(self.backends)}")
        return self.backend_options.get(backend, BackendSettings(backend))


def default_security(host: str) -> str:
    """Plaintext on loopback (nothing else can reach it), mutual TLS anywhere else."""
    return "plaintext" if is_loopback(host) else "tls"


def select_devices(devices: Iterable[Device], tags: Mapping[str, str]) -> list[Device]:
    """The devices carrying every one of `tags` (same key, same value), in their given order."""
    return [device for device in devices if device.has_tags(tags)]


@dataclass(frozen=True)
class Inventory:
    devices: tuple[Device, ...]
    source: str = "<inventory>"       # where it was loaded from, for messages
    pools: Mapping[str, Mapping[str, str]] = field(default_factory=dict)   # name → required tags
    leases: str = ""                  # the farm's shared lease database, if the file declares one
    leases_where: str = ""            # file:line of that declaration, for messages

    def __post_init__(self) -> None:
        object.__setattr__(self, "devices", tuple(self.devices))
        names = self.names()
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise InventoryError(f"{self.source}: duplicate device names: {', '.join(duplicates)}")

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)

    def names(self) -> list[str]:
        return [device.name for device in self.devices]

    def get(self, name: str) -> Device:
        for device in self.devices:
            if device.name == name:
                return device
        raise UnknownDeviceError(f"{self.source}: unknown device {name!r}; "
                                 f"valid names: {', '.join(self.names()) or '(none)'}")

    def select(self, tags: Mapping[str, str]) -> list[Device]:
        return select_devices(self.devices, tags)

    def pool(self, name: str) -> list[Device]:
        if name not in self.pools:
            raise UnknownDeviceError(f"{self.source}: unknown pool {name!r}; "
                                     f"valid pools: {', '.join(sorted(self.pools)) or '(none defined)'}")
        return self.select(self.pools[name])


def load_inventory(path: Path | str) -> Inventory:
    """Read and validate devices.yaml; any problem raises InventoryError naming file and line."""
    source = str(path)
    text = yn.read_text(Path(path), source, "create it (the devices.yaml at the repository root shows the format)",
                        InventoryError)
    ctx = yn.NodeContext(source, error_type=InventoryError)
    top = _top_level(yn.compose(text, source, InventoryError), ctx)
    devices = _read_devices(top, ctx)
    pools = _read_pools(top["pools"].value, ctx, devices) if "pools" in top else {}
    if "leases" not in top:
        return Inventory(devices, source, pools)
    leases = _read_leases(top["leases"].value, ctx)
    return Inventory(devices, source, pools, leases, f"{source}:{yn.line_of(top['leases'].value)}")


# --- the inventory's own structure -------------------------------------------------------------

def _read_devices(top: Mapping[str, yn.Entry], ctx: yn.NodeContext) -> tuple[Device, ...]:
    devices: list[Device] = []
    first_lines: dict[str, int] = {}
    for index, node in enumerate(_device_nodes(top, ctx), start=1):
        device = _read_device(node, ctx, index)
        if device.name in first_lines:
            raise ctx.error(_name_node(node), f"duplicate device name {device.name!r}; first used at line "
                                              f"{first_lines[device.name]}; names must be unique")
        first_lines[device.name] = yn.line_of(_name_node(node))
        devices.append(device)
    return tuple(devices)


def _top_level(root: yaml.Node | None, ctx: yn.NodeContext) -> dict[str, yn.Entry]:
    if root is None:
        raise InventoryError(f"{ctx.source}:1: the file is empty; it needs a top-level 'devices:' list")
    if yn.kind_of(root) != "map":
        raise ctx.error(root, f"the top level must be a mapping holding a 'devices:' list, "
                              f"got {yn.describe(root)}")
    top = yn.entries(root, ctx, "the top level")
    yn.check_keys(top, root, ctx, ("devices", "pools", "leases"))
    if "devices" not in top:
        raise ctx.error(root, "missing the top-level 'devices:' list")
    return top


def _read_pools(node: yaml.Node, ctx: yn.NodeContext, devices: tuple[Device, ...]) -> dict[str, Mapping[str, str]]:
    """pools: {name: {tag: value, ...}}: a pool is every device carrying all its tags."""
    pools: dict[str, Mapping[str, str]] = {}
    for name, entry in yn.entries(node, ctx, "'pools'").items():
        tags = _read_tags(entry.value, ctx.about(f"pool {name!r}"))
        if not select_devices(devices, tags):
            raise ctx.error(entry.key, f"pool {name!r} ({', '.join(f'{k}={v}' for k, v in tags.items())}) "
                                       "matches no device; fix its tags or the devices' tags")
        pools[name] = MappingProxyType(dict(tags))
    return pools


def _read_leases(node: yaml.Node, ctx: yn.NodeContext) -> str:
    """leases: the lease database every controller of this farm must share (sqlite:/// or postgresql://)."""
    url = yn.string(node, ctx, "leases")
    if not url.startswith(LEASE_URL_SCHEMES):
        raise ctx.error(node, f"leases {url!r} is not a lease database URL; e.g. postgresql://user@host/dbname "
                              "(a farm's controllers share it) or sqlite:///path/to/leases.sqlite")
    return url


def _device_nodes(top: Mapping[str, yn.Entry], ctx: yn.NodeContext) -> list[yaml.Node]:
    nodes = yn.sequence(top["devices"].value, ctx, "'devices'", "'- name: ...' entries")
    if not nodes:
        raise ctx.error(top["devices"].value, "'devices' is empty; list at least one device")
    return nodes


def _name_node(device_node: yaml.MappingNode) -> yaml.Node:
    # The last one: merge keys (<<) put merged entries first and the device's own after them.
    return [value for key, value in device_node.value if key.value == "name"][-1]


def _read_device(node: yaml.Node, ctx: yn.NodeContext, index: int) -> Device:
    ctx = ctx.about(_device_subject(node, index))
    entries = yn.entries(node, ctx, "a device")
    yn.check_keys(entries, node, ctx, DEVICE_KEYS, REQUIRED_DEVICE_KEYS)
    name = _read_name(entries["name"].value, ctx)
    host = _read_host(entries["host"].value, ctx)
    port = yn.integer(entries["port"].value, ctx, "port", 1, 65535)
    security = _read_security(entries["security"].value, ctx, host) if "security" in entries else ""
    tags = _read_tags(entries["tags"].value, ctx) if "tags" in entries else {}
    backends = _read_backends(entries["backends"].value, ctx)
    options = entries.get("backend_options")
    settings = _read_backend_options(options.value, ctx, backends, tags) if options else {}
    return Device(name, host, port, tags, backends, settings, security)


def _device_subject(node: yaml.Node, index: int) -> str:
    """How messages call a device: by its name where that is a string, else by its place in the list."""
    if yn.kind_of(node) == "map":
        for key, value in node.value:
            if key.value == "name" and yn.kind_of(value) == "str":
                return f"device {value.value!r}"
    return f"device #{index}"


def _read_name(node: yaml.Node, ctx: yn.NodeContext) -> str:
    name = yn.string(node, ctx, "name")
    if not _NAME.fullmatch(name):
        suggestion = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).lstrip("._-") or "board-01"
        raise ctx.error(node, f"name {name!r} must match {NAME_PATTERN} (lower-case letters, digits, "
                              f"'.', '_', '-'), e.g. {suggestion!r}")
    return name


def _read_host(node: yaml.Node, ctx: yn.NodeContext) -> str:
    host = yn.string(node, ctx, "host")
    if not (_is_ip_address(host) or _is_hostname(host)):
        raise ctx.error(node, f"host {host!r} is not a hostname or IP address; give the bare host "
                              f"(no scheme, no brackets) and the port under 'port'")
    return host


def _read_security(node: yaml.Node, ctx: yn.NodeContext, host: str) -> str:
    security = yn.choice(node, ctx, "security mode", SECURITY_MODES)
    if security == "plaintext" and not is_loopback(host):
        raise ctx.error(node, f"security: plaintext is allowed on loopback only, and host {host!r} is not; "
                              "use tls (mutual TLS, 'edgefarm ca issue' or 'edgefarm provision' installs it) "
                              "or token (the farm token, for a trusted lab network)")
    return security


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_hostname(host: str) -> bool:
    labels = host.split(".")
    # All digits and dots is a mistyped IPv4 address, not a name (no top-level domain is numeric).
    return (len(host) <= 253 and not labels[-1].isdigit()
            and all(_HOSTNAME_LABEL.fullmatch(label) for label in labels))


def _read_tags(node: yaml.Node, ctx: yn.NodeContext) -> dict[str, str]:
    entries = yn.entries(node, ctx, "tags")
    return {key: yn.string(entry.value, ctx, f"tag {key!r}") for key, entry in entries.items()}


def _read_backends(node: yaml.Node, ctx: yn.NodeContext) -> tuple[str, ...]:
    items = yn.sequence(node, ctx, "backends", f"[{BACKENDS[0]}]")
    if not items:
        raise ctx.error(node, f"backends is empty; list one or more of: {', '.join(BACKENDS)}")
    backends: list[str] = []
    for item in items:
        backend = yn.choice(item, ctx, "backend", BACKENDS)
        if backend in backends:
            raise ctx.error(item, f"backend {backend!r} is listed twice in backends")
        backends.append(backend)
    return tuple(backends)


def _read_backend_options(node: yaml.Node, ctx: yn.NodeContext, backends: tuple[str, ...],
                          tags: Mapping[str, str]) -> dict[str, BackendSettings]:
    options: dict[str, BackendSettings] = {}
    for backend, entry in yn.entries(node, ctx, "backend_options").items():
        if backend not in BACKENDS:
            raise ctx.error(entry.key, f"backend_options: unknown backend {backend!r}; "
                                       f"valid backends: {', '.join(BACKENDS)}")
        if backend not in backends:
            raise ctx.error(entry.key, f"backend_options for {backend!r}, which is not in this device's "
                                       f"backends ({', '.join(backends)}); add it to backends or remove "
                                       f"its options")
        options[backend] = _read_settings(entry.value, ctx.about(f"{backend} options"), backend, tags)
    return options


_OPTION_READERS: Mapping[str, Callable[[yaml.Node, yn.NodeContext], object]] = MappingProxyType({
    "threads": lambda node, ctx: yn.integer(node, ctx, "threads", 0),
    "execution_provider": lambda node, ctx: yn.choice(node, ctx, "execution_provider", EXECUTION_PROVIDERS),
    "delegate": lambda node, ctx: _read_delegate(node, ctx),
    "precision": lambda node, ctx: yn.choice(node, ctx, "precision", PRECISIONS),
    "dla_core": lambda node, ctx: yn.integer(node, ctx, "dla_core", DLA_CORES[0], DLA_CORES[-1]),
    "benchmark_model": lambda node, ctx: _read_board_path(node, ctx, "benchmark_model"),
    "device": lambda node, ctx: yn.choice(node, ctx, "device", OPENVINO_DEVICES),
    "performance_hint": lambda node, ctx: yn.choice(node, ctx, "performance_hint", OPENVINO_HINTS),
})
# Where one key means something else for one backend: OpenVINO's precision is what its plugin may lower to.
_BACKEND_READERS: Mapping[tuple[str, str], Callable[[yaml.Node, yn.NodeContext], object]] = MappingProxyType({
    ("openvino", "precision"): lambda node, ctx: yn.choice(node, ctx, "precision", OPENVINO_PRECISIONS),
})


def _read_settings(node: yaml.Node, ctx: yn.NodeContext, backend: str, tags: Mapping[str, str]) -> BackendSettings:
    entries = yn.entries(node, ctx, f"backend_options.{backend}")
    yn.check_keys(entries, node, ctx, OPTION_KEYS[backend])
    values = {key: _BACKEND_READERS.get((backend, key), _OPTION_READERS[key])(entry.value, ctx)
              for key, entry in entries.items()}
    settings = BackendSettings(backend, **values)  # type: ignore[arg-type]  # each reader checked its type
    if settings.dla_core is not None:
        _check_dla(settings, entries["dla_core"].value, ctx, tags)
    return settings


def _read_board_path(node: yaml.Node, ctx: yn.NodeContext, what: str) -> str:
    """A path on the board itself: absolute, since the agent's working directory is not known here."""
    value = yn.string(node, ctx, what)
    if not value.startswith("/"):
        raise ctx.error(node, f"{what} must be an absolute path on the board (e.g. /usr/local/bin/benchmark_model), "
                              f"got {value!r}")
    return value


def _read_delegate(node: yaml.Node, ctx: yn.NodeContext) -> str:
    if yn.kind_of(node) == "str" and node.value == "":
        return ""
    return yn.choice(node, ctx, "delegate", DELEGATES, note=" (leave delegate out for XNNPACK on the CPU)")


def _check_dla(settings: BackendSettings, node: yaml.Node, ctx: yn.NodeContext, tags: Mapping[str, str]) -> None:
    soc = tags.get("soc")
    if soc not in DLA_SOCS:
        raise ctx.error(node, f"dla_core needs a Jetson with DLA cores: tag the device soc: "
                              f"{' or '.join(DLA_SOCS)} (its soc tag is {soc!r})")
    if settings.precision not in DLA_PRECISIONS:
        raise ctx.error(node, f"dla_core needs precision {' or '.join(DLA_PRECISIONS)} (DLA has no fp32), "
                              f"got {settings.precision or 'none (fp32)'!r}")
