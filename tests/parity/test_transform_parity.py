"""Parity of Kennel's image transforms with torchvision 0.14 on PIL images.

Kennel's side is tests/tools/transform_dump.cpp (built next to the unit tests);
torchvision's is the classic ImageFolder pipeline:

    Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std)])
    applied to Image.open(path).convert("RGB")

Kennel reproduces Pillow's fixed-point resampler and colour arithmetic, so the
expected difference is zero, not merely small: TOLERANCE only leaves room for
float32 rounding. A failure here means a real divergence (a window bound, a
rounding rule, a decoder), not noise.

Run with Debian's interpreter, which has torch/torchvision/PIL:
    KENNEL_BUILD_DIR=build /usr/bin/python3 -m pytest tests/parity/test_transform_parity.py -q -s
(-s prints the max/mean differences per case).
"""

import os
import pathlib
import subprocess

import numpy as np
import pytest

from prerequisites import missing, require_module

Image = require_module("PIL.Image")
transforms = require_module("torchvision.transforms")
F = require_module("torchvision.transforms.functional")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD_DIR = pathlib.Path(os.environ.get("KENNEL_BUILD_DIR", "build"))
if not BUILD_DIR.is_absolute():
    BUILD_DIR = REPO_ROOT / BUILD_DIR
TOOL = BUILD_DIR / "transform_dump"

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
# Bit-identical uint8 pixels give float32 values equal up to rounding (~2.4e-7
# at |x| ~ 2); one uint8 level would be 1 / 255 / 0.229 ~ 0.017.
TOLERANCE = 1e-6
ONE_LEVEL = 1.0 / 255.0 / min(STD)

if not TOOL.exists():
    missing(f"{TOOL} not built (BUILD_DIR={BUILD_DIR.name} scripts/build.sh transform_dump)")


