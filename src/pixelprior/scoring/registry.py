"""The scorer registry: the single source of engine names and help; :func:`make_scorer`
resolves ``auto`` and checks every engine against a plain full pass before use."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .._registry import Registry
from ..models import batch_failure, model_failure, output_kind, scores_agree
from ._squeezenet_cone import incremental_forward
from .base import ModelOutputError, Scorer, ScorerMismatchError, perturb_rows
from .cone import fx_incremental_forward
from .full import FullPassScorer
from .incremental import IncrementalScorer
from .onnx_runtime import OnnxRuntimeScorer


def _onnxruntime(model, example, pixels, optimize, precision, cuda_graphs) -> Scorer:
    if example.device.type != "cpu":
        raise ValueError("engine='onnxruntime' runs on the CPU; use engine='full' or "
                         "'auto' on the GPU")
    return OnnxRuntimeScorer(model, example, precision)


def _full(model, example, pixels, optimize, precision, cuda_graphs) -> Scorer:
    return FullPassScorer(model, example, optimize, precision, cuda_graphs)


# name -> build(model, example, pixels, optimize, precision, cuda_graphs) -> Scorer; "auto"
# and "incremental" choose between the cone engines in make_scorer. A new engine is one
# module and one entry here: make_scorer checks it against a plain full pass before use.
SCORERS: Registry = Registry("engine")
SCORERS.register("auto", None, "incremental where the model allows it, else full passes")
SCORERS.register("incremental", None, "recompute only the cone of the changed pixel "
                 "(one-pixel candidates)")
SCORERS.register("full", _full, "full PyTorch forward passes (any model)")
SCORERS.register("onnxruntime", _onnxruntime, "full passes with ONNX Runtime on the CPU "
                 "(pip install 'pixelprior[onnx]')")
ENGINES = SCORERS.names()


def check_scorer(scorer: Scorer, model: nn.Module, image: torch.Tensor,
                 atol: float = 1e-3) -> str | None:
    """Why ``scorer`` cannot stand in for ``model``'s full pass (``None`` when it can):
    one-pixel candidates at the corners, edges and centre of ``image`` (``[1, C, H, W]``)
    and the clean image, scored both ways (same labels, scores within ``atol`` times the
    score scale). Lower precision moves scores by design (an explicit option): only the
    shapes are checked.

    Raises:
        ValueError: the model itself fails on the image (a shape it does not take)."""
    height, width = image.shape[-2:]
    spots = [(y, x) for y in (0, height // 2, height - 1) for x in (0, width // 2, width - 1)]
    colour = torch.rand(len(spots), image.shape[1], generator=torch.Generator().manual_seed(0))
    genes = torch.cat([torch.tensor([[x, y] for y, x in spots], dtype=colour.dtype), colour],
                      1)[:, None].to(image.device, image.dtype)
    owner = torch.zeros(len(spots), dtype=torch.long, device=image.device)
    try:
        with torch.inference_mode():
            clean = model(image)
    except RuntimeError as exc:  # the model itself: no engine can stand in, say why
        if "out of memory" in str(exc):
            raise
        raise ValueError(model_failure(model, image, exc)) from None
    try:
        with torch.inference_mode():
            expected = model(perturb_rows(image, owner, genes))
    except RuntimeError as exc:  # one image runs, a batch of candidates does not
        if "out of memory" in str(exc):
            raise
        raise ValueError(batch_failure(len(spots), exc)) from None
    for output in (expected, clean):
        if not isinstance(output, torch.Tensor):  # a tuple, a dict (a model's outputs)
            raise ModelOutputError(f"the model returns a {type(output).__name__}, not class "
                                   "scores [B, K]: wrap it to return them")
    try:
        with torch.inference_mode():
            got = scorer.logits(scorer.prepare(image), owner, genes)
            got_clean = scorer.image_logits(image)
    except Exception as exc:  # an unexpected layer configuration, an export failure
        return f"it failed: {type(exc).__name__}: {exc}"
    if expected.ndim != 2 or not (torch.isfinite(expected).all()
                                  and torch.isfinite(clean).all()):
        return None  # a broken model: the attack's output check names the problem
    gaps, log_gaps = [], []
    for reference, candidate in ((expected, got), (clean, got_clean)):
        if candidate.shape != reference.shape:
            return (f"scores of shape {tuple(candidate.shape)}, full pass "
                    f"{tuple(reference.shape)}")
        if scorer.precision != "fp32":
            continue  # lower precision moves scores by design (an explicit option)
        tolerance = atol * max(1.0, float(reference.abs().max()))
        if not scores_agree(reference.float(), candidate.float(), tolerance):
            return "its scores differ from the full pass"
        gaps.append(float((reference.float() - candidate.float()).abs().max()))
        if output_kind(reference) == "probabilities":
            log_gaps.append(_log_gap(reference.float(), candidate.float()))
    scorer.agreement = max(gaps) if gaps else None  # what a near tie is measured against
    scorer.log_agreement = max(log_gaps) if len(log_gaps) == len(gaps) and gaps else None
    return None


def _log_gap(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """The largest gap of two probability tables' logarithms (a probability's logarithm is
    its logit up to a shared constant): 0 where both are equal (both 0 too), infinite
    where one is 0 and the other not, NaN (never agreed) where one is negative."""
    gap = (reference.log() - candidate.log()).abs()
    return float(torch.where(reference == candidate, 0.0, gap).max())


def engine_of(engine: str | Scorer) -> str:
    """The engine to make a scorer again by: a name as it is, a scorer's own engine name
    (``auto`` for a scorer of no registered engine). What an attack, scan or verifier
    holding a scorer of a model's old weights makes its next one with.

    Args:
        engine: an engine name or a scorer.

    Returns:
        A name of :data:`ENGINES`.
    """
    if not isinstance(engine, Scorer):
        return engine
    return engine.name if engine.name in ENGINES else "auto"


def make_scorer(model: nn.Module, example: torch.Tensor, engine: str = "auto",
                pixels: int = 1, optimize: bool = True, precision: str = "fp32",
                cuda_graphs: bool = False) -> Scorer:
    """The scorer for ``engine``, checked against ``model``'s plain full pass on
    ``example`` images (``[B, C, H, W]``).

    ``auto`` takes the incremental engine where the model and ``pixels`` allow it — the
    SqueezeNet cone for SqueezeNet-style networks (with a warning and full passes when its
    check fails), else the general ``torch.fx`` cone — and full passes elsewhere; an
    engine asked for by name that cannot apply or disagrees is an error.

    The returned scorer's ``note`` says, in one line, why ``auto`` fell back to full
    passes for one-pixel candidates (``None`` otherwise); it is not printed here.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "incremental" and pixels != 1:
        raise ValueError("the incremental engine scores one-pixel candidates; use "
                         "engine='full' (or 'auto') for pixels > 1")
    if engine not in ("auto", "incremental", "full"):
        scorer: Scorer = SCORERS.get(engine)(model, example, pixels, optimize, precision,
                                             cuda_graphs)
        _require_agreement(scorer, model, example)
        return scorer
    full = FullPassScorer(model, example, optimize, precision, cuda_graphs)
    full.note = None
    if engine == "full" or (engine == "auto" and pixels != 1):
        return _checked_full(full, model, example)
    network = incremental_forward(full.query_model)
    if network is not None:  # the SqueezeNet cone (tuned for those networks)
        scorer = IncrementalScorer(model, network, full, precision)
        problem = check_scorer(scorer, model, example[:1])
        if problem is None:
            return scorer
        if engine == "auto":  # a known model whose check failed: say so
            warnings.warn(f"incremental engine not used ({problem}); using full forward "
                          "passes", RuntimeWarning, stacklevel=2)
    else:
        scorer, problem = _fx_scorer(model, example, full, precision)
        if scorer is not None:
            return scorer
    if engine == "incremental":
        raise ValueError(f"engine='incremental' cannot be used: {problem}; use "
                         "engine='full' or 'auto'")
    full.note = f"incremental engine not used: {problem}; full forward passes"
    return _checked_full(full, model, example)


