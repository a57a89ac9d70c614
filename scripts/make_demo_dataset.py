"""Build the synthetic demo video set (moving shapes; UCF-101 layout, original list format).

    python scripts/make_demo_dataset.py --out data/demo [--seed 0] [--clips-per-class 10]
        [--test-clips-per-class 3] [--frames 32] [--size 64] [--fps 16] [--force]
"""

from __future__ import annotations

import argparse
import logging
import time

from sweettok.data.demo import DemoSpec, make_demo_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/demo", help="output folder (dataset.root of configs/demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clips-per-class", type=int, default=10, help="training clips per class")
    parser.add_argument("--test-clips-per-class", type=int, default=3)
    parser.add_argument("--frames", type=int, default=32, help="frames per clip (> 17 so clips can be cut)")
    parser.add_argument("--size", type=int, default=64, help="frame height and width")
    parser.add_argument("--fps", type=float, default=16.0)
    parser.add_argument("--force", action="store_true", help="rebuild even if the same set exists")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    spec = DemoSpec(
        seed=args.seed, train_clips_per_class=args.clips_per_class,
        test_clips_per_class=args.test_clips_per_class, num_frames=args.frames, size=args.size, fps=args.fps,
    )
    start = time.perf_counter()
    built = make_demo_dataset(args.out, spec, force=args.force)
    if built:
        print(f"demo set written to {args.out} in {time.perf_counter() - start:.1f} s")
    else:
        print(f"demo set already present in {args.out} (same settings); nothing to do")


if __name__ == "__main__":
    main()
