"""The suite's own rules, checked on its source: test modules share set-up only through ``tests/conftest.py``."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def test_no_test_module_imports_another():
    offenders = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [
                f"{path.relative_to(TESTS)} imports {n}"
                for n in names
                if n.startswith("tests.") and n != "tests.conftest"
            ]
    assert not offenders, "move shared set-up into tests/conftest.py: " + "; ".join(offenders)


def test_every_declared_marker_is_used():
    import tomllib

    declared = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    source = "".join(p.read_text(encoding="utf-8") for p in TESTS.rglob("*.py"))
    unused = [m.split(":")[0] for m in declared.get("markers", []) if f"mark.{m.split(':')[0]}" not in source]
    assert not unused, f"markers declared in pyproject.toml but used by no test: {unused}"


# what starts the real stack: Ray (directly, through the actors, the trainer group or Ray Train) or the CLI in a
# subprocess that does
STARTS_THE_STACK = ("ensure_ray", "ray.init", "run_sft", "TrainerGroup(", "ActorPool(", '"-m", "clampdpo"')


def test_every_module_that_starts_the_real_stack_is_marked_e2e():
    """So that ``pytest -m 'not e2e'`` is the fast set: the driver, the stages and the pure code, in-process."""
    unmarked = []
    for path in sorted(TESTS.rglob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        if any(s in text for s in STARTS_THE_STACK) and "pytest.mark.e2e" not in text:
            unmarked.append(str(path.relative_to(TESTS)))
    assert not unmarked, f"start Ray, DeepSpeed or the CLI but are not marked e2e: {unmarked}"
