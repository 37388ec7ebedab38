"""`fastaug synth`: labels from folders, deterministic outputs, atomic writes, resume after a kill."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

import fastaug
from fastaug import shards as SH
from fastaug import synth as S
from fastaug.cli import main


@pytest.fixture
def folder(tmp_path):
    g = np.random.default_rng(0)
    root = tmp_path / "in"
    for label, sizes in (("cat", [(20, 24), (20, 24)]), ("dog", [(18, 30)])):
        (root / label).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / label / f"img{i}.png")
    return root


def policy(seed: int = 0) -> fastaug.Compose:
    return fastaug.Compose([fastaug.RandomAffine(20, interpolation="bilinear"), fastaug.ColorJitter(0.3, 0.3)], seed=seed)


def run(folder, out, count, **kw):
    return S.synthesize(S.folder_sources(folder), out, count, policy(), {"seed": 0}, batch=4, backend="torch", progress=False, **kw)


def files(out) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.png"))}


def test_labels_and_manifest(folder, tmp_path):
    out = tmp_path / "out"
    assert run(folder, out, 7).written == 7
    rows = list(csv.DictReader(open(out / S.MANIFEST)))
    assert len(rows) == 7 and {r["label"] for r in rows} == {"cat", "dog"}
    for r in rows:
        assert (out / r["file"]).parent.name == r["label"]
        img = np.asarray(Image.open(out / r["file"]))
        assert img.dtype == np.uint8 and img.shape == ((18, 30, 3) if r["label"] == "dog" else (20, 24, 3))


def test_outputs_are_the_policy_applied_to_each_index(folder, tmp_path):
    out = tmp_path / "out"
    run(folder, out, 5)
    sources = S.folder_sources(folder)
    for k in range(5):
        src = torch.from_numpy(np.array(Image.open(folder / sources[k % 3].label / f"{sources[k % 3].name}.png")))
        want = policy()(src.permute(2, 0, 1)[None], indices=torch.tensor([k]), backend="torch")[0]
        got = torch.from_numpy(np.array(Image.open(out / S.output_name(sources[k % 3], k)))).permute(2, 0, 1)
        assert torch.equal(got, want)


KILLED_RUN = """
import sys
import fastaug
from fastaug import synth as S
policy = fastaug.Compose([fastaug.RandomAffine(20, interpolation="bilinear"), fastaug.ColorJitter(0.3, 0.3)], seed=0)
options = S.Options(sys.argv[3], shard_size=16)
S.synthesize(S.folder_sources(sys.argv[1]), sys.argv[2], int(sys.argv[4]), policy, {"seed": 0}, batch=4, backend="numba",
             progress=False, options=options, threads=1)
"""


def sigkill_midway(folder, out, fmt: str, count: int, done) -> None:
    """Run a synthesis in a subprocess and SIGKILL it once ``done(out)`` holds (a real kill: no cleanup runs)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(folder), str(out), fmt, str(count)])
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and done(out)):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("fmt", ["png", "tar", "npy"])
def test_resume_after_a_sigkill_writes_what_a_clean_run_writes(folder, tmp_path, fmt):
    count = 400
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    opts = S.Options(fmt, shard_size=16)
    S.synthesize(S.folder_sources(folder), clean, count, policy(), {"seed": 0}, batch=4, backend="numba", progress=False, options=opts)
    pattern = "*/*.png" if fmt == "png" else "shard-*.idx.json"
    sigkill_midway(folder, killed, fmt, count, lambda out: len(list(out.glob(pattern))) >= 3)
    partial = len(list(killed.glob(pattern)))
    summary = S.synthesize(S.folder_sources(folder), killed, count, policy(), {"seed": 0}, batch=4, backend="numba", progress=False,
                           options=opts)  # fmt: skip
    assert 0 < summary.existing < count and summary.written == count - summary.existing and partial < count
    assert tree(killed) == tree(clean) and not list(killed.rglob(".*.tmp"))
    again = S.synthesize(S.folder_sources(folder), killed, count + 20, policy(), {"seed": 0}, batch=4, backend="numba", progress=False,
                         options=opts)  # fmt: skip
    assert again.written == 20  # a larger count extends the set


