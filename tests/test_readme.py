"""The README's commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    quick_start = _bash_blocks((ROOT / "README.md").read_text())[:2]
    assert len(quick_start) == 2
    main_cmd, test_cmd = (block.strip() for block in quick_start)
    assert main_cmd.startswith("pip install torch==2.13.0 && ")
    assert test_cmd.startswith("pip install torch==2.13.0 && ")
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    # .ci/run runs the command itself, or holds it as TEST_COMMAND='...' and runs that
    assert test_cmd in ci_lines or f"TEST_COMMAND='{test_cmd}'" in ci_lines
