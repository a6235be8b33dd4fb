"""What the weights watch costs each call, beside the call it guards.

Every call of an attack, a scan or the verifier first asks
:class:`~pixelprior.models.WeightsWatch` whether the model changed since its copies were
made (:func:`~pixelprior.models.weights_version`: the weights, the submodules' settings
and hooks, and the model's ``torch.fx`` trace). For each model this prints, best of
``--repeats``: the whole watch, its trace part alone
(:func:`~pixelprior.models.traced_code`), and the cheapest guarded call,
``FastAttack(model, verify="off").run`` on one image (the 8 corners at every
position), measured side by side in one run; the last column is the watch's share of
that call.

    python benchmarks/watch_cost.py [--models squeezenet1_1-cifar10 resnet8-cifar10
        convsmall-cifar10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from _setup import bench_inputs

from pixelprior import FastAttack
from pixelprior.models import traced_code, weights_version


def best(call: Callable[[], object], repeats: int) -> float:
    """The fewest seconds of ``repeats`` calls (after one untimed)."""
    call()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["squeezenet1_1-cifar10",
                                                        "resnet8-cifar10",
                                                        "convsmall-cifar10"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    inputs = {name: bench_inputs(1, name) for name in args.models}
    print("\n| model | watch (ms) | its trace (ms) | FastAttack.run, 1 image (ms) | "
          "watch / call |")
    print("|---|---|---|---|---|")
    for name, (model, images, labels, _) in inputs.items():
        row(name, model, images, labels, args.repeats)


def row(name: str, model, images, labels, repeats: int) -> None:
    """One model's line of the table."""
    watch = best(lambda: weights_version(model), repeats)
    trace = best(lambda: traced_code(model), repeats)
    attack = FastAttack(model, verify="off")
    call = best(lambda: attack.run(images[:1], labels[:1]), repeats)
    print(f"| {name} | {watch * 1e3:.1f} | {trace * 1e3:.1f} | {call * 1e3:.0f} | "
          f"{watch / call:.3f} |", flush=True)


if __name__ == "__main__":
    main()
