"""Kennel's backbones compute what torchvision's compute.

For each architecture, torchvision builds the model with random weights (and
non-trivial BatchNorm statistics), torch.save writes its state dict, and
Kennel's model_tool loads that file strictly and runs the same input in eval
mode. The logits must match to 1e-4 (max abs). Debian's python3-torch and
libtorch-dev are the same LibTorch 1.13 build, so the kernels agree and the
only slack needed is summation order.

Run with Debian's interpreter:
    KENNEL_BUILD_DIR=build /usr/bin/python3 -m pytest tests/parity/test_model_parity.py
"""
import collections
import os
import subprocess
from pathlib import Path

import pytest

from prerequisites import require_module

torch = require_module("torch")
torchvision = require_module("torchvision")

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4


@pytest.fixture(scope="session")
def model_tool() -> Path:
    path = Path(os.environ.get("KENNEL_BUILD_DIR", ROOT / "build")) / "model_tool"
    if not path.exists():
        pytest.fail(f"{path} does not exist: build it with scripts/build.sh model_tool")
    return path


def run_tool(tool, *args):
    result = subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"model_tool {args} failed ({result.returncode}):\n{result.stderr}"
    return result


def torchvision_model(arch, num_classes, head=()):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=num_classes)
    if head:
        # The classic transfer-learning head: Linear-ReLU-Dropout-Linear.
        in_features = model.fc.in_features if hasattr(model, "fc") else model.classifier[1].in_features
        layers = []
        for width in head:
            layers += [torch.nn.Linear(in_features, width), torch.nn.ReLU(), torch.nn.Dropout(0.5)]
            in_features = width
        layers.append(torch.nn.Linear(in_features, num_classes))
        if hasattr(model, "fc"):
            model.fc = torch.nn.Sequential(*layers)
        else:
            model.classifier = torch.nn.Sequential(torch.nn.Dropout(0.2), *layers)
    # Running statistics away from (0, 1), so BatchNorm in eval mode is really exercised.
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 64, 64) * 2 + 0.5)
    model.eval()
    return model


def kennel_logits(tool, tmp_path, arch, num_classes, model, images, head=()):
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    torch.save(collections.OrderedDict(input=images), tmp_path / "input.pth")
    args = ["logits", arch, num_classes, tmp_path / "weights.pth", tmp_path / "input.pth",
            tmp_path / "logits.pth"]
    if head:
        args.append(",".join(map(str, head)))
    run_tool(tool, *args)
    return torch.load(tmp_path / "logits.pth")["logits"]


@pytest.mark.parametrize("arch,size", [("resnet18", 64), ("resnet50", 64), ("mobilenet_v2", 64),
                                       ("resnet18", 97)])
def test_logits_match_torchvision(model_tool, tmp_path, arch, size):
    model = torchvision_model(arch, num_classes=7)
    images = torch.randn(3, 3, size, size)
    with torch.no_grad():
        expected = model(images)
    actual = kennel_logits(model_tool, tmp_path, arch, 7, model, images)
    assert actual.shape == expected.shape
    difference = (actual - expected).abs().max().item()
    assert difference < TOLERANCE, f"{arch} at {size}px: max abs difference {difference}"


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_hidden_layer_head_matches_torch_sequential(model_tool, tmp_path, arch):
    model = torchvision_model(arch, num_classes=5, head=(32,))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images)
    actual = kennel_logits(model_tool, tmp_path, arch, 5, model, images, head=(32,))
    assert (actual - expected).abs().max().item() < TOLERANCE


def test_a_file_for_another_architecture_is_refused_with_the_keys(model_tool, tmp_path):
    model = torchvision_model("resnet18", num_classes=3)
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    torch.save(collections.OrderedDict(input=torch.randn(1, 3, 32, 32)), tmp_path / "input.pth")
    args = [model_tool, "logits", "resnet50", 3, tmp_path / "weights.pth", tmp_path / "input.pth",
            tmp_path / "out.pth"]
    result = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and result.returncode > 0
    assert "layer1.0.conv3.weight" in result.stderr or "mismatched" in result.stderr.lower()
