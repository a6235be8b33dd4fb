"""CI runs the README's quick-start commands verbatim: `.ci/run --dry-run` reads exactly
the two ```bash blocks of "## Quick start", both install onnx2torch (the ONNX tests need
it), and `.ci/run` installs nothing by hand."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
CI = ROOT / ".ci" / "run"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("git") is None,
                                reason="needs bash and git")


def quick_start_blocks(readme: str) -> list[str]:
    section = readme[readme.index("\n## Quick start"):]
    section = section[:section.index("\n## ", 1)]
    return [block.strip() for block in re.findall(r"^```bash\n(.*?)^```", section,
                                                  re.S | re.M)]


def dry_run(root: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(root / ".ci" / "run"), "--dry-run"], cwd=root,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.checkout
def test_ci_runs_the_readmes_two_quick_start_commands_verbatim():
    blocks = quick_start_blocks((ROOT / "README.md").read_text())
    assert len(blocks) == 2 and all("\n" not in block for block in blocks)
    done = dry_run()
    assert done.returncode == 0, done.stderr
    said = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert [said["quick start 1"], said["quick start 2"]] == blocks
    assert blocks[0].endswith("pixelprior reproduce cifar10 --quick")
    assert '".[dev]"' in blocks[1] and blocks[1].endswith("python -m pytest")
    assert "-m slow" in said["slow tests"]


def test_both_install_commands_install_onnx2torch():
    for block in quick_start_blocks((ROOT / "README.md").read_text()):
        assert "pip install --no-deps onnx2torch" in block, block


def test_ci_installs_nothing_by_hand():
    code = [line for line in CI.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    assert not [line for line in code if re.search(r"\bpip\b", line)]


def test_a_readme_of_other_than_two_commands_stops_ci(tmp_path):
    (tmp_path / ".ci").mkdir()
    shutil.copy(CI, tmp_path / ".ci" / "run")
    text = (ROOT / "README.md").read_text().replace(
        "## Documentation", "```bash\necho a third command\n```\n\n## Documentation", 1)
    (tmp_path / "README.md").write_text(text)
    done = dry_run(tmp_path)
    assert done.returncode != 0 and "holds 3 ```bash blocks" in done.stderr
