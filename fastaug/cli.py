"""The ``fastaug`` command.

``fastaug demo``   augment built-in photos, write a grid PNG and an HTML preview, print throughput
``fastaug synth``  generate a synthetic dataset from a labelled image folder (resumable)
``fastaug bench``  time the reference pipeline side by side with the peers (needs the repository checkout)
``fastaug markov`` fit a Markov-chain policy from found policies (``fit``), or print and plot one (``show``)
``fastaug search`` search augmentation sub-policies with child trainings (Bayesian or random; resumable)
``fastaug robust`` a model's robustness boundaries per op, an HTML report, synthetic data (resumable)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import fastaug

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def default_pipeline(size: int = 224, seed: int = 0, normalize: bool = True) -> fastaug.Compose:
    """The reference pipeline: crop, affine, color jitter, flip, posterize, solarize, normalize."""
    steps = [
        fastaug.RandomResizedCrop(size, scale=(0.35, 1.0)),
        fastaug.RandomAffine(30, translate=(0.1, 0.1), shear=10, interpolation="bilinear"),
        fastaug.ColorJitter(0.4, 0.4, 0.4, 0.1),
        fastaug.RandomHorizontalFlip(),
        fastaug.RandomPosterize(4, p=0.5),
        fastaug.RandomSolarize(128, p=0.5),
    ]
    if normalize:
        steps.append(fastaug.Normalize(MEAN, STD))
    return fastaug.Compose(steps, seed=seed)


def sample_photos() -> torch.Tensor:
    """scikit-learn's two bundled photos as a uint8 batch [2,3,427,640]."""
    from sklearn.datasets import load_sample_images

    return torch.from_numpy(np.stack(load_sample_images().images)).permute(0, 3, 1, 2).contiguous()


def demo(out_dir: str, count: int, backend: str) -> None:
    from fastaug import preview

    photos = sample_photos()
    idx = torch.arange(count)
    batch = photos[idx % photos.shape[0]]
    policy = demo_policy()
    shown, record = policy(batch, indices=idx, backend=backend, return_record=True)
    png, page = preview.write(out_dir, shown, record, f"fastaug demo: {policy_label(policy)} on scikit-learn's sample photos")
    print(f"wrote {png} and {page}: {count} augmented samples of scikit-learn's sample photos")

    x = batch[:1].expand(64, -1, -1, -1).contiguous()
    for name, aug in (("RandAugment(2, 9), uint8 out", policy), ("the reference pipeline, normalized float32 out", default_pipeline())):
        rate = _throughput(aug, x, backend)
        print(f"{backend} backend, 64x3x427x640 uint8, {name}: {rate:.0f} img/s (best of 5)")


def _throughput(aug: torch.nn.Module, x: torch.Tensor, backend: str) -> float:
    aug(x, backend=backend)  # compile / warm up
    times = []
    for epoch in range(1, 6):
        t0 = time.perf_counter()
        aug(x, epoch=epoch, backend=backend)
        times.append(time.perf_counter() - t0)
    return x.shape[0] / min(times)


def demo_policy() -> torch.nn.Module:
    return fastaug.RandAugment(num_ops=2, magnitude=9, interpolation="bilinear", seed=0)


def policy_label(policy: torch.nn.Module) -> str:
    return type(policy).__name__


POLICIES = ("randaugment", "trivialaugment", "autoaugment-imagenet", "autoaugment-cifar10", "autoaugment-svhn", "default")


