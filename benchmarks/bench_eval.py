"""Benchmark of the evaluation stack on CPU: I3D features, Fréchet distance, frame metrics.

    python benchmarks/bench_eval.py                       # timings (about a minute on 2 cores)
    python benchmarks/bench_eval.py --demo-root data/demo # + FVD sanity on the demo set

Prints a table: I3D (real Kinetics-400 weights) on 32 clips of 17x224x224, the float64
eigendecomposition Fréchet distance beside the textbook `scipy.linalg.sqrtm` route at N=2048,
D=400, and PSNR/SSIM on 32 clips of 17x256x256. With `--demo-root`, FVD(train, test) of the
synthetic demo set beside FVD(test, test with heavy noise) and FVD(test, test with shuffled frames).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import scipy.linalg
import torch

from sweettok.eval.fvd import FVDFeatureExtractor, feature_statistics, frechet_distance
from sweettok.eval.i3d_weights import find_i3d_weights, load_i3d
from sweettok.eval.metrics import psnr, ssim


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Table(list):
    """Rows of (what, time, result, peak RSS); each row is printed as soon as it is added."""

    def append(self, row) -> None:
        super().append(row)
        what, seconds, result, memory = row
        print(f"{what:<44} {seconds:>12} {result:>16} {memory:>12}", flush=True)


def timed(fn, repeats: int = 1):
    """(result, seconds per call) of the best of `repeats` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Naive baseline: sqrtm of the non-symmetric product S1 S2 (pytorch-fid style)."""
    mu1, s1 = feature_statistics(a)
    mu2, s2 = feature_statistics(b)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def bench_i3d(rows: list, clips: int, batch_size: int) -> FVDFeatureExtractor:
    i3d, load_seconds = timed(lambda: load_i3d())
    rows.append(("I3D load (" + find_i3d_weights().name + ")", f"{load_seconds:.2f} s", "", f"{peak_rss_mb():.0f}"))
    extractor = FVDFeatureExtractor(i3d, batch_size=batch_size)
    videos = torch.rand(clips, 3, 17, 224, 224, generator=torch.Generator().manual_seed(0))
    feats, seconds = timed(lambda: extractor.features(videos))
    assert torch.isfinite(feats).all()
    rows.append((f"I3D {clips} clips 17x224 (batch {batch_size})", f"{seconds:.2f} s",
                 f"{clips / seconds:.2f} clips/s", f"{peak_rss_mb():.0f}"))
    return extractor


def bench_frechet(rows: list) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2048, 400)), rng.normal(size=(2048, 400)) * 1.1 + 0.05
    ours, seconds = timed(lambda: frechet_distance(a, b), repeats=3)
    naive, naive_seconds = timed(lambda: scipy_frechet(a, b), repeats=3)
    rows.append(("Frechet N=2048 D=400, eigh (ours)", f"{seconds * 1e3:.0f} ms", f"FD {ours:.4f}", ""))
    rows.append(("Frechet N=2048 D=400, scipy sqrtm", f"{naive_seconds * 1e3:.0f} ms", f"FD {naive:.4f}", ""))


def bench_frame_metrics(rows: list) -> None:
    generator = torch.Generator().manual_seed(1)
    real = torch.rand(32, 3, 17, 256, 256, generator=generator)
    fake = (real + 0.05 * torch.randn(real.shape, generator=generator)).clamp(0, 1)
    value, seconds = timed(lambda: psnr(fake, real))
    rows.append(("PSNR 32 clips 17x256", f"{seconds:.2f} s", f"{value:.2f} dB", f"{peak_rss_mb():.0f}"))
    value, seconds = timed(lambda: ssim(fake, real))
    rows.append(("SSIM 32 clips 17x256 (float64)", f"{seconds:.2f} s", f"{value:.4f}", f"{peak_rss_mb():.0f}"))


def load_split(root: str, list_name: str) -> torch.Tensor:
    """Every clip of a demo list, centre 17 frames, as (N, 3, 17, H, W) in [0, 1]."""
    from sweettok.config import DatasetConfig
    from sweettok.data.video_dataset import VideoDataset

    # read as the eval split whatever the list, so train clips are centred too (no random start)
    cfg = DatasetConfig(root=root, eval_list=f"{root}/{list_name}", resolution=64, random_crop=False,
                        random_flip=False, mean=0.0, std=1.0, num_workers=0)
    dataset = VideoDataset(cfg, "eval")
    return torch.stack([dataset[i]["video"] for i in range(len(dataset))])


def demo_fvd(rows: list, extractor: FVDFeatureExtractor, root: str) -> None:
    train, test = load_split(root, "train.txt"), load_split(root, "test.txt")
    generator = torch.Generator().manual_seed(2)
    noisy = (test + 0.5 * torch.randn(test.shape, generator=generator)).clamp(0, 1)
    order = torch.randperm(test.shape[2], generator=generator)
    shuffled = test[:, :, order]
    start = time.perf_counter()
    feats = {name: extractor.features(v) for name, v in
             [("train", train), ("test", test), ("noisy", noisy), ("shuffled", shuffled)]}
    seconds = time.perf_counter() - start
    n_train, n_test = train.shape[0], test.shape[0]
    rows.append((f"demo FVD(train {n_train}, test {n_test})", f"{seconds:.0f} s (all)",
                 f"{frechet_distance(feats['train'], feats['test']):.1f}", ""))
    rows.append((f"demo FVD(test, test + N(0, 0.5) noise)", "", f"{frechet_distance(feats['test'], feats['noisy']):.1f}", ""))
    rows.append((f"demo FVD(test, test frames shuffled)", "", f"{frechet_distance(feats['test'], feats['shuffled']):.1f}", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--demo-root", default="", help="demo set folder (scripts/make_demo_dataset.py --out)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"{'what':<44} {'time':>12} {'result':>16} {'peak RSS MB':>12}")
    rows = Table()
    extractor = bench_i3d(rows, args.clips, args.batch_size)
    bench_frechet(rows)
    bench_frame_metrics(rows)
    if args.demo_root:
        demo_fvd(rows, extractor, args.demo_root)


if __name__ == "__main__":
    main()
