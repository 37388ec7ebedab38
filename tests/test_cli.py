"""`fastaug demo`: grid PNG and HTML preview of a recorded batch, throughput printed."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import fastaug
from fastaug import preview
from fastaug.cli import main


def test_preview_lists_each_samples_calls(tmp_path):
    x = torch.randint(0, 256, (3, 3, 16, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    aug = fastaug.Compose([fastaug.RandomHorizontalFlip(), fastaug.ColorJitter(0.5, 0.5)], seed=3)
    y, record = aug(x, indices=torch.tensor([7, 8, 9]), return_record=True, backend="torch")
    png, page = preview.write(str(tmp_path), y, record, "t", cols=2)
    grid = np.asarray(Image.open(png))
    assert grid.shape == (2 * (16 + 4), 2 * (20 + 4), 3)
    assert np.array_equal(grid[:16, 24:44], y[1].permute(1, 2, 0).numpy())
    text = open(page).read()
    assert text.count("<figure>") == 3 and "sample 9" in text
    for i in range(3):
        for name, _ in record.calls(i):
            assert name in text
    assert len(re.findall(r"<li>adjust_brightness\(brightness_factor=", text)) == 3


def test_preview_rejects_float_batches(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        preview.write(str(tmp_path), torch.rand(2, 3, 4, 4), None, "t")


def test_demo_command(tmp_path, capsys):
    main(["demo", "--out", str(tmp_path), "--count", "4", "--backend", "numba"])
    out = capsys.readouterr().out
    assert (tmp_path / "grid.png").exists() and (tmp_path / "preview.html").read_text().count("<figure>") == 4
    assert re.search(r"\d+ img/s", out)