def _fx_scorer(model: nn.Module, example: torch.Tensor, full: FullPassScorer,
               precision: str) -> tuple[IncrementalScorer | None, str | None]:
    """The ``torch.fx`` cone on the full pass's fast copy, checked against the model.

    Returns:
        ``(scorer, None)``, or ``(None, why it is not used)`` (one line).
    """
    engine, problem = fx_incremental_forward(full.query_model, example[:1])
    if engine is None:
        return None, (f"the model is not a SqueezeNet-style network and the torch.fx cone "
                      f"does not apply: {problem}")
    scorer = IncrementalScorer(model, engine, full, precision)
    problem = check_scorer(scorer, model, example[:1])
    if problem is not None:
        return None, f"the torch.fx cone was checked: {problem}"
    return scorer, None


def _require_agreement(scorer: Scorer, model: nn.Module, example: torch.Tensor) -> None:
    problem = check_scorer(scorer, model, example[:1])
    if problem is not None:
        raise _mismatch(scorer, problem, model, example)


def _mismatch(scorer: Scorer, problem: str, model: nn.Module, example: torch.Tensor
              ) -> ScorerMismatchError:
    """The refusal of a scorer whose check found ``problem``."""
    return ScorerMismatchError(f"engine={scorer.name!r} cannot stand in for the model: "
                               f"{problem}{_nondeterminism(model, example[:1])}")


def _checked_full(full: FullPassScorer, model: nn.Module, example: torch.Tensor
                  ) -> FullPassScorer:
    """Full passes checked against the model: through its faster copy (BatchNorm folded,
    channels last) where that agrees on one-pixel candidates too, else through the model
    itself, said in the scorer's note (the copy is checked on clean images only when it
    is made: a model computing through a cancellation its folding removes agrees there
    and parts from it at candidates)."""
    problem = check_scorer(full, model, example[:1])
    if problem is None:
        return full
    if full.query_model is model:
        raise _mismatch(full, problem, model, example)
    plain = FullPassScorer(model, example, False, full.precision, full.cuda_graphs)
    _require_agreement(plain, model, example)
    plain.note = (f"{full.note + '; ' if full.note else ''}the faster copy (BatchNorm "
                  f"folded) was checked: {problem}; the model's own forward passes")
    return plain


def _nondeterminism(model: nn.Module, image: torch.Tensor) -> str:
    """``"; ..."`` where the model scores one image twice differently (random operations
    in its forward), else ``""``: the scorer is not what parts from it then."""
    try:
        with torch.inference_mode():
            first, second = model(image), model(image)
        same = isinstance(first, torch.Tensor) and torch.equal(first, second)
    except Exception:  # noqa: BLE001  (the check itself named the failure already)
        return ""
    return "" if same else ("; the model scores the same image differently on two calls "
                            "(random operations in its forward?): attacks need a "
                            "deterministic model")

