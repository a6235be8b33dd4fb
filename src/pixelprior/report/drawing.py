"""What every figure shares: matplotlib without a display, the one way a figure is
written (whole or not at all), an image on an axis, a marked pixel."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .._io import atomic_write  # noqa: E402


def _save(fig: plt.Figure, directory: Path, name: str, suffixes=("png", "pdf")
          ) -> plt.Figure:
    """Write a figure whole or not at all (each file atomically), then close it; the
    closed figure is returned (its axes, texts and patches can still be read). A PDF
    carries no creation date, so the same report gives the same bytes."""
    try:
        for suffix in suffixes:
            metadata = {"CreationDate": None} if suffix == "pdf" else None
            with atomic_write(Path(directory) / f"{name}.{suffix}") as f:
                fig.savefig(f, format=suffix, dpi=150, bbox_inches="tight",
                            metadata=metadata)
    finally:
        plt.close(fig)
    return fig


def _adversarial(image: torch.Tensor, pixels: list[dict]) -> torch.Tensor:
    """Re-apply the recorded pixel changes to a float image ``[C, H, W]``."""
    out = image.clone()
    for p in pixels:
        out[:, p["y"], p["x"]] = torch.tensor(p["new"], dtype=out.dtype)
    return out


def _show(ax, image: torch.Tensor | np.ndarray, title: str) -> None:
    """An image (float ``[C, H, W]`` or ``[H, W, C]``) on ``ax``, titled, without axes."""
    array = image.permute(1, 2, 0).numpy() if isinstance(image, torch.Tensor) else image
    ax.imshow(array.squeeze() if array.shape[2] == 1 else array, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _circle(ax, x: int, y: int, size: int) -> None:
    """A circle around pixel (``x``, ``y``) of an image of side ``size``."""
    ax.add_patch(plt.Circle((x, y), radius=max(1.5, size / 20), fill=False, color="cyan",
                            linewidth=1))
