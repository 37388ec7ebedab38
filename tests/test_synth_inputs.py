"""`fastaug synth` with a user's own folder: bad files, 16-bit, alpha, grayscale, EXIF, paths, counts, the command line."""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

import fastaug
from fastaug import imagefiles as IF
from fastaug import shards as SH
from fastaug import synth as S
from fastaug.cli import main

FLIP = fastaug.Compose([fastaug.RandomHorizontalFlip(p=1.0)], seed=0)  # a known geometric op: outputs are checkable


def rgb(h=12, w=16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "in"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
    Image.fromarray(rgb(seed=1)).save(root / "cat" / "a.png")
    Image.fromarray(rgb(seed=2)).save(root / "cat" / "b.jpg", quality=95)
    Image.fromarray(rgb(seed=3)).save(root / "dog" / "c.PNG")
    return root


def truncated_jpeg(path) -> None:
    buf = io.BytesIO()
    Image.fromarray(rgb(64, 64, 9)).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def synth(folder, out, count, policy=FLIP, **kw):
    return S.synthesize(S.folder_sources(folder), out, count, policy, {"seed": 0}, batch=4, backend="numba", progress=False, **kw)


def read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_truncated_file_is_skipped_named_counted_and_never_blocks_a_rerun(folder, tmp_path):
    truncated_jpeg(folder / "dog" / "broken.jpg")
    out = tmp_path / "out"
    with pytest.warns(S.SkippedImageWarning, match="broken.jpg"):
        summary = synth(folder, out, 8)
    sources = S.folder_sources(folder)
    bad = [k for k in range(8) if sources[k % 4].name == "broken"]
    assert summary.skipped == len(bad) == 2 and summary.written == 6 and list(summary.unreadable) == [str(folder / "dog" / "broken.jpg")]
    rows = list(csv.DictReader(open(out / S.MANIFEST)))
    assert [int(r["index"]) for r in rows] == [k for k in range(8) if k not in bad]
    with pytest.warns(S.SkippedImageWarning):
        again = synth(folder, out, 8)  # the same command again: accepted, the bad file tried again
    assert again.written == 0 and again.skipped == 2
    Image.fromarray(rgb(seed=4)).save(folder / "dog" / "broken.jpg")  # repaired: its outputs are written now
    assert synth(folder, out, 8).written == 2


@pytest.mark.parametrize("fmt", ["tar", "npy"])
def test_shards_retry_unreadable_sources_on_a_rerun(folder, tmp_path, fmt):
    truncated_jpeg(folder / "dog" / "broken.jpg")
    out, options = tmp_path / "out", S.Options(format=fmt, shard_size=4)
    with pytest.warns(S.SkippedImageWarning, match="broken.jpg"):
        first = synth(folder, out, 8, options=options)
    sources = S.folder_sources(folder)
    bad = [k for k in range(8) if sources[k % 4].name == "broken"]
    assert first.written == 6 and first.skipped == 2
    skipped = sorted(k for p in out.glob("*.idx.json") for k in SH.read_index(p)["skipped"])
    assert skipped == bad
    with pytest.warns(S.SkippedImageWarning):
        again = synth(folder, out, 8, options=options)  # still unreadable: tried again, still skipped
    assert again.skipped == 2 and again.existing == 0
    Image.fromarray(rgb(seed=4)).save(folder / "dog" / "broken.jpg")  # repaired: its shards are written again
    fixed = synth(folder, out, 8, options=options)
    assert fixed.written == 8 and fixed.skipped == 0
    reader = SH.read_tar_shard if fmt == "tar" else SH.read_npy_shard
    got = [m["index"] for p in sorted(out.glob(f"shard-*.{fmt}")) for _, m in reader(p)]
    assert got == list(range(8)) and all(not SH.read_index(p)["skipped"] for p in out.glob("*.idx.json"))
    rows = list(csv.DictReader(open(out / S.MANIFEST)))
    assert [int(r["index"]) for r in rows] == list(range(8))
    done = synth(folder, out, 8, options=options)  # complete now: nothing redone
    assert done.written == 0 and done.existing == 8


def test_strict_stops_at_an_unreadable_file_naming_it(folder, tmp_path, capsys):
    (folder / "cat" / "notes.png").write_text("not an image")
    with pytest.raises(IF.UnreadableImage, match="notes.png"):
        synth(folder, tmp_path / "o", 4, strict=True)
    with pytest.raises(SystemExit) as e:
        main(["synth", "--input", str(folder), "--out", str(tmp_path / "o2"), "--count", "4", "--strict", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "notes.png" in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_outputs_that_cannot_be_encoded_are_failed_not_skipped_counted_apart_and_retried(folder, tmp_path, capsys):
    """A source wider than WebP allows (16,383 px) decodes and augments, but its outputs cannot be encoded: they are
    ``failed`` (named, counted apart from the unreadable sources' ``skipped``), the run goes on, a rerun retries them."""
    Image.fromarray(rgb(2, 16400, 5)).save(folder / "cat" / "pano.png")
    truncated_jpeg(folder / "dog" / "broken.jpg")
    sources = S.folder_sources(folder)
    names = [s.name for s in sources]
    pano = [k for k in range(10) if names[k % 5] == "pano"]
    broken = [k for k in range(10) if names[k % 5] == "broken"]
    out, webp = tmp_path / "out", S.Options(format="webp")
    with pytest.warns(S.FailedOutputWarning, match=r"cat/pano_0000002\.webp: .*16383"):
        summary = synth(folder, out, 10, options=webp)
    assert (summary.written, summary.skipped, summary.failed) == (6, 2, 2)
    assert sorted(summary.failures) == [f"cat/pano_{k:07d}.webp" for k in pano] and len(summary.unreadable) == 1
    assert "2 skipped (1 unreadable files), 2 failed" in str(summary)
    assert not list((out / "cat").glob("pano_*")) and not list(out.rglob("*.tmp*"))
    rows = list(csv.DictReader(open(out / S.MANIFEST)))
    assert [int(r["index"]) for r in rows] == [k for k in range(10) if k not in pano + broken]
    with pytest.warns(S.FailedOutputWarning):
        again = synth(folder, out, 10, options=webp)  # tried again, still failing
    assert (again.written, again.existing, again.failed) == (0, 6, 2)
    (folder / "dog" / "broken.jpg").unlink()  # --strict would stop at it first
    with pytest.raises(S.FailedOutput, match="pano_0000002.webp"):
        synth(folder, tmp_path / "strict", 10, options=webp, strict=True)
    truncated_jpeg(folder / "dog" / "broken.jpg")
    (folder / "cat" / "pano.png").unlink()
    Image.fromarray(rgb(seed=6)).save(folder / "cat" / "pano.png")  # now encodable: its outputs are written
    assert synth(folder, out, 10, options=webp).written == 2
    # tar shards of WebP: the shard lists its failed outputs and is written again by a rerun
    Image.fromarray(rgb(2, 16400, 5)).save(folder / "cat" / "pano.png")
    tar = S.Options(format="tar", shard_image="webp", shard_size=5)
    with pytest.warns(S.FailedOutputWarning, match=r"shard-0000000-0000005\.tar:0000002\.webp"):
        first = synth(folder, tmp_path / "tar", 10, options=tar)
    assert (first.written, first.skipped, first.failed) == (6, 2, 2)
    assert sorted(k for p in (tmp_path / "tar").glob("*.idx.json") for k in SH.read_index(p)["failed"]) == pano
    assert not any(SH.is_done(p) for p in (tmp_path / "tar").glob("*.idx.json"))
    # the command line: the summary line counts them apart; the warnings name them; the exit status is not 0
    with pytest.raises(SystemExit, match="2 outputs could not be written"):
        main(["synth", "--input", str(folder), "--out", str(tmp_path / "cli"), "--count", "10", "--format", "webp", "--no-progress"])
    captured = capsys.readouterr()
    assert "6 written now, 0 already there, 2 skipped (1 unreadable files), 2 failed" in captured.out
    assert "could not write cat/pano_0000002.webp" in captured.err and "skipped" in captured.err and "broken.jpg" in captured.err


def test_many_failed_outputs_are_warned_ten_at_a_time(folder, tmp_path):
    Image.fromarray(rgb(2, 16400, 5)).save(folder / "cat" / "pano.png")
    with pytest.warns(S.FailedOutputWarning) as record:
        summary = synth(folder, tmp_path / "out", 4 * 14, options=S.Options(format="webp"))
    assert summary.failed == 14 and summary.written == 42
    texts = [str(w.message) for w in record if issubclass(w.category, S.FailedOutputWarning)]
    assert len(texts) == S.WARN_FAILED + 1 and texts[-1].startswith("4 more outputs could not be written")


def test_a_write_error_fails_its_output_but_a_full_disk_stops_the_run(folder, tmp_path, monkeypatch):
    import errno

    write = S._Committer.write

    def refuse(code):
        def write_bytes(self, path, data):
            if "b_" in path.name:
                raise OSError(code, os.strerror(code), str(path))
            write(self, path, data)

        return write_bytes

    monkeypatch.setattr(S._Committer, "write", refuse(errno.EACCES))
    with pytest.warns(S.FailedOutputWarning, match="cat/b_0000001.png: .*Permission denied"):
        summary = synth(folder, tmp_path / "out", 6)
    assert (summary.written, summary.skipped, summary.failed) == (4, 0, 2)
    monkeypatch.setattr(S._Committer, "write", refuse(errno.ENOSPC))
    with pytest.raises(OSError, match="No space left"):
        synth(folder, tmp_path / "full", 6)


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    values = np.array([[0, 257, 30000, 65535]] * 4, dtype=np.uint16)
    Image.fromarray(values).save(root / "deep.png")
    with Image.open(root / "deep.png") as im:
        assert im.mode.startswith("I")  # a real 16-bit file
    color, alpha = IF.decode(root / "deep.png")
    assert alpha is None and color.shape == (4, 4, 1)
    assert color[0, :, 0].tolist() == [0, 1, 117, 255]
    synth(root, tmp_path / "out", 1)
    assert read(tmp_path / "out" / "deep_0000000.png")[0].tolist() == [255, 117, 1, 0]  # flipped


def test_float_images_are_scaled_by_their_range(tmp_path):
    unit = np.array([[0.0, 0.5, 1.0, -0.2]] * 2, dtype=np.float32)  # max <= 1: 0..1, times 255
    Image.fromarray(unit, mode="F").save(tmp_path / "unit.tif")
    wide = np.array([[0.0, 127.6, 255.0, 300.0]] * 2, dtype=np.float32)  # max > 1: already 0..255
    Image.fromarray(wide, mode="F").save(tmp_path / "wide.tif")
    with Image.open(tmp_path / "unit.tif") as im:
        assert im.mode == "F"
    assert IF.decode(tmp_path / "unit.tif")[0][0, :, 0].tolist() == [0, 128, 255, 0]
    assert IF.decode(tmp_path / "wide.tif")[0][0, :, 0].tolist() == [0, 128, 255, 255]


def test_32_bit_integer_images_are_scaled_by_their_range(tmp_path):
    Image.fromarray(np.array([[0, 7, 200, 255]] * 2, dtype=np.int32)).save(tmp_path / "eight.tif")  # 8-bit values: kept
    Image.fromarray(np.array([[0, 257, 30000, 65535]] * 2, dtype=np.int32)).save(tmp_path / "deep.tif")  # 16-bit scaling
    with Image.open(tmp_path / "eight.tif") as im:
        assert im.mode == "I"
    assert IF.decode(tmp_path / "eight.tif")[0][0, :, 0].tolist() == [0, 7, 200, 255]
    assert IF.decode(tmp_path / "deep.tif")[0][0, :, 0].tolist() == [0, 1, 117, 255]


def rgba_image() -> np.ndarray:
    a = np.zeros((6, 8, 4), np.uint8)
    a[..., 0], a[..., 1], a[..., 2] = 200, 100, 0
    a[:, :4, 3] = 255  # left half opaque, right half transparent
    a[:, 4:, 3] = 0
    a[0, 0, 3] = 128
    return a


def test_alpha_is_composited_on_the_background_or_kept(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(rgba_image()).save(root / "t.png")
    color, alpha = IF.decode(root / "t.png")
    assert alpha is None and color[1, 0].tolist() == [200, 100, 0] and color[1, 7].tolist() == [255, 255, 255]  # white
    assert color[0, 0].tolist() == [round((200 * 128 + 255 * 127) / 255), round((100 * 128 + 255 * 127) / 255), round(255 * 127 / 255)]
    black, _ = IF.decode(root / "t.png", IF.DecodeOptions(background=(0, 0, 0)))
    assert black[1, 7].tolist() == [0, 0, 0]
    synth(root, tmp_path / "kept", 1, options=S.Options(decode=IF.DecodeOptions(keep_alpha=True)))
    kept = read(tmp_path / "kept" / "t_0000000.png")
    assert kept.shape == (6, 8, 4) and kept[1, :, 3].tolist() == [0] * 4 + [255] * 4  # alpha moved with the flip
    assert kept[1, 7, :3].tolist() == [200, 100, 0]
    with pytest.raises(ValueError, match="alpha"):
        S.Options("jpeg", decode=IF.DecodeOptions(keep_alpha=True))


def test_grayscale_stays_one_channel_or_becomes_rgb(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(rgb()[..., 0]).save(root / "g.png")
    synth(root, tmp_path / "keep", 2)
    assert read(tmp_path / "keep" / "g_0000000.png").shape == (12, 16)
    synth(root, tmp_path / "rgb", 2, options=S.Options(decode=IF.DecodeOptions(gray="rgb")))
    out = read(tmp_path / "rgb" / "g_0000000.png")
    assert out.shape == (12, 16, 3) and np.array_equal(out[..., 0], rgb()[:, ::-1, 0])


def test_exif_orientation_is_applied(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    img = Image.fromarray(rgb(10, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(root / "phone.jpg", exif=exif, quality=95)
    color, _ = IF.decode(root / "phone.jpg")
    assert color.shape == (20, 10, 3)


def test_settings_compare_normalised_absolute_paths(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(folder.parent)
    out = str(tmp_path / "out")
    for spelling in ("in", "in/", "./in", str(folder)):
        main(["synth", "--input", spelling, "--out", out, "--count", "2", "--backend", "numba", "--no-progress"])


def test_a_smaller_count_is_refused_or_trims_files_and_labels(folder, tmp_path):
    out = tmp_path / "out"
    synth(folder, out, 9)
    with pytest.raises(ValueError, match="--trim"):
        synth(folder, out, 5)
    assert len(list(out.rglob("*_*.*"))) == 9
    synth(folder, out, 5, trim=True)
    rows = list(csv.DictReader(open(out / S.MANIFEST)))
    assert [int(r["index"]) for r in rows] == list(range(5))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*_*.*")) == sorted(r["file"] for r in rows)
    shards = S.Options("npy", shard_size=4)
    synth(folder, tmp_path / "s", 9, options=shards)
    with pytest.raises(ValueError, match="--trim"):
        synth(folder, tmp_path / "s", 6, options=shards)
    synth(folder, tmp_path / "s", 6, options=shards, trim=True)
    names = sorted(p.name for p in (tmp_path / "s").glob("shard-*"))
    assert names == [f"shard-{r}.{ext}" for r in ("0000000-0000004", "0000004-0000006") for ext in ("idx.json", "npy")]
    assert len(list(csv.DictReader(open(tmp_path / "s" / S.MANIFEST)))) == 6


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    argv = ["synth", "--input", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--count", "2"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "missing" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="missing"):
        main(argv + ["--debug"])
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path / "o"), "--count", "2", "--background", "red"])
    assert "--background" in capsys.readouterr().err


def test_every_option_has_help_and_a_default(capsys):
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    text = capsys.readouterr().out
    assert "224x224" in text and ".jpg" in text and "--keep-alpha" in text  # --policy default explained, *.jpg listed
    import argparse

    from fastaug import cli

    parser = argparse.ArgumentParser()
    cli._synth_parser(parser.add_subparsers())
    s = parser._subparsers._group_actions[0].choices["synth"]
    for action in s._actions:
        if action.dest == "help":
            continue
        assert action.help, action.dest
        assert action.required or "default" in action.help, action.dest


def test_jpg_and_any_case_suffix_are_inputs(folder):
    names = sorted(f"{s.label}/{S.Path(s.path).name}" for s in S.folder_sources(folder))
    assert names == ["cat/a.png", "cat/b.jpg", "dog/c.PNG"]


def test_mixed_sizes_and_channels_each_match_the_policy(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(rgb(12, 16)).save(root / "a.png")
    Image.fromarray(rgb(10, 14)[..., 0]).save(root / "b.png")
    Image.fromarray(rgb(12, 16, 5)).save(root / "c.png")
    pol = fastaug.Compose([fastaug.RandomAffine(20, interpolation="bilinear"), fastaug.ColorJitter(0.3, 0.3)], seed=0)
    synth(root, tmp_path / "out", 9, policy=pol)
    sources = S.folder_sources(root)
    for k in range(9):
        src = torch.from_numpy(np.array(sources[k % 3].planes()[0])).permute(2, 0, 1)[None]
        want = pol(src, indices=torch.tensor([k]), backend="numba")[0].permute(1, 2, 0).numpy()
        got = read(tmp_path / "out" / S.output_name(sources[k % 3], k))
        assert np.array_equal(got.reshape(want.shape), want)


def test_policy_accepts_every_policy_and_saved_json(tmp_path, capsys):
    from fastaug import cli, serialize

    fastaug.MarkovPolicy.from_autoaugment().to_json(tmp_path / "markov.json")
    fastaug.SubPolicies([[("Rotate", 0.5, 0.3), ("Color", 0.2, 0.7)]]).to_json(tmp_path / "found.json")
    serialize.to_json(fastaug.Compose([fastaug.RandomHorizontalFlip(), fastaug.ColorJitter(0.2)]), tmp_path / "compose.json")
    serialize.to_json(fastaug.RandomHorizontalFlip(p=1.0), tmp_path / "flip.json")  # a bare transform
    for name in (*cli.POLICIES, *(str(tmp_path / f) for f in ("markov.json", "found.json", "compose.json", "flip.json"))):
        assert cli.policy_by_name(name, 3).seed == 3
    assert isinstance(cli.policy_by_name(str(tmp_path / "flip.json"), 3), fastaug.Compose)
    main(["synth", "--out", str(tmp_path / "of"), "--count", "2", "--policy", str(tmp_path / "flip.json"), "--no-progress"])
    assert "2 written now" in capsys.readouterr().out
    main(["synth", "--out", str(tmp_path / "o"), "--count", "2", "--policy", str(tmp_path / "found.json"), "--no-progress"])
    assert "2 written now" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path / "o2"), "--count", "2", "--policy", "nope"])
    assert "--policy must be one of" in capsys.readouterr().err


def test_policy_accepts_a_converted_pipeline_with_fallback_ops(tmp_path, capsys):
    """A converted pipeline with a per-sample fallback op (fastaug.Pipeline), saved as JSON, runs in synth and takes
    --seed in every segment."""
    import tv

    if tv.load() is None:
        pytest.skip("torchvision not installed")
    import torchvision.transforms.v2 as V

    from fastaug import cli

    pipe = fastaug.from_torchvision(V.Compose([V.RandomHorizontalFlip(0.5), V.CenterCrop(24), V.RandomInvert(0.5)]), fallback=True)
    pipe.to_json(tmp_path / "pipe.json")
    loaded = cli.policy_by_name(str(tmp_path / "pipe.json"), 7)
    assert loaded.seed == 7 and all(s.seed == 7 for s in loaded.segments)
    main(["synth", "--out", str(tmp_path / "o"), "--count", "3", "--policy", str(tmp_path / "pipe.json"), "--no-progress"])
    assert "3 written now" in capsys.readouterr().out


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_encoder_writes_pillows_bytes(channels, monkeypatch):
    """PNG outputs are filtered by fastaug and deflated by zlib with Pillow's settings: Pillow's bytes exactly (each row's
    filter, the IDAT cuts at 65,536 or 4 x width bytes), at every level; level 0 is Pillow's own."""
    g = np.random.default_rng(channels)
    images = [g.integers(0, 256, (23, 31, channels), dtype=np.uint8), np.full((8, 9, channels), 201, np.uint8),
              np.cumsum(g.integers(0, 3, (64, 48, channels)), axis=1).astype(np.uint8),  # smooth: up / sub / Paeth rows
              (np.arange(1 * 5 * channels) % 256).astype(np.uint8).reshape(1, 5, channels),
              g.integers(0, 256, (3, 17000, channels), dtype=np.uint8)]  # fmt: skip  (several IDAT chunks, 4 * width each)
    for level in (1, 6, 9):
        assert IF._png_like_pillow(level)
        for image in images:
            assert IF.encode(image, "png", level) == IF._pillow_encode(image, "png", level), (image.shape, level)
    assert not IF._png_like_pillow(0)
    called = []
    monkeypatch.setattr(IF, "_pillow_encode", lambda *a: called.append(a[2]) or b"pillow")
    assert IF.encode(images[0], "png", 6) != b"pillow" and IF.encode(images[0], "png", 0) == b"pillow" and called == [0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(IF.encode(images[2], "png", 6)))).reshape(images[2].shape), images[2])