def policy_by_name(name: str, seed: int) -> torch.nn.Module:
    """A uint8 -> uint8 augmentation module by name (``fastaug synth --policy``)."""
    if name == "randaugment":
        return fastaug.RandAugment(interpolation="bilinear", seed=seed)
    if name == "trivialaugment":
        return fastaug.TrivialAugmentWide(interpolation="bilinear", seed=seed)
    if name.startswith("autoaugment-") and name in POLICIES:
        return fastaug.AutoAugment(name.split("-", 1)[1], interpolation="bilinear", seed=seed)
    if name == "default":
        return default_pipeline(seed=seed, normalize=False)
    if name.endswith(".json") or Path(name).is_file():  # a saved pipeline, a MarkovPolicy or a found SubPolicies
        from fastaug import serialize

        if not Path(name).is_file():
            raise ValueError(f"--policy: no such file {name!r}")
        policy = serialize.load(name)
        if isinstance(policy, fastaug.Transform) and not callable(policy):  # a bare transform: run as a one-op pipeline
            return fastaug.Compose([policy], seed=seed)
        policy.seed = seed
        return policy
    raise ValueError(f"--policy must be one of {POLICIES} or a policy JSON file, got {name!r}")


def policy_setting(name: str):
    """What a synth run records of its --policy: the name, or a JSON file's absolute path and content hash."""
    if name in POLICIES:
        return name
    import hashlib

    return {"file": str(Path(name).resolve()), "sha256": hashlib.sha256(Path(name).read_bytes()).hexdigest()[:16]}


def bench(argv: list[str]) -> None:
    """Run ``benchmarks/bench.py`` of the repository this package is installed from (editable install)."""
    root = Path(fastaug.__file__).resolve().parents[1]
    if not (root / "benchmarks" / "bench.py").is_file():
        raise SystemExit("fastaug bench runs benchmarks/bench.py of a repository checkout: pip install -e the repository")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.bench import main as bench_main

    bench_main(argv)


SYNTH_DESCRIPTION = """\
Write --count augmented images made from the images of --input: output k is source k mod (number of sources) with the
policy's draws for dataset index k, so a rerun of the same command after a kill resumes and writes exactly what a clean
run writes, and any number of workers writes the same bytes.

input: a folder DIR/<label>/<image> (each sub-folder a label; images at the top level get the label '') with
.png .jpg .jpeg .bmp .webp .tif .tiff .gif files (any case), or 'builtin' (scikit-learn's two sample photos).
Unreadable or truncated files are skipped with a warning naming them (--strict stops instead); 16-bit images are scaled
to 8 bits; EXIF orientation is applied; transparency is composited on --background (white) unless --keep-alpha;
grayscale images stay 1 channel unless --gray rgb.

policies: randaugment (RandAugment(2, 9)), trivialaugment (TrivialAugmentWide), autoaugment-imagenet / -cifar10 /
-svhn (AutoAugment), default (the reference pipeline without Normalize: RandomResizedCrop to 224x224, RandomAffine,
ColorJitter, flip, posterize, solarize: every output is 224x224), all with bilinear interpolation; or a JSON file: a
MarkovPolicy ('fastaug markov fit'), a found SubPolicies ('fastaug search': best_policy.json), or any Compose, transform
or policy saved with fastaug.serialize.to_json (its seed replaced by --seed; it must return uint8 images).

formats: png, jpeg, webp (one file per output: OUT/<label>/<source>_<k>.<ext>), tar (WebDataset shards: <k>.png,
<k>.cls, <k>.json per sample), npy (raw uint8 shards with an index, shard-<start>-<end>.npy + .idx.json).
OUT/labels.csv lists every output; OUT/synth.json keeps the settings.

summary: outputs written now, already there (an earlier run), skipped (their source unreadable), failed (made but not
encoded or written: a codec's error, e.g. a source wider than WebP's 16,383 pixels, or a file that could not be
written; each warned with the output's name and reason, the first 10 one by one; --strict stops instead), and img/s.
A rerun tries skipped and failed outputs again. Disk full, quota exceeded, a read-only disk or an I/O error stop the
run (nothing later could be written), as does any write error of a tar / npy shard.
"""


