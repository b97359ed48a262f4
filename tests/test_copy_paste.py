"""README "Using single modules in your own code": what it tells users to copy works where it is copied.

Each copy runs in a fresh interpreter (`python -I`) from a directory holding nothing of the project, so a
relative import, or a helper the README forgot to name, fails here as it would in a user's code."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def run_alone(directory: Path, code: str) -> str:
    """Run `code` in a fresh interpreter that sees `directory` and the installed packages, not the project."""
    prelude = f"import sys\nsys.path[:0] = [{str(directory)!r}]\n"
    result = subprocess.run([sys.executable, "-I", "-c", prelude + code], cwd=directory, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def copy_definitions(source: Path, names: list[str], target: Path) -> None:
    """Write the module's absolute imports and the named top-level definitions of `source` into `target`,
    as a user copying those definitions by hand would (relative imports are left out: nothing of the
    package comes along)."""
    text = source.read_text()
    tree = ast.parse(text)
    kept = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "level", 0) == 0:
            kept.append(ast.get_source_segment(text, node))
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            kept.append(ast.get_source_segment(text, node))
    found = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert set(names) <= found, f"{source.name} has no {sorted(set(names) - found)}"
    target.write_text("\n\n".join(kept) + "\n")


def readme_section() -> str:
    start = README.index("## Using single modules in your own code")
    end = README.find("\n## ", start + 3)
    return README[start:] if end < 0 else README[start:end]


@pytest.mark.parametrize("module", ["masks", "losses", "mean_teacher"])
def test_the_single_files_import_alone(tmp_path, module):
    assert f"`regularizers/{module}.py`" in readme_section()
    (tmp_path / f"{module}.py").write_text((ROOT / "regularizers" / f"{module}.py").read_text())
    run_alone(tmp_path, f"import {module}")


def test_the_single_files_work_alone(tmp_path):
    for module in ("masks", "losses", "mean_teacher"):
        (tmp_path / f"{module}.py").write_text((ROOT / "regularizers" / f"{module}.py").read_text())
    out = run_alone(tmp_path, """
import numpy as np, torch
from masks import BoxMaskGenerator
from losses import ConsistencyLoss
from mean_teacher import MeanTeacher
masks = BoxMaskGenerator(0.5).generate(8, (32, 32), np.random.default_rng(0))
student = torch.nn.Conv2d(3, 4, 1)
mt = MeanTeacher(student, alpha=0.99)
with torch.no_grad():
    student.weight.add_(1.0)
mt.update(student)
x = torch.randn(2, 3, 8, 8)
cons = ConsistencyLoss("var", 0.97, False)
loss, stats = cons(student(x), cons.target(mt.teacher(x)), torch.ones(2, 1, 8, 8))
print(masks.shape, round(float(masks.mean()), 2), float(loss) >= 0, 0 <= float(stats["conf_frac"]) <= 1)
""")
    assert out.split() == ["(8,", "1,", "32,", "32)", "0.5", "True", "True"]


def test_the_named_cow_mask_and_classmix_definitions_work_alone(tmp_path):
    section = readme_section()
    cow = re.search(r"For cow masks copy (.*?) from\s+`regularizers/cow_masks.py`", section, re.S).group(1)
    classmix = re.search(r"for ClassMix masks, (.*?) from\s+`regularizers/classmix.py`", section, re.S).group(1)
    cow_names, classmix_names = (re.findall(r"`(\w+)`", text) for text in (cow, classmix))
    assert "CowMaskGenerator" in cow_names and "class_mix_masks" in classmix_names
    copy_definitions(ROOT / "regularizers" / "cow_masks.py", cow_names, tmp_path / "my_cow.py")
    copy_definitions(ROOT / "regularizers" / "classmix.py", classmix_names, tmp_path / "my_classmix.py")
    out = run_alone(tmp_path, """
import numpy as np, torch
from my_cow import CowMaskGenerator
from my_classmix import class_mix_masks
cow = CowMaskGenerator((0.5, 0.5), (4, 16)).generate(64, (64, 64), np.random.default_rng(0))
pred = torch.arange(4).repeat_interleave(16).reshape(1, 8, 8).expand(2, 8, 8).contiguous()
mask = class_mix_masks(pred, torch.ones(2, 1, 8, 8), np.random.default_rng(0))
kept = [sorted(set(pred[i][mask[i, 0] > 0].tolist())) for i in range(2)]
print(cow.shape, abs(float(cow.mean()) - 0.5) < 0.05, all(len(k) == 2 for k in kept))
""")
    assert out.split() == ["(64,", "1,", "64,", "64)", "True", "True"]


def test_the_readme_example_runs():
    block = re.search(r"```python\n(.*?)```", readme_section(), re.S).group(1)
    out = run_alone(ROOT, block + "\nmt.update(student)\nprint(masks.shape, cow.shape)")  # as written, nothing added
    assert out.split() == ["(8,", "1,", "321,", "321)", "(8,", "1,", "64,", "64)"]
