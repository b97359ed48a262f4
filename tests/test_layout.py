"""The dependency rules of the project's layout (README "Layout"), checked on the source."""
import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("datapipe", "architectures", "regularizers", "evaluation")
PROJECT = set(PACKAGES) | {path.stem for path in ROOT.glob("*.py")} | {"benchmarks", "experiments", "tests"}
# what each package may import besides the standard library and its own modules
ALLOWED = {
    "datapipe": {"numpy", "torch", "torchvision", "cv2", "PIL", "scipy"},
    "architectures": {"torch", "torchvision"},
    "regularizers": {"numpy", "torch", "scipy"},  # copy-pasteable: numpy/torch/scipy and the standard library
    "evaluation": {"numpy", "torch", "scipy"},
}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports in one source file (relative imports stay in the package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names)


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_no_other_package_and_no_script(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        imported = imported_modules(path)
        assert imported <= ALLOWED[package], f"{path.relative_to(ROOT)} imports {sorted(imported - ALLOWED[package])}"
        assert not imported & PROJECT, f"{path.relative_to(ROOT)} imports {sorted(imported & PROJECT)}"


def test_toy2d_stands_alone():
    assert not imported_modules(ROOT / "toy2d.py") & PROJECT


def test_the_check_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nimport numpy as np\nfrom datapipe.transforms import warp\nfrom .masks import x\n")
    assert imported_modules(bad) == {"numpy", "datapipe"}


COMMANDS = ["train_seg_semisup", "prepare_data", "patch_distances", "toy2d", "experiments.paper_tables"] + sorted(
    f"benchmarks.{p.stem}" for p in (ROOT / "benchmarks").glob("*.py") if "click.command" in p.read_text())


@pytest.mark.parametrize("module", COMMANDS)
def test_every_command_answers_a_usage_error_in_one_line(module):
    """README: every script answers bad input with one line, `Error: ...` (usage errors too, exit code 2)."""
    import importlib

    import click
    from click.testing import CliRunner

    mod = importlib.import_module(module)
    own = [v for v in vars(mod).values() if isinstance(v, click.Command) and v.callback.__module__ == mod.__name__]
    subcommands = {id(c) for g in own if isinstance(g, click.Group) for c in g.commands.values()}
    commands = [c for c in own if id(c) not in subcommands]  # what `python script.py` / `python -m` runs
    assert commands, f"no top-level click command in {module}"
    for command in commands:
        result = CliRunner().invoke(command, ["--no-such-option"], prog_name=module)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), result.output


def test_a_missing_choice_option_lists_its_values_on_the_same_line():
    from click.testing import CliRunner

    import prepare_data

    result = CliRunner().invoke(prepare_data.main, ["check"], prog_name="prepare_data.py")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "Missing option '--dataset'" in lines[0] and "pascal_aug" in lines[0] and "cityscapes" in lines[0]