def synth(args: argparse.Namespace) -> None:
    import warnings

    from fastaug import imagefiles as IF
    from fastaug import synth as S

    if args.input == "builtin":
        sources, where = S.builtin_sources(), "builtin"
    else:
        sources, where = S.folder_sources(args.input), str(Path(args.input).resolve())
    policy = policy_by_name(args.policy, args.seed)
    decode = IF.DecodeOptions(gray=args.gray, keep_alpha=args.keep_alpha, background=_rgb(args.background))
    options = S.Options(args.format, png_level=args.png_level, quality=args.quality, shard_size=args.shard_size,
                        shard_image=args.shard_image, decode=decode)  # fmt: skip
    settings = {"input": where, "policy": policy_setting(args.policy), "seed": args.seed}
    with warnings.catch_warnings():
        warnings.simplefilter("always", S.SkippedImageWarning)
        warnings.simplefilter("always", S.FailedOutputWarning)
        warnings.showwarning = lambda message, *a, **k: print(f"\nwarning: {message}", file=sys.stderr)
        summary = S.synthesize(sources, args.out, args.count, policy, settings, batch=args.batch, backend=args.backend,
                               progress=not args.no_progress, options=options, strict=args.strict, trim=args.trim,
                               workers=args.workers, ray_address=args.ray_address, threads=args.threads,
                               cache_mb=args.cache_mb)  # fmt: skip
    labels = sorted({s.label for s in sources})
    print(f"{summary}; {len(sources)} sources, labels {labels}")
    if summary.failed:  # a run that left outputs out is not a success (a rerun tries them again)
        raise SystemExit(f"fastaug synth: {summary.failed} outputs could not be written (see the warnings above); "
                         "rerun the same command to try them again")  # fmt: skip


