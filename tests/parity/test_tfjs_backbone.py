"""The MobileNetV2 Kennel imports from the nsfwjs npm package computes what the
package computes.

scripts/backbone.sh installs nsfwjs 4.4.0 (pinned, integrity-checked) into
.cache/npm, extracts its Keras MobileNetV2 as a TF.js folder (.cache/tfjs/mobilenet_v2)
and imports it with `kennel weights import-tfjs` into the weights folder. Here the
same 224x224 pixels go through both: TF.js in Node (pure-JS CPU backend, nsfwjs's own
preprocessing) via scripts/backbone/predict_tfjs.js, and `kennel predict --model` on the
imported model directory (its own 5-class head). Logits must agree to 1e-4 and
probabilities to 1e-5 (float32 summation order is the only slack: the weights are the
same dequantised uint8 values on both sides).
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("KENNEL_CACHE", ROOT / ".cache"))
WEIGHTS = Path(os.environ.get("KENNEL_WEIGHTS_DIR", Path.home() / ".cache" / "kennel" / "weights"))
LOGIT_TOLERANCE = 1e-4
PROBABILITY_TOLERANCE = 1e-5


def images(folder: Path):
    """Three 224x224 pictures with different statistics, as PNG (Kennel) and PPM (TF.js)."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 224, dtype=np.float32)
    pictures = {
        "gradient": np.stack([ramp[None, :].repeat(224, 0), ramp[:, None].repeat(224, 1),
                              255 - ramp[None, :].repeat(224, 0)], axis=2),
        "noise": rng.integers(0, 256, size=(224, 224, 3)).astype(np.float32),
    }
    drawing = Image.new("RGB", (224, 224), (245, 240, 230))
    pen = ImageDraw.Draw(drawing)
    pen.ellipse((40, 30, 180, 200), outline=(20, 20, 20), width=6, fill=(230, 180, 150))
    pen.rectangle((90, 120, 140, 150), fill=(120, 30, 30))
    pictures["drawing"] = np.asarray(drawing, dtype=np.float32)
    paths = []
    for name, pixels in pictures.items():
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(folder / f"{name}.png")
        image.save(folder / f"{name}.ppm")
        paths.append(folder / name)
    return paths


def test_imported_mobilenet_v2_matches_nsfwjs_in_tfjs(tmp_path):
    model_dir = WEIGHTS / "mobilenet_v2"
    tfjs_dir = CACHE / "tfjs" / "mobilenet_v2"
    if not (model_dir / "model.safetensors").exists() or not (tfjs_dir / "model.json").exists():
        pytest.fail("the imported backbone is missing: run scripts/backbone.sh (scripts/test.sh does)")
    kennel = Path(os.environ.get("KENNEL_BUILD_DIR", ROOT / "build")) / "kennel"
    stems = images(tmp_path)

    reference = tmp_path / "tfjs.json"
    done = subprocess.run(["node", str(ROOT / "scripts" / "backbone" / "predict_tfjs.js"),
                           "--node-modules", str(CACHE / "npm" / "node_modules"), str(tfjs_dir), str(reference),
                           *[f"{s}.ppm" for s in stems]], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = json.loads(reference.read_text())
    info = json.loads((model_dir / "model.json").read_text())
    assert info["classes"] == expected["classes"] == ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"]
    assert info["keras_compat"] is True and info["source"]["package"] == "nsfwjs"
    assert info["preprocessing"]["mean"] == [0, 0, 0] and info["preprocessing"]["std"] == [1, 1, 1]

    done = subprocess.run([str(kennel), "predict", "--model", str(model_dir), "--json", "--top-k", "5", "--precision", "fp32",
                           *sum((["--image", f"{s}.png"] for s in stems), [])],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(answers) == len(stems)
    worst_logit = worst_probability = 0.0
    for stem, answer, reference_image in zip(stems, answers, expected["images"]):
        assert Path(reference_image["image"]).stem == stem.name
        logits = np.asarray(answer["logits"], dtype=np.float64)
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        worst_logit = max(worst_logit, float(np.abs(logits - reference_image["logits"]).max()))
        worst_probability = max(worst_probability,
                                float(np.abs(probabilities - reference_image["probabilities"]).max()))
    assert worst_logit < LOGIT_TOLERANCE, f"max |logit difference| {worst_logit}"
    assert worst_probability < PROBABILITY_TOLERANCE, f"max |probability difference| {worst_probability}"