def _content(width, height, seed):
    """Smooth gradients and edges plus noise: exercises every filter tap."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / 17.0) * np.cos(y / 23.0)
    g = 255.0 * x / max(width - 1, 1)
    b = np.where((x // 16 + y // 16) % 2 == 0, 40.0, 215.0)
    image = np.stack([r, g, b], axis=-1) + rng.normal(0.0, 20.0, (height, width, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """name -> path of the generated test images."""
    folder = tmp_path_factory.mktemp("transform_parity")
    paths = {}

    def save(name, array, mode=None, **options):
        path = folder / name
        Image.fromarray(array, mode).save(path, **options)
        paths[name] = path

    save("landscape_500x375.png", _content(500, 375, 1))
    save("portrait_375x500.png", _content(375, 500, 2))
    save("odd_301x257.png", _content(301, 257, 3))
    save("exact_341x256.png", _content(341, 256, 4))  # Resize(256) is a no-op
    save("small_150x100.png", _content(150, 100, 5))  # upscaled to 384x256
    save("tiny_7x5.png", _content(7, 5, 6))  # extreme upscale, windows cut by borders
    save("large_1600x1200.png", _content(1600, 1200, 7))  # >4x downscale, long windows
    save("grey_320x240.png", _content(320, 240, 8)[:, :, 1], "L")
    rgba = np.dstack([_content(333, 250, 9), np.full((250, 333), 128, np.uint8)])
    save("rgba_333x250.png", rgba, "RGBA")
    save("photo_500x375.jpg", _content(500, 375, 10), quality=90)
    save("photo_444_375x500.jpg", _content(375, 500, 11), quality=95, subsampling=0)
    return paths


def _torchvision(path, geometry):
    image = Image.open(path).convert("RGB")
    image = geometry(image)
    tensor = transforms.Normalize(MEAN, STD)(transforms.ToTensor()(image))
    return tensor.numpy()


def _kennel(path, tmp_path, *args):
    out = tmp_path / "out.bin"
    result = subprocess.run(
        [str(TOOL), str(path), str(out), *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    height, width = (int(v) for v in result.stdout.split())
    return np.fromfile(out, dtype=np.float32).reshape(3, height, width)


def _compare(name, ours, theirs):
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} vs {theirs.shape}"
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    differing = int((diff > TOLERANCE).sum())
    print(
        f"\n{name}: max abs diff {diff.max():.3g} ({diff.max() / ONE_LEVEL:.3g} uint8 levels), "
        f"mean {diff.mean():.3g}, values beyond tolerance {differing}/{diff.size}"
    )
    assert diff.max() <= TOLERANCE, (
        f"{name}: max abs diff {diff.max():.4g} > {TOLERANCE} "
        f"({differing} values differ, mean {diff.mean():.3g})"
    )


EVAL_IMAGES = [
    "landscape_500x375.png",
    "portrait_375x500.png",
    "odd_301x257.png",
    "exact_341x256.png",
    "small_150x100.png",
    "tiny_7x5.png",
    "large_1600x1200.png",
    "grey_320x240.png",
    "rgba_333x250.png",
    # Both sides decode the same JPEG with libjpeg-turbo (OpenCV 4.6 and
    # Pillow 9.4 on Debian 12 link the same libjpeg62-turbo, both with the
    # default islow IDCT and fancy upsampling), so these are exact as well.
    "photo_500x375.jpg",
    "photo_444_375x500.jpg",
]


@pytest.mark.parametrize("name", EVAL_IMAGES)
def test_eval_pipeline_matches_torchvision(images, tmp_path, name):
    geometry = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    _compare(name, _kennel(images[name], tmp_path), _torchvision(images[name], geometry))


@pytest.mark.parametrize("resize,crop", [(288, 256), (232, 224), (36, 32)])
def test_eval_pipeline_other_sizes(images, tmp_path, resize, crop):
    name = "odd_301x257.png"
    geometry = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop)])
    ours = _kennel(images[name], tmp_path, "--resize", str(resize), "--crop", str(crop))
    _compare(f"{name} resize {resize} crop {crop}", ours, _torchvision(images[name], geometry))


# (top, left, height, width) boxes as RandomResizedCrop.get_params returns them.
CROP_BOXES = [(0, 0, 375, 500), (10, 37, 200, 150), (100, 300, 75, 199), (374, 499, 1, 1)]


@pytest.mark.parametrize("box", CROP_BOXES)
def test_resized_crop_matches_torchvision(images, tmp_path, box):
    # The augment path's geometry with the random draw fixed: F.resized_crop.
    name = "landscape_500x375.png"
    top, left, height, width = box
    ours = _kennel(images[name], tmp_path, "--resized-crop", f"{top},{left},{height},{width}")
    theirs = _torchvision(
        images[name], lambda image: F.resized_crop(image, top, left, height, width, [224, 224])
    )
    _compare(f"{name} resized_crop {box}", ours, theirs)


ADJUSTMENTS = [
    ("brightness", 0.6),
    ("brightness", 1.4),
    ("contrast", 0.6),
    ("contrast", 1.4),
    ("saturation", 0.0),
    ("saturation", 1.4),
    ("hue", -0.1),
    ("hue", 0.05),
    ("hue", 0.5),
]
_TORCHVISION_ADJUST = {
    "brightness": F.adjust_brightness,
    "contrast": F.adjust_contrast,
    "saturation": F.adjust_saturation,
    "hue": F.adjust_hue,
}


@pytest.mark.parametrize("adjustment,factor", ADJUSTMENTS)
def test_flip_and_colour_adjustments_match_torchvision(images, tmp_path, adjustment, factor):
    # ColorJitter's four functions with the random factor fixed, after a flip.
    name = "portrait_375x500.png"
    ours = _kennel(images[name], tmp_path, "--flip", "--adjust", f"{adjustment}={factor}")

    def geometry(image):
        image = transforms.CenterCrop(224)(transforms.Resize(256)(image))
        return _TORCHVISION_ADJUST[adjustment](F.hflip(image), factor)

    _compare(f"{name} flip + {adjustment} {factor}", ours, _torchvision(images[name], geometry))


def test_tool_rejects_a_missing_file(tmp_path):
    result = subprocess.run(
        [str(TOOL), str(tmp_path / "missing.png"), str(tmp_path / "out.bin")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "missing.png" in result.stderr

