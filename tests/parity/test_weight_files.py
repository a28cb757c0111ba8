"""Weight files across the Python boundary, both ways.

Kennel must read what Python's torch.save writes (an OrderedDict with
`_metadata`, training checkpoints, DataParallel prefixes, views) and Python
must read what Kennel writes: torch.load + load_state_dict(strict=True) for
.pth, and a tiny safetensors parser below for .safetensors (the `safetensors`
package is not installed here).

Run with Debian's interpreter, which has torch and torchvision:
    KENNEL_BUILD_DIR=build /usr/bin/python3 -m pytest tests/parity/test_weight_files.py
The tool is $KENNEL_BUILD_DIR/weights_tool (default build/).
"""
import collections
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from prerequisites import require_module

torch = require_module("torch")
torchvision = require_module("torchvision")

ROOT = Path(__file__).resolve().parents[2]

SAFETENSORS_DTYPES = {
    "F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


@pytest.fixture(scope="session")
def weights_tool() -> Path:
    path = Path(os.environ.get("KENNEL_BUILD_DIR", ROOT / "build")) / "weights_tool"
    if not path.exists():
        pytest.fail(f"{path} does not exist: build it with scripts/build.sh weights_tool")
    return path


def run_tool(tool, *args, expect_ok=True):
    result = subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode >= 0, f"weights_tool crashed (signal {-result.returncode}): {result.stderr}"
    if expect_ok:
        assert result.returncode == 0, f"weights_tool {args} failed:\n{result.stderr}"
    return result


def kennel_list(tool, path):
    return json.loads(run_tool(tool, "list", path).stdout)


def read_safetensors(path):
    """The format in a dozen lines: u64 header length, JSON header, raw little-endian data."""
    data = Path(path).read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_size])
    metadata = header.pop("__metadata__", {})
    start = 8 + header_size
    tensors = collections.OrderedDict()
    for name, spec in header.items():
        begin, end = spec["data_offsets"]
        dtype = SAFETENSORS_DTYPES[spec["dtype"]]
        if end > begin:
            flat = torch.frombuffer(bytearray(data[start + begin:start + end]), dtype=dtype)
        else:
            flat = torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(spec["shape"])
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    """A writer that is not Kennel's: header in the given order, not sorted."""
    codes = {dtype: code for code, dtype in SAFETENSORS_DTYPES.items()}
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, tensor in tensors.items():
        raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": codes[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def random_state_dict(arch):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)()
    # Non-trivial BatchNorm statistics, so running_mean/var and the counters are checked too.
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    return model.state_dict()


def assert_listing_matches(listing, state_dict):
    assert [t["name"] for t in listing["tensors"]] == list(state_dict.keys())
    for entry in listing["tensors"]:
        tensor = state_dict[entry["name"]]
        assert entry["dtype"] == str(tensor.dtype).removeprefix("torch."), entry["name"]
        assert entry["shape"] == list(tensor.shape), entry["name"]
        assert entry["sum"] == pytest.approx(tensor.double().sum().item(), rel=1e-9, abs=1e-9), entry["name"]


def assert_same_tensors(actual, expected):
    assert list(actual.keys()) == list(expected.keys())
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype, name
        assert actual[name].shape == tensor.shape, name
        assert torch.equal(actual[name], tensor), name


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_kennel_reads_torch_save_and_writes_identical_safetensors(weights_tool, tmp_path, arch):
    state_dict = random_state_dict(arch)
    # What every published torchvision file is: an OrderedDict carrying _metadata.
    assert isinstance(state_dict, collections.OrderedDict) and hasattr(state_dict, "_metadata")
    torch.save(state_dict, tmp_path / "python.pth")

    listing = kennel_list(weights_tool, tmp_path / "python.pth")
    assert listing["format"] == "pth"
    assert_listing_matches(listing, state_dict)
    counters = [t for t in listing["tensors"] if t["name"].endswith("num_batches_tracked")]
    assert counters and all(t["dtype"] == "int64" and t["shape"] == [] and t["sum"] == 1 for t in counters)

    run_tool(weights_tool, "convert", tmp_path / "python.pth", tmp_path / "kennel.safetensors")
    tensors, _ = read_safetensors(tmp_path / "kennel.safetensors")
    assert_same_tensors(tensors, collections.OrderedDict(sorted(state_dict.items())))


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_python_loads_kennel_pth_strictly(weights_tool, tmp_path, arch):
    state_dict = random_state_dict(arch)
    torch.save(state_dict, tmp_path / "python.pth")
    run_tool(weights_tool, "convert", tmp_path / "python.pth", tmp_path / "kennel.pth")

    loaded = torch.load(tmp_path / "kennel.pth")
    assert type(loaded) is collections.OrderedDict
    assert_same_tensors(loaded, state_dict)
    # Only the globals torch's safe loader allows.
    assert_same_tensors(torch.load(tmp_path / "kennel.pth", weights_only=True), state_dict)

    original = getattr(torchvision.models, arch)()
    original.load_state_dict(state_dict)
    restored = getattr(torchvision.models, arch)()
    restored.load_state_dict(loaded, strict=True)
    original.eval()
    restored.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(restored(images), original(images))


