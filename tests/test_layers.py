"""lstmkit's import structure: the contracts in pyproject.toml (``[tool.importlinter]``: the
floors, the ground floor under the kernels, the generic ONNX builder, the task packages and
no cycles) are kept, and no module imports itself through others."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "importlinter", reason="import-linter is not installed (pip install -e '.[dev]')"
)

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    """``lint-imports``, as CI runs it, on the contracts of pyproject.toml."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command as c; c()",
            "--no-cache",
            "--no-logo",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    if done.returncode != 0:
        broken = out[out.find("Broken contracts") :] if "Broken contracts" in out else out
        pytest.fail(f"lint-imports: an import contract is broken\n{broken}", pytrace=False)
    assert "0 broken" in out, out


def test_no_module_imports_itself_through_others():
    """Module by module, not only between siblings: a cycle through the root package
    (its ``load`` imports :mod:`lstmkit.tasks.run`; a module that took the version from
    ``lstmkit`` instead of :mod:`lstmkit.version` would close one) is one that the
    siblings contract cannot see. Imports under ``if TYPE_CHECKING:`` never run and are
    not counted, as in the contracts."""
    import grimp

    graph = grimp.build_graph("lstmkit", exclude_type_checking_imports=True, cache_dir=None)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.append(" -> ".join((importer, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
