"""Reports: statistics with the image as the unit, Table 1/2 and exports, figures, and
the evaluation of sensitivity maps against exhaustive scans."""

from .._format import number as _fmt  # noqa: F401  (the one formatter, by its old name)
from .stats import (
    RESAMPLES,
    _percentiles,  # noqa: F401  (tests read it)
    bootstrap_ratio,
    counts_generations,
    image_bootstrap_ratio,
    mcnemar_exact,
    paired_comparison,
    paired_frame,
    roc_auc,
    roc_curve,
    t_interval,
)
from .tables import (
    add_budget,
    load_rows,
    markdown_report,
    paper_accounting,
    per_seed_table,
    summary,
    write_report,
)

__all__ = [
    "RESAMPLES", "add_budget", "bootstrap_ratio", "counts_generations",
    "image_bootstrap_ratio", "load_rows", "markdown_report", "mcnemar_exact",
    "paired_comparison", "paired_frame", "paper_accounting", "per_seed_table", "roc_auc",
    "roc_curve", "summary", "t_interval", "write_report",
]
