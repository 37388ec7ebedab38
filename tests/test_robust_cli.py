"""fastaug robust on the command line: report, cache, synthesis, one-line errors."""

import json

import pytest

from fastaug.cli import main

MODEL = """
def predict(batch):
    return (batch.float().mean((1, 2, 3)) > 60).long()
"""


def test_robust_command_writes_the_report_cache_and_synthesis(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    model = tmp_path / "model.py"
    model.write_text(MODEL)
    out = tmp_path / "report"
    argv = ["robust", "--model", str(model), "--data", "digits", "--samples", "12", "--step", "0.5", "--ops", "brighten,rotate",
            "--labels", "model", "--out", str(out), "--no-progress", "--synth-count", "5"]  # fmt: skip
    main(argv)
    assert "2 ops on 12 images" in capsys.readouterr().out
    assert (out / "index.html").exists() and (out / "plots" / "rotate.png").exists()
    assert list(json.loads((out / "boundaries.json").read_text())["curves"]) == ["brighten", "rotate"]
    assert len(json.loads((out / "synth" / "manifest.json").read_text())["outputs"]) == 5
    main(argv)  # a rerun resumes from the cache and the synthesis's files
    assert "synth: 0 samples written now" in capsys.readouterr().out


def test_robust_command_refuses_a_cache_of_another_model(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "report"
    for k, threshold in enumerate((60, 70)):
        model = tmp_path / "model.py"
        model.write_text(MODEL.replace("60", str(threshold)))
        argv = ["robust", "--model", str(model), "--samples", "4", "--step", "0.5", "--ops", "brighten", "--out", str(out),
                "--no-progress"]  # fmt: skip
        if k == 0:
            main(argv)
            continue
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert "boundaries.json' holds a search with other settings (model: 'sha256:" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "missing.py"], "fastaug robust: --model: no such file 'missing.py'"),
        (["--ops", "brighten,nope"], "fastaug robust: ops: unknown op 'nope'"),
        (["--step", "0"], "fastaug robust: step must be in (0, 1], got 0.0"),
        (["--samples", "-3"], "fastaug robust: --samples must be >= 1, got -3"),
        (["--synth-count", "-1"], "fastaug robust: --synth-count must be >= 0, got -1"),
    ],
)
def test_robust_command_errors_are_one_line(tmp_path, args, message):
    model = tmp_path / "model.py"
    model.write_text(MODEL)
    argv = ["robust", "--model", str(model), "--samples", "4", "--out", str(tmp_path / "o"), "--no-progress"]
    for k in range(0, len(args), 2):
        if args[k] in argv:
            argv[argv.index(args[k]) + 1] = args[k + 1]
        else:
            argv += args[k : k + 2]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