def test_safetensors_to_pth_round_trip_keeps_every_dtype(weights_tool, tmp_path):
    tensors = collections.OrderedDict()
    for code, dtype in SAFETENSORS_DTYPES.items():
        values = torch.arange(-6, 6, dtype=torch.float64).reshape(3, 4) * 1.25
        if dtype == torch.bool:
            values = values > 0
        elif dtype == torch.uint8:
            values = values.abs()
        tensors[f"z.{code}"] = values.to(dtype)
    tensors["a.scalar"] = torch.tensor(123456789012, dtype=torch.int64)
    tensors["a.empty"] = torch.empty(0, 5)
    # Header deliberately unsorted: Kennel returns file order and writes name order.
    write_safetensors(tmp_path / "python.safetensors", tensors, {"source": "test"})

    listing = kennel_list(weights_tool, tmp_path / "python.safetensors")
    assert listing["format"] == "safetensors"
    assert_listing_matches(listing, tensors)

    run_tool(weights_tool, "convert", tmp_path / "python.safetensors", tmp_path / "kennel.pt")
    assert_same_tensors(torch.load(tmp_path / "kennel.pt"), tensors)
    run_tool(weights_tool, "convert", tmp_path / "kennel.pt", tmp_path / "again.safetensors")
    again, _ = read_safetensors(tmp_path / "again.safetensors")
    assert_same_tensors(again, collections.OrderedDict(sorted(tensors.items())))


def test_checkpoint_with_dataparallel_prefix_and_optimizer_state(weights_tool, tmp_path):
    torch.manual_seed(1)
    model = torchvision.models.resnet18(num_classes=5)
    wrapped = torch.nn.DataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()  # momentum buffers: more tensors in the pickle, outside the state dict
    torch.save({"epoch": 4, "arch": "resnet18", "best_acc": 0.75, "state_dict": wrapped.state_dict(),
                "optimizer": optimizer.state_dict()}, tmp_path / "checkpoint.pth.tar")

    listing = kennel_list(weights_tool, tmp_path / "checkpoint.pth.tar")
    assert_listing_matches(listing, model.state_dict())


def test_views_keep_strides_and_offsets(weights_tool, tmp_path):
    base = torch.arange(24, dtype=torch.float32)
    state_dict = collections.OrderedDict(
        transposed=base.reshape(4, 6).t(), tail=base[5:17], strided=base[::3], whole=base)
    torch.save(state_dict, tmp_path / "views.pth")
    listing = kennel_list(weights_tool, tmp_path / "views.pth")
    assert_listing_matches(listing, state_dict)
    for entry in listing["tensors"]:
        tensor = state_dict[entry["name"]]
        assert entry["stride"] == list(tensor.stride()), entry["name"]
        assert entry["storage_offset"] == tensor.storage_offset(), entry["name"]


def test_damaged_files_are_reported_not_crashed_on(weights_tool, tmp_path):
    torch.save(random_state_dict("resnet18"), tmp_path / "good.pth")
    good = (tmp_path / "good.pth").read_bytes()
    cases = {
        "truncated.pth": good[: len(good) // 2],
        "garbage.pth": b"definitely not a state dict\n" * 10,
        "legacy.pth": b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.",
        "short.safetensors": struct.pack("<Q", 1 << 40) + b"{}",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        result = run_tool(weights_tool, "list", tmp_path / name, expect_ok=False)
        assert result.returncode != 0, name
        assert "error:" in result.stderr and name in result.stderr, result.stderr

    torch.save(torchvision.models.resnet18(), tmp_path / "whole_model.pth")
    result = run_tool(weights_tool, "list", tmp_path / "whole_model.pth", expect_ok=False)
    assert result.returncode != 0 and "state_dict()" in result.stderr, result.stderr
