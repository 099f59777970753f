"""controller/inventory.py: the shipped devices.yaml, every error message with its line, tag matching."""
from __future__ import annotations

import dataclasses
import ipaddress
import pickle
from pathlib import Path

import pytest

from edgefarm.controller.config.inventory import (
    BackendSettings,
    Device,
    Inventory,
    InventoryError,
    UnknownDeviceError,
    load_inventory,
    select_devices,
)

REPO = Path(__file__).resolve().parent.parent

# Line numbers in the error cases below count from this snippet:
#   1 devices, 2 name, 3 host, 4 port, 5 tags, 6 soc, 7 backends, 8 backend_options, 9 litert, 10 threads
VALID = """\
devices:
  - name: cam-01
    host: 192.0.2.1
    port: 50051
    tags:
      soc: orin
    backends: [onnxruntime, litert]
    backend_options:
      litert:
        threads: 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert "\n" not in message
    return message.replace(str(path), "devices.yaml")


def edit(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new, 1)


def test_valid_snippet_loads(tmp_path: Path) -> None:
    device = load_inventory(write(tmp_path, VALID)).get("cam-01")
    assert device == Device("cam-01", "192.0.2.1", 50051, {"soc": "orin"}, ("onnxruntime", "litert"),
                            {"litert": BackendSettings("litert", threads=2)})
    assert device.address == "192.0.2.1:50051"


def test_openvino_and_executorch_options_load(tmp_path: Path) -> None:
    text = (edit("[onnxruntime, litert]", "[openvino, executorch, litert]")
            + "      openvino: {device: GPU, performance_hint: throughput, threads: 4, precision: bf16}\n"
            + "      executorch: {threads: 2}\n")
    device = load_inventory(write(tmp_path, text)).get("cam-01")
    assert device.backends == ("openvino", "executorch", "litert")
    assert device.settings("openvino") == BackendSettings("openvino", threads=4, precision="bf16", device="GPU",
                                                          performance_hint="throughput")
    assert device.settings("executorch") == BackendSettings("executorch", threads=2)


# --- the shipped file --------------------------------------------------------------------------

def test_shipped_devices_yaml_has_the_four_devices() -> None:
    inventory = load_inventory(REPO / "devices.yaml")
    assert inventory.names() == ["jetson-orin-01", "rpi5-coral-01", "x86-bench-01", "local"]
    assert inventory.get("jetson-orin-01").backends == ("tensorrt", "onnxruntime")
    assert inventory.get("jetson-orin-01").settings("tensorrt").precision == "fp16"
    assert inventory.get("rpi5-coral-01").settings("litert").delegate == "edgetpu"
    assert inventory.get("x86-bench-01").backends == ("onnxruntime", "openvino")
    assert inventory.get("x86-bench-01").settings("openvino").performance_hint == "latency"
    local = inventory.get("local")
    assert (local.address, local.backends) == ("127.0.0.1:50051", ("onnxruntime", "litert"))


def test_shipped_examples_use_documentation_addresses() -> None:
    test_net_1 = ipaddress.ip_network("192.0.2.0/24")   # RFC 5737: never routed
    examples = [d for d in load_inventory(REPO / "devices.yaml") if d.name != "local"]
    assert examples and all(ipaddress.ip_address(d.host) in test_net_1 for d in examples)


# --- errors: file:line, what, and the valid choices -------------------------------------------

ERROR_CASES = {
    "unknown device key": (
        edit("    backends:", "    backend: [litert]\n    backends:"),
        "devices.yaml:7: device 'cam-01': unknown key 'backend'; "
        "valid keys: name, host, port, security, tags, backends, backend_options"),
    "missing required key": (
        edit("    port: 50051\n", ""),
        "devices.yaml:2: device 'cam-01': missing required key 'port'; "
        "required keys: name, host, port, backends"),
    "missing name uses the position": (
        edit("  - name: cam-01\n    host", "  - host"),
        "devices.yaml:2: device #1: missing required key 'name'"),
    "port quoted": (
        edit("port: 50051", 'port: "50051"'),
        "devices.yaml:4: device 'cam-01': port must be an integer from 1 to 65535, "
        "got the string '50051'; write it without quotes"),
    "port out of range": (
        edit("port: 50051", "port: 70000"),
        "devices.yaml:4: device 'cam-01': port must be an integer from 1 to 65535, got 70000"),
    "port zero": (edit("port: 50051", "port: 0"), "devices.yaml:4: device 'cam-01': port must be"),
    "port boolean": (edit("port: 50051", "port: true"),
                     "devices.yaml:4: device 'cam-01': port must be an integer from 1 to 65535, "
                     "got the boolean true"),
    "name not a string": (
        edit("name: cam-01", "name: 42"),
        "devices.yaml:2: device #1: name must be a string, got the integer 42; quote it"),
    "name pattern": (
        edit("name: cam-01", "name: Cam_01"),
        "devices.yaml:2: device 'Cam_01': name 'Cam_01' must match [a-z0-9][a-z0-9._-]*"),
    "host with port": (
        edit("host: 192.0.2.1", "host: 192.0.2.1:50051"),
        "devices.yaml:3: device 'cam-01': host '192.0.2.1:50051' is not a hostname or IP address"),
    "host with scheme": (edit("host: 192.0.2.1", "host: http://board"), "devices.yaml:3:"),
    "host bad ipv4": (edit("host: 192.0.2.1", "host: 192.0.2.300"),
                      "devices.yaml:3: device 'cam-01': host '192.0.2.300' is not a hostname or IP address"),
    "tags not a mapping": (
        edit("    tags:\n      soc: orin\n", "    tags: [soc, orin]\n"),
        "devices.yaml:5: device 'cam-01': tags must be a mapping (key: value), got a list"),
    "tag value a number": (
        edit("soc: orin", "jetpack: 6.10"),
        "devices.yaml:6: device 'cam-01': tag 'jetpack' must be a string, got the number 6.10; "
        "quote it to keep it as written: '6.10'"),
    "tag without value": (edit("soc: orin", "soc:"), "devices.yaml:6: device 'cam-01': tag 'soc' must be a "
                                                     "string, got no value"),
    "backends not a list": (
        edit("backends: [onnxruntime, litert]", "backends: onnxruntime"),
        "devices.yaml:7: device 'cam-01': backends must be a list, e.g. [onnxruntime], got the string"),
    "backends empty": (edit("backends: [onnxruntime, litert]", "backends: []"),
                       "devices.yaml:7: device 'cam-01': backends is empty"),
    "unknown backend": (
        edit("backends: [onnxruntime, litert]", "backends:\n      - onnxruntime\n      - tflite"),
        "devices.yaml:9: device 'cam-01': unknown backend 'tflite'; "
        "valid backends: onnxruntime, litert, tensorrt, openvino, executorch"),
    "backend twice": (edit("[onnxruntime, litert]", "[litert, litert]"),
                      "devices.yaml:7: device 'cam-01': backend 'litert' is listed twice in backends"),
    "options for an unknown backend": (
        edit("      litert:", "      tflite:"),
        "devices.yaml:9: device 'cam-01': backend_options: unknown backend 'tflite'; valid backends:"),
    "options for an unlisted backend": (
        edit("[onnxruntime, litert]", "[onnxruntime]"),
        "devices.yaml:9: device 'cam-01': backend_options for 'litert', which is not in this device's "
        "backends (onnxruntime); add it to backends or remove its options"),
    "unknown option key": (
        edit("threads: 2", "precision: fp16"),
        "devices.yaml:10: device 'cam-01': litert options: unknown key 'precision'; "
        "valid keys: threads, delegate"),
    "negative threads": (edit("threads: 2", "threads: -1"),
                         "devices.yaml:10: device 'cam-01': litert options: "
                         "threads must be an integer >= 0, got -1"),
    "unknown delegate": (
        edit("threads: 2", "delegate: coral"),
        "devices.yaml:10: device 'cam-01': litert options: unknown delegate 'coral'; "
        "valid delegates: edgetpu, gpu (leave delegate out for XNNPACK on the CPU)"),
    "unknown execution provider": (
        edit("      litert:\n        threads: 2", "      onnxruntime:\n        execution_provider: CUDA"),
        "devices.yaml:10: device 'cam-01': onnxruntime options: unknown execution_provider 'CUDA'; "
        "valid execution_providers: CPUExecutionProvider, CUDAExecutionProvider, "
        "TensorrtExecutionProvider, OpenVINOExecutionProvider"),
    "unknown precision": (
        edit("[onnxruntime, litert]", "[tensorrt, litert]").replace("threads: 2", "delegate: gpu")
        + "      tensorrt:\n        precision: fp8\n",
        "devices.yaml:12: device 'cam-01': tensorrt options: unknown precision 'fp8'; "
        "valid precisions: fp32, fp16, int8"),
    "dla_core without fp16 or int8": (
        edit("[onnxruntime, litert]", "[tensorrt, litert]") + "      tensorrt:\n        dla_core: 0\n",
        "devices.yaml:12: device 'cam-01': tensorrt options: dla_core needs precision fp16 or int8"),
    "dla_core off a Jetson": (
        edit("soc: orin", "soc: bcm2712").replace("[onnxruntime, litert]", "[tensorrt, litert]")
        + "      tensorrt: {precision: fp16, dla_core: 0}\n",
        "devices.yaml:11: device 'cam-01': tensorrt options: dla_core needs a Jetson with DLA cores: "
        "tag the device soc: xavier or orin (its soc tag is 'bcm2712')"),
    "dla_core out of range": (
        edit("[onnxruntime, litert]", "[tensorrt, litert]")
        + "      tensorrt: {precision: int8, dla_core: 2}\n",
        "devices.yaml:11: device 'cam-01': tensorrt options: dla_core must be an integer from 0 to 1, got 2"),
    "unknown openvino performance hint": (
        edit("[onnxruntime, litert]", "[openvino, litert]") + "      openvino:\n        performance_hint: fast\n",
        "devices.yaml:12: device 'cam-01': openvino options: unknown performance_hint 'fast'; "
        "valid performance_hints: latency, throughput"),
    "unknown openvino device": (
        edit("[onnxruntime, litert]", "[openvino, litert]") + "      openvino: {device: TPU}\n",
        "devices.yaml:11: device 'cam-01': openvino options: unknown device 'TPU'; valid devices: CPU, GPU, NPU"),
    "openvino precision int8 (it comes from the model)": (
        edit("[onnxruntime, litert]", "[openvino, litert]") + "      openvino: {precision: int8}\n",
        "devices.yaml:11: device 'cam-01': openvino options: unknown precision 'int8'; "
        "valid precisions: fp32, fp16, bf16"),
    "executorch takes threads only": (
        edit("[onnxruntime, litert]", "[executorch, litert]") + "      executorch: {delegate: xnnpack}\n",
        "devices.yaml:11: device 'cam-01': executorch options: unknown key 'delegate'; valid keys: threads"),
    "duplicate device name": (
        VALID + "  - name: cam-01\n    host: 192.0.2.2\n    port: 50051\n    backends: [litert]\n",
        "devices.yaml:11: duplicate device name 'cam-01'; first used at line 2; names must be unique"),
    "duplicate key in a mapping": (
        edit("    port: 50051\n", "    port: 50051\n    port: 50052\n"),
        "devices.yaml:5: device 'cam-01': duplicate key 'port' (first at line 4); keep one"),
    "non-string key": (edit("soc: orin", "1: orin"), "devices.yaml:6: device 'cam-01': keys must be strings"),
    "custom yaml tag": (edit("host: 192.0.2.1", "host: !env BOARD_HOST"),
                        "devices.yaml:3: device 'cam-01': host must be a string, got a value tagged !env"),
    "device not a mapping": ("devices:\n  - cam-01\n",
                             "devices.yaml:2: device #1: a device must be a mapping (key: value), "
                             "got the string 'cam-01'"),
    "yaml syntax error": (edit("    port: 50051\n", "    port: 50051\n   tags: oops: [\n"),
                          "devices.yaml:5: YAML syntax error: expected <block end>"),
    "tab indentation": ("devices:\n\t- name: cam-01\n",
                        "devices.yaml:2: YAML syntax error: found character '\\t'"),
    "bad merge key": (edit("  - name: cam-01", "  - <<: 5\n    name: cam-01"),
                      "devices.yaml:2: YAML error: expected a mapping or list of mappings for merging, "
                      "but found scalar"),
    "empty file": ("# nothing yet\n",
                   "devices.yaml:1: the file is empty; it needs a top-level 'devices:' list"),
    "top level a list": ("- name: cam-01\n",
                         "devices.yaml:1: the top level must be a mapping holding a 'devices:' list, "
                         "got a list"),
    "unknown top-level key": ("hosts: []\n", "devices.yaml:1: unknown key 'hosts'; valid keys: devices"),
    "unknown security": (edit("    port: 50051\n", "    port: 50051\n    security: mtls\n"),
                         "devices.yaml:5: device 'cam-01': unknown security mode 'mtls'; valid security modes: tls, "
                         "token, plaintext"),
    "plaintext off loopback": (
        edit("    port: 50051\n", "    port: 50051\n    security: plaintext\n"),
        "devices.yaml:5: device 'cam-01': security: plaintext is allowed on loopback only, and host '192.0.2.1' "
        "is not; use tls"),
    "leases not a URL": ("leases: farm-db:5432\n" + VALID,
                         "devices.yaml:1: leases 'farm-db:5432' is not a lease database URL; "
                         "e.g. postgresql://user@host/dbname"),
    "no devices key": ("{}\n", "devices.yaml:1: missing the top-level 'devices:' list"),
    "devices not a list": ("devices:\n  cam-01: {}\n", "devices.yaml:2: 'devices' must be a list"),
    "devices empty": ("devices: []\n", "devices.yaml:1: 'devices' is empty; list at least one device"),
}


@pytest.mark.parametrize(("text", "expected"), list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_error_names_file_line_and_fix(tmp_path: Path, text: str, expected: str) -> None:
    assert load_error(tmp_path, text).startswith(expected)


def test_error_messages_start_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, edit("port: 50051", 'port: "50051"'))
    with pytest.raises(InventoryError, match=rf"^{path}:4: "):
        load_inventory(path)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "devices.yaml"
    with pytest.raises(InventoryError, match=rf"^{missing}: no such file; create it"):
        load_inventory(missing)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=rf"^{tmp_path}: cannot read it"):
        load_inventory(tmp_path)


# --- what the format accepts -------------------------------------------------------------------

def test_merge_keys_share_settings_and_own_keys_win(tmp_path: Path) -> None:
    text = VALID.replace("  - name: cam-01", "  - &cam\n    name: cam-01") + (
        "  - <<: *cam\n    name: cam-02\n    host: cam-02.lab.example\n")
    second = load_inventory(write(tmp_path, text)).get("cam-02")
    assert (second.host, second.port, second.settings("litert").threads) == ("cam-02.lab.example", 50051, 2)


def test_empty_delegate_means_xnnpack_and_ipv6_hosts_are_bracketed(tmp_path: Path) -> None:
    text = edit("threads: 2", 'delegate: ""').replace("host: 192.0.2.1", 'host: "2001:db8::1"')
    device = load_inventory(write(tmp_path, text)).get("cam-01")
    assert device.settings("litert").delegate == ""
    assert device.address == "[2001:db8::1]:50051"


def test_settings_default_for_listed_backend_and_refuse_others(tmp_path: Path) -> None:
    device = load_inventory(write(tmp_path, VALID)).get("cam-01")
    assert device.settings("onnxruntime") == BackendSettings("onnxruntime")
    with pytest.raises(InventoryError, match="device 'cam-01' has no backend 'tensorrt'"):
        device.settings("tensorrt")


# --- lookup and tag matching on plain data -----------------------------------------------------

def board(name: str, **tags: str) -> Device:
    return Device(name, "192.0.2.1", 50051, tags, ("onnxruntime",))


FARM = Inventory((board("orin-a", soc="orin", arch="aarch64"), board("pi-a", board="rpi5", arch="aarch64"),
                  board("x86-a", arch="x86_64"), board("orin-b", soc="orin", arch="aarch64")))


@pytest.mark.parametrize(("tags", "names"), [
    ({}, ["orin-a", "pi-a", "x86-a", "orin-b"]),
    ({"arch": "aarch64"}, ["orin-a", "pi-a", "orin-b"]),
    ({"arch": "aarch64", "soc": "orin"}, ["orin-a", "orin-b"]),
    ({"soc": "orin", "arch": "x86_64"}, []),
    ({"accelerator": "edgetpu"}, []),
])
def test_select_matches_every_tag_in_inventory_order(tags: dict[str, str], names: list[str]) -> None:
    assert [device.name for device in FARM.select(tags)] == names
    assert select_devices(FARM.devices, tags) == FARM.select(tags)


def test_get_unknown_device_lists_valid_names() -> None:
    assert FARM.get("pi-a").tags == {"board": "rpi5", "arch": "aarch64"}
    expected = r"^<inventory>: unknown device 'pi-b'; valid names: orin-a, pi-a, x86-a, orin-b$"
    with pytest.raises(UnknownDeviceError, match=expected):
        FARM.get("pi-b")
    assert issubclass(UnknownDeviceError, LookupError)


def test_inventory_refuses_duplicate_names() -> None:
    with pytest.raises(InventoryError, match="duplicate device names: pi-a"):
        Inventory((board("pi-a"), board("pi-a")))


# --- records are frozen ------------------------------------------------------------------------

def test_records_are_frozen() -> None:
    device = FARM.get("orin-a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        device.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        BackendSettings("litert").delegate = "gpu"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        FARM.devices = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        device.tags["soc"] = "xavier"  # type: ignore[index]


def test_security_defaults_to_tls_off_loopback_and_plaintext_on_it(tmp_path: Path) -> None:
    text = VALID + "  - {name: here, host: 127.0.0.1, port: 50051, backends: [onnxruntime]}\n" \
                   "  - {name: lab, host: 192.0.2.9, port: 50051, security: token, backends: [onnxruntime]}\n" \
                   "  - {name: local-tls, host: '::1', port: 50051, security: tls, backends: [onnxruntime]}\n"
    inventory = load_inventory(write(tmp_path, text))
    assert [d.security for d in inventory] == ["tls", "plaintext", "token", "tls"]


def test_a_declared_lease_database_is_kept_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "leases: postgresql://edgefarm@farm-db/edgefarm\n")
    inventory = load_inventory(path)
    assert inventory.leases == "postgresql://edgefarm@farm-db/edgefarm"
    assert inventory.leases_where == f"{path}:11"


def test_device_keeps_its_own_copies_hashes_and_pickles() -> None:
    tags = {"soc": "orin"}
    device = Device("orin-a", "192.0.2.1", 50051, tags, ["tensorrt"])
    tags["soc"] = "xavier"
    assert device.tags == {"soc": "orin"} and device.backends == ("tensorrt",)
    assert device in {Device("orin-a", "192.0.2.1", 50051, {"soc": "orin"}, ("tensorrt",))}
    assert pickle.loads(pickle.dumps(device)) == device
    token_board = dataclasses.replace(device, security="token")
    assert pickle.loads(pickle.dumps(token_board)).security == "token"


def test_pools_select_devices_by_tags(tmp_path):
    path = tmp_path / "devices.yaml"
    path.write_text(
        "devices:\n"
        "  - {name: a, host: h, port: 1, tags: {soc: orin}, backends: [onnxruntime]}\n"
        "  - {name: b, host: h, port: 2, tags: {soc: orin}, backends: [onnxruntime]}\n"
        "  - {name: c, host: h, port: 3, tags: {soc: bcm}, backends: [litert]}\n"
        "pools:\n  orin: {soc: orin}\n")
    inventory = load_inventory(path)
    assert [d.name for d in inventory.pool("orin")] == ["a", "b"]
    with pytest.raises(UnknownDeviceError, match="unknown pool 'thor'; valid pools: orin"):
        inventory.pool("thor")


def test_a_pool_matching_no_device_is_an_error_with_its_line(tmp_path):
    path = tmp_path / "devices.yaml"
    path.write_text("devices:\n  - {name: a, host: h, port: 1, backends: [onnxruntime]}\npools:\n  gpu: {soc: orin}\n")
    with pytest.raises(InventoryError, match=r"devices.yaml:4: pool 'gpu' \(soc=orin\) matches no device"):
        load_inventory(path)
