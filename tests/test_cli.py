"""Tests of the `zoo` command line: list, info, predict, push and train, called through `main`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo import cli
from zoo.cli import main
from zoo.registry import REGISTRY

ENTRY_IDS = sorted(REGISTRY)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_console_script_help():
    script = Path(sys.executable).with_name("zoo")
    assert script.is_file(), f"console script {script} is missing; install the package with `pip install -e .`"

    completed = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)

    assert completed.returncode == 0, completed.stderr
    assert "usage: zoo" in completed.stdout
    for command in ("list", "info", "predict", "eval", "card", "train", "push", "demo"):
        assert command in completed.stdout


def test_no_command_is_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])

    assert exit_info.value.code == 2
    assert "usage: zoo" in capsys.readouterr().err


# list and info --------------------------------------------------------------------------------


def test_list_table(bundled_checkpoints, capsys):
    assert main(["list"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "method", "dataset", "bundled"]
    assert [line.split()[0] for line in lines[1:]] == ENTRY_IDS
    assert all(line.split()[-1] == "yes" for line in lines[1:])


def test_list_table_not_bundled(empty_bundled_dir, capsys):
    assert main(["list"]) == 0

    lines = capsys.readouterr().out.splitlines()[1:]
    assert all(line.split()[-1] == "no" for line in lines)


def test_list_json(bundled_checkpoints, capsys):
    assert main(["list", "--json"]) == 0

    rows = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in rows] == ENTRY_IDS
    for row in rows:
        assert set(row) == {"id", "method", "dataset", "task", "bundled", "hub_repo"}
        assert row["bundled"] is True
        assert row["hub_repo"] == REGISTRY[row["id"]].hub_repo


@pytest.mark.parametrize("model_id", ENTRY_IDS)
def test_info(model_id, capsys):
    assert main(["info", model_id]) == 0

    payload = json.loads(capsys.readouterr().out)
    assert payload["id"] == model_id
    assert payload["model_class"] == REGISTRY[model_id].model_class
    assert payload["train_config"] == REGISTRY[model_id].train_config


def test_info_unknown_id(capsys):
    assert main(["info", "realpatch-colored-digits"]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown model id 'realpatch-colored-digits'" in captured.err
    assert "'realpatch-coloured-digits'" in captured.err


# predict -------------------------------------------------------------------------------------


def test_predict_file(bundled_checkpoints, digit_pngs, capsys):
    assert main(["predict", "erm-coloured-digits", str(digit_pngs[0])]) == 0

    [result] = _json_lines(capsys.readouterr().out)
    assert result["input"] == str(digit_pngs[0])
    assert result["label"] in (0, 1)
    assert set(result["probabilities"]) == {"digits 01234", "digits 56789"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["label_name"] == ["digits 01234", "digits 56789"][result["label"]]


def test_predict_folder(bundled_checkpoints, digit_pngs, capsys):
    assert main(["predict", "realpatch-coloured-digits", str(digit_pngs[0].parent)]) == 0

    results = _json_lines(capsys.readouterr().out)
    assert [r["input"] for r in results] == [str(p) for p in sorted(digit_pngs)]
    assert all(set(r) == {"input", "label", "label_name", "probabilities"} for r in results)


def test_predict_checkpoint_folder(bundled_checkpoints, digit_pngs, capsys):
    folder = bundled_checkpoints["erm-coloured-digits"]

    assert main(["predict", str(folder), str(digit_pngs[0])]) == 0

    assert len(_json_lines(capsys.readouterr().out)) == 1


def test_predict_bad_file_among_good(bundled_checkpoints, digit_pngs, capsys):
    bad = digit_pngs[0].parent / "broken.png"
    bad.write_text("not an image")
    inputs = [str(digit_pngs[0]), str(bad), str(digit_pngs[1])]

    assert main(["predict", "erm-coloured-digits", *inputs]) == 1

    captured = capsys.readouterr()
    assert [r["input"] for r in _json_lines(captured.out)] == [str(digit_pngs[0]), str(digit_pngs[1])]
    assert str(bad) in captured.err
    assert str(digit_pngs[0]) not in captured.err


def test_predict_grey_image_rejected(bundled_checkpoints, digit_pngs, capsys):
    from PIL import Image

    grey = digit_pngs[0].parent / "grey.png"
    Image.open(digit_pngs[0]).convert("L").save(grey)

    assert main(["predict", "erm-coloured-digits", str(grey)]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "colour mode 'L'" in captured.err


def test_predict_empty_folder(bundled_checkpoints, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()

    assert main(["predict", "erm-coloured-digits", str(empty)]) == 1

    assert "contains no image files" in capsys.readouterr().err


def test_predict_tampered_checkpoint(bundled_checkpoints, digit_pngs, capsys):
    (bundled_checkpoints["erm-coloured-digits"] / "model.safetensors").write_bytes(b"tampered")

    assert main(["predict", "erm-coloured-digits", str(digit_pngs[0])]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "sha256" in captured.err


def test_predict_unknown_id(capsys, digit_pngs):
    assert main(["predict", "erm-colored-digits", str(digit_pngs[0])]) == 2

    assert "'erm-coloured-digits'" in capsys.readouterr().err


# push -----------------------------------------------------------------------------------------


def test_push_offline(bundled_checkpoints, hub_offline, no_network, capsys):
    assert main(["push", "erm-coloured-digits", "--repo-id", "org/erm"]) == 2

    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE=1" in err
    assert "nothing was uploaded" in err
    assert no_network == []


def test_push_bad_repo_id(bundled_checkpoints, hub_offline, no_network, capsys):
    assert main(["push", "erm-coloured-digits", "--repo-id", "not a repo"]) == 2

    assert "--repo-id must have the form ORG/NAME, got 'not a repo'" in capsys.readouterr().err
    assert no_network == []


def test_push_not_a_checkpoint(tmp_path, hub_offline, no_network, capsys):
    assert main(["push", "erm-coloured-digits", "--repo-id", "org/erm", "--folder", str(tmp_path)]) == 2

    assert "is not a checkpoint folder" in capsys.readouterr().err
    assert no_network == []


def test_push_unknown_id(hub_offline, no_network, capsys):
    assert main(["push", "erm-colored-digits", "--repo-id", "org/erm"]) == 2

    assert "unknown model id" in capsys.readouterr().err
    assert no_network == []


# train ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ENTRY_IDS)
def test_train_dry_run(model_id, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda *args, **kwargs: calls.append(args))

    assert main(["train", model_id, "--dry-run", "--seed", "3", "--epochs", "1"]) == 0

    err = capsys.readouterr().err
    assert err.startswith("running: ")
    assert REGISTRY[model_id].train_config in err
    assert REGISTRY[model_id].train_script in err
    assert "--seed 3" in err
    assert "--epochs 1" in err
    assert calls == []


def test_train_dry_run_processes(capsys):
    assert main(["train", "erm-coloured-digits", "--dry-run", "--processes", "2"]) == 0

    err = capsys.readouterr().err
    assert "accelerate.commands.launch" in err
    assert "--num_processes 2" in err


def test_demo_runs_combined_app(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.os, "execv", lambda program, command: calls.append(command))

    assert cli.main(["demo", "--port", "7999"]) == 0

    assert calls[0][1].endswith("spaces/app.py")
    assert calls[0][-4:] == ["--host", "127.0.0.1", "--port", "7999"]


@pytest.mark.parametrize("option", [["--epochs", "0"], ["--processes", "0"]])
def test_train_rejects_nonpositive(option, capsys):
    assert cli.main(["train", "erm-coloured-digits", *option, "--dry-run"]) == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_predict_missing_folder_named(capsys, digit_pngs):
    assert cli.main(["predict", "./no-such-checkpoint", str(digit_pngs[0])]) == 2
    assert "checkpoint folder ./no-such-checkpoint not found" in capsys.readouterr().err


def test_card_writes_readme(tmp_path, capsys):
    assert cli.main(["card", "erm-coloured-digits", "--output-dir", str(tmp_path)]) == 0

    assert capsys.readouterr().out.strip() == str(tmp_path / "README.md")
    assert (tmp_path / "README.md").read_text().startswith("---\n")


def test_closed_output_pipe_ends_quietly(monkeypatch, capsys):
    import zoo.cli

    def write_to_closed_pipe(args):
        raise BrokenPipeError

    class TerminalOutput:
        def fileno(self) -> int:
            return 1

    redirected = []
    monkeypatch.setattr(zoo.cli, "cmd_list", write_to_closed_pipe)
    monkeypatch.setattr(zoo.cli.os, "dup2", lambda source, target: redirected.append(target))
    monkeypatch.setattr(zoo.cli.sys, "stdout", TerminalOutput())

    code = main(["list"])

    assert code == 141
    assert redirected == [1]
    assert capsys.readouterr().err == ""


def _motion_npz(path, frames=4):
    import numpy as np

    from zoo.data.synthheads.dataset import BASE_SCALE, BASE_TRANSLATION

    np.savez(
        path, identity=np.zeros((frames, 32), np.float32), expression=np.zeros((frames, 19), np.float32),
        jaw=np.zeros(frames, np.float32), gaze=np.zeros((frames, 2), np.float32), pose=np.zeros((frames, 3), np.float32),
        scale=np.full(frames, BASE_SCALE, np.float32), translation=np.tile(np.asarray(BASE_TRANSLATION, np.float32), (frames, 1)),
    )
    return path


def test_predict_video_from_motion_npz(bundled_checkpoints, tmp_path, capsys):
    motion = _motion_npz(tmp_path / "motion.npz")
    output = tmp_path / "out.gif"

    assert main(["predict", "head2head-synthheads", str(motion), "--output", str(output), "--max-frames", "3"]) == 0

    [result] = _json_lines(capsys.readouterr().out)
    assert result["output"] == str(output)
    assert output.is_file()
    assert result["num_frames"] == 3
    assert result["driving_frames"] == 4


def test_predict_video_rejects_bad_output(bundled_checkpoints, tmp_path, capsys):
    motion = _motion_npz(tmp_path / "motion.npz")
    folder = tmp_path / "folder.gif"
    folder.mkdir()

    assert main(["predict", "head2head-synthheads", str(motion), "--output", str(folder)]) == 1
    assert "is a folder or its folder does not exist" in capsys.readouterr().err
    assert main(["predict", "head2head-synthheads", str(motion), "--output", str(tmp_path / "out.mp4")]) == 1
    assert "use a .gif or .png name" in capsys.readouterr().err


def test_predict_video_npz_must_be_alone(bundled_checkpoints, tmp_path, digit_pngs, capsys):
    motion = _motion_npz(tmp_path / "motion.npz")

    assert main(["predict", "head2head-synthheads", str(motion), str(digit_pngs[0]), "--output", str(tmp_path / "o.gif")]) == 1
    assert "must be the only input" in capsys.readouterr().err


def test_predict_generic_few_shot_model_notes_it(bundled_checkpoints, tmp_path, capsys):
    motion = _motion_npz(tmp_path / "motion.npz")

    assert main(["predict", "head2headfs-synthheads", str(motion), "--output", str(tmp_path / "o.gif")]) == 0
    assert "generic model, not adapted" in capsys.readouterr().err


def test_video_frames_in_natural_order(tmp_path):
    from PIL import Image

    from zoo.cli import _video_frame_paths

    for index in (1, 2, 10):
        Image.new("RGB", (32, 32)).save(tmp_path / f"frame_{index}.png")

    assert [p.rsplit("/", 1)[-1] for p in _video_frame_paths([str(tmp_path)])] == ["frame_1.png", "frame_2.png", "frame_10.png"]
