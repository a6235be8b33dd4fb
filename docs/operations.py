"""Write ``docs/guide/operations.md``: every operation of the cone engines' operation table
(:data:`pixelprior.scoring.cone.table.OPERATIONS`, the one source of their names), the
module classes, functions and tensor methods that name it, and what the verifier makes
of it. ``tests/docs/test_docs.py`` checks the committed page is this script's output.

    python docs/operations.py
"""

from __future__ import annotations

import sys
from pathlib import Path

PAGE = Path(__file__).parent / "guide" / "operations.md"
HEADER = """# Layers the verifier takes

Every operation the cone engines know, from their operation table
(`pixelprior.scoring.cone.table.OPERATIONS`, written by `python docs/operations.py`; a test
checks this page is current). A model the verifier bounds is made of these (after
`torch.fx` traces it); `pixelprior verify DATA --model SPEC --check` lists a model's own
operations, and every one the verifier refuses, with why.

- **bound rule**: the verifier's zonotopes run it (`scoring/cone/operators/`);
  **written out**: the verifier's copy writes it as operations with bound rules (a softmax as
  exponentials, a sum and a reciprocal; see the architecture guide), the same function in
  real arithmetic; **a size**: run as it is.
- **interval rule**: the interval screen (and the float32 proof) run through it (an
  operation written out: through what it is written as).
- Forms an operation does not take (a flip of the batch axis, attention with a mask,
  interpolation with `antialias=True`, ...) are refused in one line naming them.

| operation | modules | functions | tensor methods | verifier | interval rule | what it is |
|---|---|---|---|---|---|---|
"""


def _function_name(function: object) -> str:
    """How a user writes ``function``: its public name in ``F``, ``torch``,
    ``torch.special``, ``operator`` or the builtins (the first found), else its own."""
    import builtins
    import operator

    import torch
    import torch.nn.functional as F

    if (getattr(function, "__module__", None) or "").startswith("pixelprior"):
        return f"`{function.__name__}` (the verifier's own)"
    for prefix, namespace in (("F", F), ("torch", torch), ("torch.linalg", torch.linalg),
                              ("torch.special", torch.special), ("operator", operator),
                              ("", builtins)):
        names = sorted(n for n in dir(namespace) if not n.startswith("_")
                       and getattr(namespace, n, None) is function)
        if names:
            return f"`{prefix + '.' if prefix else ''}{names[0]}`"
    return f"`{getattr(function, '__name__', repr(function))}`"


def _refuses(operation: object) -> bool:
    """Whether the operation's bound rule only says why not (a cast to float16)."""
    try:
        return isinstance(operation.bound(None), str)
    except Exception:  # noqa: BLE001 - a rule that needs its settings bounds something
        return False


def _module_names(modules: list[type]) -> list[str]:
    """The module classes as users name them: a private base (``_ConstantPadNd``) by its
    public subclasses in ``torch.nn``."""
    from torch import nn

    names = []
    for module in modules:
        if module.__name__.startswith("_"):
            names += sorted(f"`nn.{n}`" for n, c in vars(nn).items() if isinstance(c, type)
                            and issubclass(c, module) and not n.startswith("_"))
        elif module.__module__.startswith("torch.nn"):
            names.append(f"`nn.{module.__name__}`")
        else:
            names.append(f"`{module.__name__}`")
    return names


def page() -> str:
    """The page's Markdown."""
    import pixelprior.scoring.cone  # noqa: F401 - registers every operation
    from pixelprior.scoring.cone.table import OPERATIONS

    rows = []
    for name in OPERATIONS.names():
        operation = OPERATIONS.get(name)
        if not operation.window.__module__.startswith("pixelprior."):
            continue  # (one a test or a user registered)
        modules, functions, methods = OPERATIONS.targets(name)
        verifier = ("written out" if operation.written_out else "refused"
                    if _refuses(operation) else "bound rule" if operation.bound is not None
                    else "a size" if name == "shape" else "refused")
        interval = ("as written out" if operation.written_out
                    else "yes" if operation.interval is not None else "no")
        rows.append("| " + " | ".join([
            f"`{name}`",
            ", ".join(_module_names(modules)),
            ", ".join(sorted({_function_name(f) for f in functions})),
            ", ".join(f"`Tensor.{m}`" for m in methods),
            verifier, interval,
            operation.help.replace("|", "\\|")]) + " |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    PAGE.write_text(page(), encoding="utf-8")
    sys.stdout.write(f"wrote {PAGE}\n")
