"""`kennel data synth` + `kennel data check` on real files."""
import json
import os


def test_every_planted_bad_file_is_reported_with_its_reason(kennel, planted_dataset):
    planted = json.loads((planted_dataset / "planted.json").read_text())
    kinds = {p["kind"] for p in planted["planted"]}
    assert len(kinds) == 11, kinds

    report = kennel.json("data", "check", planted_dataset, check=0)
    assert report["usable"] is True
    by_path = {f["relative_path"]: f for f in report["files_with_issues"]}
    for entry in planted["planted"]:
        if entry["kind"] == "symlink_loop":
            assert any("symlink loop" in w and entry["path"] in w for w in report["warnings"]), entry
            continue
        assert entry["path"] in by_path, f"{entry} not reported"
        reported = [issue["kind"] for issue in by_path[entry["path"]]["issues"]]
        assert reported == [entry["kind"]], (entry, reported)

    # Nothing else is flagged, and every good image is counted as usable.
    planted_paths = {p["path"] for p in planted["planted"]}
    assert set(by_path) <= planted_paths
    usable_planted = sum(1 for p in planted["planted"]
                         if p["kind"] in {"grayscale", "cmyk", "has_alpha", "duplicate"})
    assert report["summary"]["usable"] == planted["images"] + usable_planted


def test_table_output_lists_bad_files_and_class_counts(kennel, planted_dataset):
    result = kennel.run("data", "check", planted_dataset, check=0)
    out = result.stdout
    for heading in ["split", "usable images per class", "bad files", "truncated (1)",
                    "zero_byte (1)", "too_large (1)", "verdict: usable"]:
        assert heading in out, heading
    assert "000." in out


def test_non_ascii_file_names_survive_json(kennel, planted_dataset):
    names = [name for _, _, files in os.walk(planted_dataset) for name in files]
    assert any(not name.isascii() for name in names), "synth should write a non-ASCII name"
    report = kennel.json("data", "check", planted_dataset, check=0)
    assert report["summary"]["files"] > 0


def test_unusable_dataset_exits_1(kennel, tmp_path):
    root = tmp_path / "bad"
    (root / "train" / "a").mkdir(parents=True)
    (root / "train" / "b").mkdir(parents=True)
    (root / "train" / "a" / "x.jpg").write_bytes(b"")
    (root / "train" / "b" / "y.jpg").write_bytes(b"garbage")
    result = kennel.run("data", "check", root, check=1)
    assert "NOT usable" in result.stdout


def test_empty_class_folder_is_a_warning(kennel, tmp_path):
    root = tmp_path / "ds"
    kennel.run("data", "synth", "--out", root, "--classes", 2, "--per-class", 3,
               "--size", "32x32", check=0)
    (root / "train" / "zzz.empty").mkdir()
    report = kennel.json("data", "check", root, check=0)
    assert any("zzz.empty" in w for w in report["warnings"])


def test_synth_refuses_to_overwrite(kennel, tmp_path):
    root = tmp_path / "ds"
    kennel.run("data", "synth", "--out", root, "--classes", 2, "--per-class", 2, check=0)
    result = kennel.run("data", "synth", "--out", root, "--classes", 2, "--per-class", 2)
    assert result.returncode == 2
    assert "--overwrite" in result.stderr
