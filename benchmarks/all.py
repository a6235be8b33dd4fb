"""Every performance table of issue 7 in one run: peers, bare-model limit, scaling, ceiling.

Runs, one after the other in this process and so on the same machine state:

1. ``peers.py``: pixelprior (unconstrained, constrained, full passes) vs torchattacks
   ``OnePixel`` vs ART ``PixelAttack`` at an equal budget, with ratios;
2. ``throughput.py``: the attack's queries per second against the bare engine's, the
   share of wall time outside scoring, and scaling with images and population size;
3. ``engines.py``: work per query and the machine's fp32 ceiling for each engine.

    python benchmarks/all.py [--images 20] [--maxiter 100] [--skip-peers]

27 minutes on 2 CPU cores with the defaults (measured; the peers take most of it).
"""

from __future__ import annotations

import argparse
import time

import engines
import peers
import throughput


def section(title: str) -> None:
    print(f"\n{'=' * 8} {title} {'=' * 8}\n", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20, help="images for the peers")
    parser.add_argument("--maxiter", type=int, default=100, help="generations for the peers")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--peers-skip", nargs="*", default=[],
                        help="passed to peers.py --skip (e.g. torchattacks art)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if not args.skip_peers:
        skip = ["--skip", *args.peers_skip] if args.peers_skip else []
        section(f"peers: python benchmarks/peers.py --images {args.images} "
                f"--maxiter {args.maxiter} {' '.join(skip)}".rstrip())
        peers.main(["--images", str(args.images), "--maxiter", str(args.maxiter), *skip])
    section("attack vs bare model, scaling: python benchmarks/throughput.py --images 10 "
            "--maxiter 10 --scaling 1 10 100")
    throughput.main(["--images", "10", "--maxiter", "10", "--scaling", "1", "10", "100"])
    section("engines vs the machine's ceiling: python benchmarks/engines.py")
    engines.main([])
    print(f"\nall benchmarks: {(time.perf_counter() - began) / 60:.1f} min")


if __name__ == "__main__":
    main()