def _rgb(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ValueError(f"--background must be R,G,B or one gray value, integers 0..255, got {text!r}")
    return values


def _synth_parser(sub) -> None:
    s = sub.add_parser("synth", help="write N augmented copies of a labelled image folder (resumes after a kill)",
                       description=SYNTH_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    s.add_argument("--input", default="builtin", help="a folder DIR/<label>/<image>, or 'builtin' (default: builtin)")
    s.add_argument("--out", required=True, help="the output folder (rerun the same command to resume)")
    s.add_argument("--count", type=int, required=True, help="how many outputs")
    s.add_argument("--policy", default="randaugment", help=f"one of {', '.join(POLICIES)}, or a JSON file (see above; default randaugment)")
    s.add_argument("--seed", type=int, default=0, help="the policy's seed (default: 0)")
    s.add_argument("--format", default="png", choices=["png", "jpeg", "webp", "tar", "npy"], help="output format (default: png; see above)")
    s.add_argument("--png-level", type=int, default=6, help="PNG zlib compression 0 (fastest) .. 9 (smallest) (default: 6)")
    s.add_argument("--quality", type=int, default=90, help="JPEG / WebP quality 1..100 (default: 90)")
    s.add_argument("--shard-size", type=int, default=1000, help="outputs per shard and per unit of work (default: 1000)")
    s.add_argument("--shard-image", default="png", choices=["png", "jpeg", "webp"], help="image encoding in tar shards (default: png)")
    s.add_argument("--gray", default="keep", choices=["keep", "rgb"], help="grayscale sources: keep 1 channel or make RGB (default: keep)")
    s.add_argument("--keep-alpha", action="store_true",
                   help="keep transparency: alpha follows the geometric ops, RGBA written (default: composite on --background)")
    s.add_argument("--background", default="255,255,255", help="R,G,B (or one gray value) under transparent pixels (default: 255,255,255)")
    s.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable image or output that cannot be written (default: skip it with a warning)")
    s.add_argument("--trim", action="store_true", help=(
                   "with a --count smaller than an earlier run's: delete the extra outputs and their rows in labels.csv "
                   "(default: refuse)"))
    s.add_argument("--batch", type=int, default=128,
                   help="images per engine call, at most 64 MiB of pixels (larger images: fewer) (default: 128)")  # fmt: skip
    s.add_argument("--workers", type=int, default=1, help="local worker processes, each taking whole shards (default: 1)")
    s.add_argument("--ray-address", default=None,
                   help="run the shards as Ray tasks on this cluster ('local': start Ray here; pip install 'fastaug[distributed]') "
                        "(default: none, local processes)")
    s.add_argument("--threads", type=int, default=None,
                   help="decode and encode threads per worker; the engine runs one batch per core of the worker, one thread each "
                        "(default: the cores per worker)")  # fmt: skip
    s.add_argument("--cache-mb", type=int, default=512,
                   help="decoded source images kept in memory per worker, in MiB: each source is decoded once while they fit "
                        "(0: only those of the read-ahead are kept; with --workers / --ray-address decoded again for every shard) "
                        "(default: 512)")  # fmt: skip
    s.add_argument("--backend", default="auto", choices=["auto", "torch", "numba", "triton"], help="engine backend (default: auto)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar (default: a progress bar on stderr)")
    s.add_argument("--debug", action="store_true", help="show Python tracebacks on errors (default: one line)")


def markov(args: argparse.Namespace) -> None:
    import json

    from fastaug.policies import markov_show
    from fastaug.policies.markov import MarkovPolicy

    try:
        if args.action == "fit":
            length = args.length[0] if len(args.length) == 1 else tuple(args.length)
            if args.source == "autoaugment":
                policy = MarkovPolicy.from_autoaugment(tuple(args.policies), smoothing=args.smoothing, length=length)
            else:  # a list of sub-policies, or a found policy's JSON (fastaug search's best_policy.json)
                with open(args.source) as f:
                    policy = MarkovPolicy.fit(json.load(f), smoothing=args.smoothing, length=length)
            print(f"wrote {policy.to_json(args.out)}")
        else:
            policy = MarkovPolicy.from_json(args.policy)
            print(markov_show.table(policy))
            png = args.png or str(Path(args.policy).with_suffix(".png"))
            print(f"wrote {markov_show.plot(policy, png)}")
    except (OSError, ValueError, TypeError, RuntimeError, json.JSONDecodeError) as e:
        raise SystemExit(f"fastaug markov {args.action}: {e}") from None


def search(args: argparse.Namespace) -> None:
    from fastaug.policies.search_ops import AUTOAUGMENT_OPS
    from fastaug.search import BayesianSearch
    from fastaug.search import report as R

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        ops = [op.name for op in AUTOAUGMENT_OPS] if args.ops == "autoaugment" else None
        if ops is not None and args.data == "digits":
            ops = [o for o in ops if o != "Color"]  # gray images: Color is an identity
        s = BayesianSearch(
            args.data, method=args.method, n_subpolicies=args.n_subpolicies, train_set_size=args.train_set_size,
            child_epochs=args.child_epochs, child_batch_size=args.child_batch_size, opt_samples=args.opt_samples,
            opt_last_n_epochs=args.opt_last_n_epochs, opt_initial_points=args.opt_initial_points,
            notebook=out / "notebook.jsonl", seed=args.seed, workers=args.workers, ray_address=args.ray_address, ops=ops,
        )  # fmt: skip
        best = s.optimize(args.iterations, progress=not args.no_progress)
        best.to_json(out / "best_policy.json")
        page = R.write(out, s)
    except (OSError, ValueError, TypeError) as e:
        raise SystemExit(f"fastaug search: {e}") from None
    b = s.best()
    print(f"{out}: {len(s.trials)} trials; best trial {b.trial} reward {b.reward:.4f}; wrote {out / 'best_policy.json'} and {page}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fastaug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="augment built-in photos, write a grid PNG, print throughput")
    d.add_argument("--out", default="fastaug-demo")
    d.add_argument("--count", type=int, default=16)
    d.add_argument("--backend", default="auto", choices=["auto", "torch", "numba", "triton"])
    _synth_parser(sub)
    sub.add_parser("bench", help="side-by-side benchmark (options: fastaug bench --help)", add_help=False)
    m = sub.add_parser("markov", help="fit a Markov-chain policy from found policies, or show one")
    msub = m.add_subparsers(dest="action", required=True)
    mf = msub.add_parser("fit", help="fit and write policy JSON")
    mf.add_argument("--from", dest="source", default="autoaugment",
                    help="'autoaugment' (its published sub-policies) or a JSON file: a list of sub-policies, each a list of "
                         "[op, probability, magnitude normalised to 0..1 or null], or a policy found by 'fastaug search' "
                         "(best_policy.json) (default: autoaugment)")  # fmt: skip
    mf.add_argument("--policies", nargs="+", default=["imagenet", "cifar10", "svhn"], choices=["imagenet", "cifar10", "svhn"],
                    help="which AutoAugment tables with --from autoaugment (default: all three)")  # fmt: skip
    mf.add_argument("--smoothing", type=float, default=0.0, help="weight added to every transition before normalising (default 0)")
    mf.add_argument("--length", type=int, nargs="+", default=[2], help="chain length, or min max drawn per sample (default 2)")
    mf.add_argument("--out", required=True, help="the policy JSON to write")
    ms = msub.add_parser("show", help="print a policy's table and write its transition heatmap and magnitude curves (PNG)")
    ms.add_argument("policy", help="a policy JSON written by 'fastaug markov fit'")
    ms.add_argument("--png", default=None, help="the PNG to write (default: next to the JSON)")
    q = sub.add_parser("search", help="search augmentation sub-policies with child trainings (resumes from --out)",
                       description="Bayesian (scikit-optimize, random-forest surrogate, expected improvement) or random "
                                   "search for sub-policies; each trial trains a small CNN from scratch and scores it on a "
                                   "validation split. The notebook in --out logs every training; rerunning with the same "
                                   "--out and settings resumes.")  # fmt: skip
    q.add_argument("--data", default="digits", choices=["digits", "mnist_5k"], help="a packaged data set (default digits)")
    q.add_argument("--iterations", type=int, default=40, help="policies to evaluate (default 40)")
    q.add_argument("--out", required=True, help="folder for notebook.jsonl, best_policy.json, report.html, PNGs")
    q.add_argument("--method", default="bayesian", choices=["bayesian", "random"])
    q.add_argument("--workers", type=int, default=1, help="trials per round, run in parallel (default 1)")
    q.add_argument("--ray-address", default=None, help="run trials as Ray tasks on this cluster ('local': start Ray here)")
    q.add_argument("--n-subpolicies", type=int, default=5, help="sub-policies of 2 ops each (default 5)")
    q.add_argument("--train-set-size", type=int, default=500, help="child training samples (default 500)")
    q.add_argument("--child-epochs", type=int, default=12, help="epochs per child training (default 12)")
    q.add_argument("--child-batch-size", type=int, default=64)
    q.add_argument("--opt-samples", type=int, default=3, help="trainings per policy, rewards averaged (default 3)")
    q.add_argument("--opt-last-n-epochs", type=int, default=3, help="validation accuracies averaged per training (default 3)")
    q.add_argument("--opt-initial-points", type=int, default=10, help="random points before the surrogate (default 10)")
    q.add_argument("--ops", default="all", choices=["all", "autoaugment"],
                   help="all search ops, or AutoAugment's only (default all)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    from fastaug.robust import cli as robust_cli

    robust_cli.add_parser(sub)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        bench(rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        demo(args.out, args.count, args.backend)
    elif args.command == "synth":
        _one_line_errors("synth", args.debug, synth, args)
    elif args.command == "markov":
        markov(args)
    elif args.command == "search":
        search(args)
    elif args.command == "robust":
        robust_cli.run(args)


def _one_line_errors(command: str, debug: bool, fn, *args) -> None:
    """Run ``fn``; a user error (bad input, option, file) is one line on stderr and exit status 2 (``--debug``: the traceback)."""
    from fastaug.imagefiles import UnreadableImage

    try:
        fn(*args)
    except KeyboardInterrupt:
        if debug:
            raise
        raise SystemExit(f"fastaug {command}: interrupted; rerun the same command to resume") from None
    except (OSError, ValueError, TypeError, RuntimeError, ImportError, UnreadableImage) as e:
        if debug:
            raise
        print(f"fastaug {command}: {e}" + ("" if isinstance(e, UnreadableImage) else f" ({type(e).__name__}; --debug shows where)"),
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
