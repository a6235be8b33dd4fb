"""τ sweep of the constrained mode, paired with Table 1's unconstrained rows.

    python results/cifar10-tau-sweep/compare.py > results/cifar10-tau-sweep/compare.md

The unconstrained attack does not use τ and is deterministic, so its rows are not rerun
for each τ: every constrained row here is paired with the unconstrained row of the same
(seed, image) in ``results/cifar10`` (Table 1). The script first checks that claim on the
unconstrained rows that were rerun (``tau0.25-seed0``): every field but timings equal.
Times are left out of the comparison (the runs shared the CPU with other work at times);
generations and queries do not depend on the machine.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pixelprior.report import load_rows, paired_comparison, paired_frame

HERE = Path(__file__).resolve().parent
TABLE1 = HERE.parent / "cifar10"
TIMING = {"seconds", "group_seconds", "group_size", "finished", "config_hash", "device",
          "engine"}


def check_unconstrained_reproduces(table1: pd.DataFrame) -> int:
    """Rows of the rerun unconstrained mode equal Table 1's, all fields but timings."""
    rerun, _ = load_rows(HERE / "tau0.25-seed0")
    rerun = rerun[rerun["mode"] == "unconstrained"]
    fields = [c for c in rerun.columns if c not in TIMING]
    merged = rerun[fields].merge(table1[fields], on=["seed", "mode", "image_index"],
                                 suffixes=("", "_t1"))
    assert len(merged) == len(rerun), "rerun rows missing from Table 1"
    for field in fields:
        if field in ("seed", "mode", "image_index"):
            continue
        left, right = merged[field], merged[f"{field}_t1"]
        same = (left == right) | (left.isna() & right.isna())
        assert same.all(), f"unconstrained rows differ from Table 1 in {field!r}"
    return len(merged)


def constrained_rows(tau: float, table1: pd.DataFrame) -> pd.DataFrame:
    if tau == 0.5:
        return table1[table1["mode"] == "constrained"]
    frames = []
    for run in sorted(HERE.glob(f"tau{tau}-seed*")):
        if (run / "config.json").is_file() and (run / "results.jsonl").is_file():
            frame, config = load_rows(run)
            assert config.tau == tau, (run, config.tau)
            frames.append(frame[frame["mode"] == "constrained"])
    return pd.concat(frames) if frames else pd.DataFrame()


def main() -> None:
    table1, _ = load_rows(TABLE1)
    checked = check_unconstrained_reproduces(table1)
    print("# τ sweep: the constrained mode against Table 1's unconstrained rows\n")
    print(f"Check: {checked} rerun unconstrained rows equal Table 1's in every field but "
          "timings.\n")
    print("| τ | seeds | pairs | mean start pixels (size of S) | success unconstrained | "
          "success constrained | only unconstrained / only constrained | mean gen where both "
          "succeed (unc. / con.) | ratio, both succeed (95% CI) | ratio, all pairs (95% CI) "
          "| Wilcoxon p (images both fool) | McNemar p (images) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for tau in (0.5, 0.25, 0.1):
        constrained = constrained_rows(tau, table1)
        if constrained.empty:
            continue
        seeds = sorted(constrained["seed"].unique())
        unconstrained = table1[(table1["mode"] == "unconstrained")
                               & table1["seed"].isin(seeds)]
        frame = pd.concat([unconstrained, constrained])
        p = paired_comparison(frame, "unconstrained", "constrained")
        pairs = paired_frame(frame, "unconstrained", "constrained")  # rates on the pairs
        gen_u, gen_c = p["mean_generations_both"]
        both, every = p["generation_ratio_both"], p["generation_ratio_all"]
        wilcoxon = f"{p['wilcoxon_p']:.2f}" if p["wilcoxon_p"] is not None else "–"
        print(f"| {tau} | {', '.join(map(str, seeds))} | {p['pairs']} | "
              f"{constrained['support_size'].mean():.1f} | "
              f"{pairs['success_unconstrained'].mean():.1%} | "
              f"{pairs['success_constrained'].mean():.1%} | "
              f"{p['only_a_success']} / {p['only_b_success']} | {gen_u:.2f} / {gen_c:.2f} | "
              f"{both[0]:.2f} ({both[1]:.2f}–{both[2]:.2f}) | "
              f"{every[0]:.2f} ({every[1]:.2f}–{every[2]:.2f}) | {wilcoxon} | "
              f"{p['mcnemar_p']:.2f} |")
    print("\nRatios are unconstrained / constrained (above 1: the constrained start needs "
          "fewer generations); failures count at 101 generations in 'all pairs'. Intervals "
          "resample images (all seeds of an image together); the Wilcoxon test compares "
          "generations on the images both modes fool, the exact McNemar test compares "
          "success over images.")


if __name__ == "__main__":
    main()
