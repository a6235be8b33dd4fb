"""The report's one-pixel robustness section, from hand-made rows of ``fast``."""

from __future__ import annotations

import pandas as pd

from pixelprior.report.robustness import robustness_lines


def fast_rows(verifiers: list) -> pd.DataFrame:
    """One ``fast`` row per entry: a verified image by the given revision (``"none"``:
    a row from before rows recorded it), ``None``: fooled on the corners, the verifier
    not run."""
    rows = []
    for n, revision in enumerate(verifiers):
        ran = revision is not None
        row = {"mode": "fast", "image_index": n, "true_label": 0, "success": not ran,
               "queries": 8, "corner_certified": ran,
               "decided_by": "verified" if ran else "corners", "verified": ran,
               "verified_volume": 1.0 if ran else None, "float32_proved": ran or None}
        if revision != "none":
            row["verifier"] = revision if ran else None
        rows.append(row)
    return pd.DataFrame(rows)


def revision_line(frame: pd.DataFrame) -> list[str]:
    return [line for line in robustness_lines(frame) if line.startswith("Verifier:")]


def test_the_report_names_the_verifier_revision_of_the_rows_it_verified():
    assert revision_line(fast_rows([2, 2, None])) == ["Verifier: revision 2 (2 rows)."]


def test_rows_of_two_revisions_and_unrecorded_rows_are_counted_apart():
    assert revision_line(fast_rows([1, 2, 2, "none", None])) == [
        "Verifier: revision 1 (1 row), revision 2 (2 rows), 1 row from before rows "
        "recorded it."]
    assert revision_line(fast_rows(["none", "none"]).drop(columns="verifier",
                                                          errors="ignore")) == [
        "Verifier: 2 rows from before rows recorded it."]


def test_no_line_where_the_verifier_ran_on_no_row():
    assert revision_line(fast_rows([None, None])) == []


def test_images_misclassified_before_any_attack_lower_the_bound_over_all_images():
    """The section gave 1 - fooled over the images the model got right alone, as the
    robust accuracy (an audit: 64.9% where it is at most 60.0% over the 40 selected)."""
    frame = fast_rows([1, 1, None, 1])  # 3 certified, 1 fooled: at most 75% of 4
    frame.attrs["misclassified_per_mode"] = {"fast": 1}
    text = " ".join(robustness_lines(frame))
    assert "1 attacks on images it already misclassified count as not robust" in text
    assert "robust accuracy at most fast 60.0% of 5" in text
    frame.attrs.clear()
    assert "already misclassified" not in " ".join(robustness_lines(frame))


def test_the_mean_verified_volume_leaves_out_images_the_verifier_fooled():
    """A fooled image's volume is of the boxes proved before its witness: the column
    "images verified or unknown" averaged them in (an audit's case)."""
    from pixelprior.report.robustness import verification_table

    rows = pd.DataFrame([
        {"mode": "fast", "success": True, "decided_by": "refine", "corner_certified": False,
         "verified_volume": 0.06, "float32_proved": None},
        {"mode": "fast", "success": False, "decided_by": "verified",
         "corner_certified": True, "verified_volume": 1.0, "float32_proved": True},
        {"mode": "fast", "success": False, "decided_by": "unknown", "corner_certified": True,
         "verified_volume": 0.5, "float32_proved": False}])
    (table,) = verification_table(rows).to_dict("records")
    assert table["verified_images"] == 2 and table["verified_volume"] == 0.75
