"""scripts/backbone.sh makes each of its three outputs (npm tools, the TF.js folder,
the imported weights) only when that output is missing.

Regression: the weights folder is per user (~/.cache/kennel/weights) but the npm
tools and the TF.js folder are per clone (.cache/). The script used to stop as soon
as the weights existed, so a fresh clone on a machine that had imported them before
(CI runs on the developer's machine) had no TF.js folder, and the parity test failed
with "the imported backbone is missing".
"""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("KENNEL_CACHE", ROOT / ".cache"))
WEIGHTS = Path(os.environ.get("KENNEL_WEIGHTS_DIR", Path.home() / ".cache" / "kennel" / "weights"))


def run_backbone_script(kennel_bin, cache: Path, weights: Path):
    env = dict(os.environ, BUILD_DIR=str(kennel_bin.parent), KENNEL_CACHE=str(cache),
               KENNEL_WEIGHTS_DIR=str(weights))
    return subprocess.run(["bash", str(ROOT / "scripts" / "backbone.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def installed_npm_tools():
    npm = CACHE / "npm"
    if not (npm / "node_modules" / "nsfwjs" / "package.json").exists():
        pytest.fail("the npm tools are missing: run scripts/backbone.sh (scripts/test.sh does)")
    return npm


def test_a_fresh_clone_with_imported_weights_still_gets_its_tfjs_folder(kennel_bin, installed_npm_tools, tmp_path):
    model = WEIGHTS / "mobilenet_v2"
    if not (model / "model.safetensors").exists():
        pytest.fail("the imported backbone is missing: run scripts/backbone.sh (scripts/test.sh does)")
    clone_cache = tmp_path / "clone-cache"
    clone_cache.mkdir()
    # The clone's npm tools are the real ones (a link saves a second `npm ci`); its TF.js folder is missing.
    (clone_cache / "npm").symlink_to(installed_npm_tools.resolve(), target_is_directory=True)
    imported_at = (model / "model.safetensors").stat().st_mtime_ns

    done = run_backbone_script(kennel_bin, clone_cache, WEIGHTS)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (clone_cache / "tfjs" / "mobilenet_v2" / "model.json").stat().st_size > 0
    assert (clone_cache / "tfjs" / "mobilenet_v2" / "group1-shard1of1.bin").stat().st_size > 0
    assert "already imported" in done.stdout
    assert (model / "model.safetensors").stat().st_mtime_ns == imported_at, "the import was redone"


def test_missing_weights_are_imported_from_an_extracted_folder(kennel_bin, installed_npm_tools, tmp_path):
    weights = tmp_path / "weights"
    done = run_backbone_script(kennel_bin, CACHE, weights)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "already extracted" in done.stdout
    assert (weights / "mobilenet_v2" / "model.safetensors").stat().st_size > 1_000_000
    assert (weights / "mobilenet_v2" / "model.json").stat().st_size > 0