def tree(out) -> dict[str, bytes]:
    """Every file under ``out`` (outputs, shards, indexes, labels.csv, synth.json) by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_other_settings_refuse_to_mix(folder, tmp_path):
    out = tmp_path / "out"
    run(folder, out, 2)
    with pytest.raises(ValueError, match="other settings"):
        S.synthesize(S.folder_sources(folder), out, 2, policy(), {"seed": 1}, progress=False)


def test_bad_inputs(folder, tmp_path):
    with pytest.raises(ValueError, match="input"):
        S.folder_sources(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        S.folder_sources(tmp_path / "empty")
    with pytest.raises(ValueError, match="count"):
        run(folder, tmp_path / "o", -1)
    normalized = fastaug.Compose([fastaug.Normalize([0.5] * 3, [0.2] * 3)])
    with pytest.raises(ValueError, match="uint8"):
        S.synthesize(S.folder_sources(folder), tmp_path / "o2", 2, normalized, {}, backend="torch", progress=False)


def test_command_line_builtin(tmp_path, capsys):
    main(["synth", "--out", str(tmp_path / "s"), "--count", "3", "--backend", "torch"])
    assert len(files(tmp_path / "s")) == 3
    assert "3 outputs" in capsys.readouterr().out


def test_one_two_local_workers_and_ray_write_byte_identical_datasets(folder, tmp_path):
    opts = S.Options("tar", shard_size=8)

    def make(out, **kw):
        return S.synthesize(S.folder_sources(folder), out, 30, policy(), {"seed": 0}, batch=4, backend="numba", progress=False,
                            options=opts, **kw)  # fmt: skip

    make(tmp_path / "one")
    reference = tree(tmp_path / "one")
    assert sum(name.endswith(".tar") for name in reference) == 4
    assert make(tmp_path / "two", workers=2).written == 30
    assert tree(tmp_path / "two") == reference
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert make(tmp_path / "ray", ray_address="local").written == 30
    finally:
        ray.shutdown()
    assert tree(tmp_path / "ray") == reference


def test_shards_read_back_as_the_policy_outputs(folder, tmp_path):
    from fastaug import shards

    outs = {}
    for fmt in ("tar", "npy", "png"):
        S.synthesize(S.folder_sources(folder), tmp_path / fmt, 7, policy(), {"seed": 0}, batch=4, backend="numba", progress=False,
                     options=S.Options(fmt, shard_size=5))  # fmt: skip
    sources = S.folder_sources(folder)
    for k in range(7):
        outs[k] = np.asarray(Image.open(tmp_path / "png" / S.output_name(sources[k % 3], k)))
    for fmt, read in (("tar", shards.read_tar_shard), ("npy", shards.read_npy_shard)):
        got = read(tmp_path / fmt / "shard-0000000-0000005.idx.json") + read(tmp_path / fmt / "shard-0000005-0000007.idx.json")
        assert [m["index"] for _, m in got] == list(range(7))
        for arr, m in got:
            assert np.array_equal(arr, outs[m["index"]]) and m["label"] == sources[m["index"] % 3].label


def test_sources_are_decoded_once_per_run_and_the_cache_changes_no_byte(folder, tmp_path, monkeypatch):
    from fastaug import imagefiles

    decoded = []
    decode = imagefiles.decode
    monkeypatch.setattr(imagefiles, "decode", lambda path, options=None: decoded.append(path) or decode(path, options))
    opts = S.Options("npy", shard_size=4)
    trees = []
    for cache_mb in (512, 0):
        decoded.clear()
        out = tmp_path / f"cache{cache_mb}"
        S.synthesize(S.folder_sources(folder), out, 12, policy(), {"seed": 0}, batch=4, backend="numba", progress=False, options=opts,
                     cache_mb=cache_mb)  # fmt: skip
        trees.append(tree(out))
        assert len(decoded) == 3  # 3 sources; one process runs its 3 ranges through one pipeline: its read-ahead keeps them
    assert not S._SOURCES.items  # the driver forgets the run's images at the end
    for cache_mb in (512, 0):  # a worker process runs ranges one by one: the process's cache keeps the sources between them
        decoded.clear()
        out = tmp_path / f"worker{cache_mb}"
        job = S.Job(S.folder_sources(folder), str(out), 12, policy(), opts, 4, "numba", cache_bytes=cache_mb << 20, run=f"r{cache_mb}")
        out.mkdir()
        for a in range(0, 12, 4):
            assert S.run_unit(job, a, a + 4)["written"] == 4
        S._write_manifest(job)
        trees.append(tree(out))
        assert len(decoded) == (3 if cache_mb else 9)  # 3 ranges of 4 outputs each use all 3 sources
        S._SOURCES.drop(job.run)
    assert trees[0] == trees[1] and all({k: v for k, v in t.items() if k != "synth.json"} ==
                                        {k: v for k, v in trees[0].items() if k != "synth.json"} for t in trees[2:])  # fmt: skip
    with pytest.raises(ValueError, match="cache-mb"):
        run(folder, tmp_path / "o", 2, cache_mb=-1)


def test_settings_record_the_backend_and_a_rerun_on_another_is_refused(folder, tmp_path, capsys):
    import json

    out = tmp_path / "out"
    summary = S.synthesize(S.folder_sources(folder), out, 3, policy(), {"seed": 0}, batch=4, progress=False)
    assert json.loads((out / S.SETTINGS).read_text())["backend"] == "numba" == summary.backend  # auto on CPU tensors
    assert "numba backend" in str(summary)
    with pytest.raises(ValueError, match="backend: 'numba' then, 'torch' now"):
        run(folder, out, 3)


def test_a_run_that_did_not_record_its_backend_resumes_with_a_warning(folder, tmp_path):
    import json

    out = tmp_path / "out"
    S.synthesize(S.folder_sources(folder), out, 2, policy(), {"seed": 0}, batch=4, progress=False)
    settings = json.loads((out / S.SETTINGS).read_text())
    del settings["backend"]  # as written before the backend was recorded
    (out / S.SETTINGS).write_text(json.dumps(settings))
    with pytest.warns(UserWarning, match="does not record the backend"):
        summary = S.synthesize(S.folder_sources(folder), out, 3, policy(), {"seed": 0}, batch=4, progress=False)
    assert summary.written == 1 and json.loads((out / S.SETTINGS).read_text())["backend"] == "numba"


def test_a_shard_whose_writer_fails_at_close_leaves_no_temporary(tmp_path):
    writer = SH.ShardWriter(tmp_path, 0, 2, "npy")
    writer.add({"index": 0, "label": 1, "class": "a", "source": "a.png"}, np.zeros((4, 4, 3), np.uint8))
    writer._spool.error = OSError("No space left on device")  # as the background writer reports a failed write
    with pytest.raises(OSError, match="No space"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_progress_with_workers_counts_every_output_and_the_shards(folder, tmp_path, capsys):
    S.synthesize(S.folder_sources(folder), tmp_path / "out", 30, policy(), {"seed": 0}, batch=4, backend="numba", progress=True,
                 options=S.Options("npy", shard_size=8), workers=2)  # fmt: skip
    lines = capsys.readouterr().err.replace("\r", "\n").split()
    text = " ".join(lines)
    assert "30/30" in text and "shards 4/4" in text and text.count("30/30") == 1
    reports = []
    reporter = S._Reporter(reports.append, 16)
    for _ in range(5):
        reporter(1)
    assert reports == [(16, 1)]  # at most 5 a second, counts cumulative


def test_spool_writes_in_order_and_raises_the_threads_error(tmp_path):
    from fastaug import shards

    with open(tmp_path / "f", "wb") as f:
        spool = shards.Spool(f, limit=64, sync_bytes=32)
        for i in range(20):
            spool.write(np.full(10, i, dtype=np.uint8))
        spool.close()
    assert (tmp_path / "f").read_bytes() == bytes(np.repeat(np.arange(20, dtype=np.uint8), 10))
    (tmp_path / "g").write_bytes(b"")
    with open(tmp_path / "g", "rb") as f:  # not writable: the thread's error reaches the caller
        spool = shards.Spool(f)
        spool.write(np.zeros(4, dtype=np.uint8))
        with pytest.raises(OSError):
            spool.close()


def test_batches_of_large_images_are_capped_in_bytes_and_change_no_byte(folder, tmp_path, monkeypatch):
    opts = S.Options("npy", shard_size=16)
    S.synthesize(S.folder_sources(folder), tmp_path / "ref", 16, policy(), {"seed": 0}, batch=8, backend="numba", progress=False,
                 options=opts)  # fmt: skip
    sizes = []
    augment = S._augment
    monkeypatch.setattr(S, "_augment", lambda job, items: sizes.append(len(items)) or augment(job, items))
    monkeypatch.setattr(S, "BATCH_BYTES", 2 * 20 * 24 * 3)  # two of the larger sources
    S.synthesize(S.folder_sources(folder), tmp_path / "capped", 16, policy(), {"seed": 0}, batch=8, backend="numba", progress=False,
                 options=opts)  # fmt: skip
    assert sum(sizes) == 16 and max(sizes) == 2
    assert tree(tmp_path / "capped") == tree(tmp_path / "ref")


def test_the_synth_benchmark_runs_and_writes_its_json(tmp_path):
    import json

    bench = pytest.importorskip("benchmarks.bench_synth")
    argv = ["--count", "12", "--sources", "4", "--batch", "4", "--formats", "png", "npy", "--repeat", "2", "--out", str(tmp_path)]
    result = bench.main(argv)
    (path,) = tmp_path.glob("synth-*.json")
    assert json.loads(path.read_text())["synth"].keys() == {"png", "npy"}
    assert len(result["npy_vs_engine_side_by_side"]["runs"]) == 2 and result["synth"]["npy"]["written"] == 12
    assert result["engine_same_outputs"]["side_by_side_img_per_s"] > 0 and result["engine_median_img_per_s"] > 0


def test_progress_blanks_a_longer_last_line_and_ends_once():
    import io

    from fastaug.progress import Progress

    stream = io.StringIO()
    bar = Progress(10, stream=stream)
    bar.update(3, "shards 0/2, running 30% 0%", force=True)
    bar.update(5, "shards 1/2", force=True)
    bar.update(10)
    bar.finish(10)
    lines = stream.getvalue().split("\r")[1:]
    assert len(lines[1]) == len(lines[0]) and lines[1].rstrip().endswith("shards 1/2")
    assert stream.getvalue().count("\n") == 1 and lines[2].startswith("[" + "#" * 30 + "] 10/10")


@pytest.mark.parametrize("channels, alpha", [(3, False), (1, False), (3, True), (1, True)])
def test_augment_feeds_the_engine_planar_and_gives_the_engines_pixels_interleaved(channels, alpha):
    """Sources decoded HxWxC are kept CxHxW (the kernels' fast layout); the outputs come back HxWxC: the same pixels as
    the engine on an ordinary [B,C,H,W] batch (alpha moved as a mask and appended)."""
    g = np.random.default_rng(1)
    colors = [g.integers(0, 256, (13, 17, channels), dtype=np.uint8) for _ in range(5)]
    alphas = [g.integers(0, 256, (13, 17), dtype=np.uint8) if alpha else None for _ in range(5)]
    planar = [S._planar(c) for c in colors]
    assert all(p.shape == (channels, 13, 17) and p.flags.c_contiguous and np.array_equal(p, c.transpose(2, 0, 1))
               for p, c in zip(planar, colors))  # fmt: skip
    ks = [3, 9, 10, 11, 40]
    job = S.Job([], "", 0, policy(), S.Options("npy"), backend="numba")
    got = S._augment(job, [(k, p, a) for k, p, a in zip(ks, planar, alphas)])
    x = torch.from_numpy(np.stack(colors)).permute(0, 3, 1, 2).contiguous()
    if alpha:
        ref = policy()(x, mask=torch.from_numpy(np.stack(alphas)), indices=torch.tensor(ks), epoch=0, backend="numba")
        want = torch.cat([ref["image"], ref["mask"].to(torch.uint8)[:, None]], 1)
    else:
        want = policy()(x, indices=torch.tensor(ks), epoch=0, backend="numba")
    assert got.shape == (5, 13, 17, channels + alpha) and got.flags.c_contiguous
    assert np.array_equal(got, want.permute(0, 2, 3, 1).numpy())


def test_committer_renames_complete_synced_files_with_opens_mode_and_reports_a_failed_sync(tmp_path, monkeypatch):
    import os
    import stat

    committer = S._Committer(limit=2)
    for i in range(5):
        committer.write(tmp_path / f"f{i}.png", bytes([i]) * 1000)
    committer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"f{i}.png" for i in range(5)]  # no temporaries left
    assert (tmp_path / "f3.png").read_bytes() == bytes([3]) * 1000
    mask = os.umask(0o022)  # read fresh here, not through the cached value the code uses
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f0.png").stat().st_mode) == 0o666 & ~mask
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("rename") or replace(a, b))
    committer = S._Committer()
    committer.write(tmp_path / "g.png", b"x")
    committer.close()
    monkeypatch.setattr(os, "replace", replace)
    assert events == ["fsync", "rename"]  # made durable before the rename

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    committer = S._Committer()
    committer.write(tmp_path / "h.png", b"x")
    with pytest.raises(OSError, match="Input/output error: could not commit .*h.png"):  # the error names the file
        committer.close()
    assert not (tmp_path / "h.png").exists() and not list(tmp_path.glob(".*.tmp"))


def test_one_process_runs_its_ranges_through_one_pipeline_batches_spanning_ranges_same_bytes(folder, tmp_path, monkeypatch):
    """The engine goes on with the next range's images while a range closes: a batch may hold two ranges' outputs; the
    shards are the bytes of ranges run one by one (as a worker process runs them)."""
    opts = S.Options("npy", shard_size=5)
    ref = tmp_path / "ref"
    ref.mkdir()
    job = S.Job(S.folder_sources(folder), str(ref), 13, policy(), opts, 8, "numba")
    for a, b in job.units():
        S.run_unit(job, a, b)
    S._write_manifest(job)
    batches = []
    augment = S._augment
    monkeypatch.setattr(S, "_augment", lambda job, items: batches.append([k for k, _, _ in items]) or augment(job, items))
    summary = S.synthesize(S.folder_sources(folder), tmp_path / "one", 13, policy(), {"seed": 0}, batch=8, backend="numba",
                           progress=False, options=opts)  # fmt: skip
    assert summary.written == 13 and sorted(k for b in batches for k in b) == list(range(13))
    assert any(len({k // 5 for k in b}) > 1 for b in batches)  # a batch held outputs of two ranges
    got, want = tree(tmp_path / "one"), tree(ref)
    assert {k: v for k, v in got.items() if k != S.SETTINGS} == want


def test_batch_size_evens_the_batches_over_the_engine_threads():
    """2,000 outputs at --batch 128 on 2 engine threads: 16 batches of 125 (8 each), not 15 of 128 and one of 80 that one
    thread runs while the other idles."""
    assert S._batch_size(128, 2000, 2) == 125 and S._batch_size(128, 1000, 1) == 125 and S._batch_size(128, 100, 2) == 50
    assert S._batch_size(128, None, 2) == 128 and S._batch_size(128, 0, 2) == 128
    for n in range(1, 700, 13):
        for threads in (1, 2, 3):
            b = S._batch_size(64, n, threads)
            needed = -(-n // 64)  # batches of --batch
            batches = -(-needed // threads) * threads  # rounded up to a multiple of the threads
            assert b <= 64 and 0 <= b * batches - n < batches  # equal batches, the last one short by less than one per batch


def test_shard_blocks_write_the_bytes_of_samples_added_one_by_one(tmp_path):
    g = np.random.default_rng(3)
    images = g.integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    metas = [{"index": k, "label": "a", "class": 0, "source": f"s{k}"} for k in range(10, 15)]
    one, blocks = tmp_path / "one", tmp_path / "blocks"
    one.mkdir(), blocks.mkdir()
    writer = SH.ShardWriter(one, 10, 16, "npy")
    for m, img in zip(metas, images):
        writer.add(m, img)
    writer.skip(15)
    writer.close()
    writer = SH.ShardWriter(blocks, 10, 16, "npy")
    writer.add_block(metas[:2], images[:2])
    writer.add_block(metas[2:3], images[2:3])
    writer.add(metas[3], images[3])
    writer.add_block(metas[4:], images[4:])
    writer.skip(15)
    writer.close()
    assert {p.name: p.read_bytes() for p in one.iterdir()} == {p.name: p.read_bytes() for p in blocks.iterdir()}
    assert [np.array_equal(a, b) for (a, _), b in zip(SH.read_npy_shard(blocks / "shard-0000010-0000016.npy"), images)] == [True] * 5
    assert metas[0] == {"index": 10, "label": "a", "class": 0, "source": "s10"}  # the caller's dicts untouched


def test_npy_shards_are_the_same_bytes_whatever_the_batch(folder, tmp_path):
    """Outputs accepted in blocks (a batch's consecutive outputs of one range, one write) at any batch size: the same
    shards and index as batches of one image."""
    opts = S.Options("npy", shard_size=7)
    for batch in (1, 3, 16):
        S.synthesize(S.folder_sources(folder), tmp_path / f"b{batch}", 17, policy(), {"seed": 0}, batch=batch, backend="numba",
                     progress=False, options=opts)  # fmt: skip
    assert tree(tmp_path / "b3") == tree(tmp_path / "b1") == tree(tmp_path / "b16")


def test_an_engine_thread_takes_the_waiting_images_when_decodes_stall(tmp_path, monkeypatch):
    """Decodes that keep the cores idle (a slow disk: every decode thread waiting) do not keep the engine threads
    idle: after STALL_SECONDS the images already decoded run, before the slow sources arrive."""
    import threading
    import time

    from fastaug import imagefiles

    root = tmp_path / "in" / "a"
    root.mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / f"s{i}.png")
    events, lock = [], threading.Lock()
    decode, augment = imagefiles.decode, S._augment

    def slow_decode(path, options=None):
        time.sleep(0.3)  # waiting, not computing: the cores are idle
        out = decode(path, options)
        with lock:
            events.append(("decoded", time.monotonic()))
        return out

    def timed_augment(job, items):
        with lock:
            events.append(("augment", time.monotonic()))
        return augment(job, items)

    monkeypatch.setattr(imagefiles, "decode", slow_decode)
    monkeypatch.setattr(S, "_augment", timed_augment)
    summary = S.synthesize(S.folder_sources(tmp_path / "in"), tmp_path / "out", 12, policy(), {"seed": 0}, batch=8,
                           backend="numba", progress=False, options=S.Options("npy"), threads=2)  # fmt: skip
    assert summary.written == 12
    first_augment = min(t for e, t in events if e == "augment")
    assert first_augment < max(t for e, t in events if e == "decoded")  # the engine did not wait for every source
