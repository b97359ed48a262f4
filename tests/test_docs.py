"""The commands and options the documentation shows exist: README.md and BENCHMARKS.md against the click CLIs.

Every command line in a shell block (``python SCRIPT [SUBCOMMAND] ...``, ``python -m benchmarks.X ...``,
``torchrun ... train_seg_semisup.py ...``) must name a real script and subcommand and use only options that
command accepts; and every ``--option`` written anywhere in the two files must belong to some command of the
project (or to the few outside tools the README shows: pip, pytest, torchrun). An option renamed or removed
in the code, or misspelt in the text, fails here.
"""
from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "BENCHMARKS.md")

SCRIPTS = {  # file → module holding its click command or group
    "train_seg_semisup.py": "train_seg_semisup",
    "toy2d.py": "toy2d",
    "prepare_data.py": "prepare_data",
    "patch_distances.py": "patch_distances",
    "paper_tables.py": "experiments.paper_tables",
}
OUTSIDE_OPTIONS = {  # options of the outside tools the README shows
    "--nproc-per-node", "--nproc_per_node", "--nnodes", "--node-rank", "--master-addr", "--master-port",
    "--rdzv-backend", "--rdzv-endpoint", "--standalone",  # torchrun
    "--runxfail", "--durations",  # pytest
    "--signal",  # SLURM's sbatch
    "--x", "--no-x",  # README's pattern for boolean switches (`--x/--no-x`)
    "--sup_path",  # the authors' toy2d option, named where the README explains what replaces it
}


def click_command(module_name: str) -> click.Command:
    module = importlib.import_module(module_name)
    commands = [obj for obj in vars(module).values() if isinstance(obj, click.Command)]
    groups = [c for c in commands if isinstance(c, click.Group)]
    return groups[0] if groups else next(c for c in commands if c.callback.__module__ == module_name)


def option_names(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(n for n in param.opts + param.secondary_opts if n.startswith("--"))
    return names


def every_command() -> list[click.Command]:
    modules = list(SCRIPTS.values()) + [f"benchmarks.{p.stem}" for p in sorted((ROOT / "benchmarks").glob("*.py"))
                                        if p.stem != "__init__" and "@click." in p.read_text()]
    found = []
    for name in modules:
        command = click_command(name)
        found.append(command)
        if isinstance(command, click.Group):
            found.extend(command.commands.values())
    return found


def shell_lines(text: str) -> list[str]:
    """The command lines of the fenced blocks (continuations joined, comments dropped)."""
    lines, in_block, pending = [], False, ""
    for raw in text.splitlines():
        if raw.startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            continue
        line = pending + raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else pending
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.strip():
            lines.append(line.strip())
    return lines


def target_of(tokens: list[str]) -> tuple[str, list[str]] | None:
    """(module, arguments) of a command line that runs one of the project's commands, else None."""
    for i, token in enumerate(tokens):
        if token == "-m" and i + 1 < len(tokens) and tokens[i + 1].startswith(("benchmarks.", "experiments.")):
            return tokens[i + 1], tokens[i + 2:]
        script = token.split("/")[-1]
        if token.startswith("benchmarks/") and token.endswith(".py"):
            return f"benchmarks.{Path(token).stem}", tokens[i + 1:]
        if script in SCRIPTS:
            return SCRIPTS[script], tokens[i + 1:]
    return None


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for line in shell_lines((ROOT / doc).read_text()):
            if "python" in line or "torchrun" in line:
                found.append((doc, line))
    return found


@pytest.mark.parametrize("doc,line", documented_commands())
def test_a_documented_command_uses_only_options_it_has(doc, line):
    try:
        tokens = shlex.split(line)
    except ValueError:
        pytest.fail(f"{doc}: cannot split {line!r}")
    found = target_of(tokens)
    if found is None:
        return  # a command of another tool (pip, pytest, bash)
    module, args = found
    args = [a.strip("[]") for a in args]  # optional parts written as [--option VALUE]
    if "--" in args:  # what follows goes to every training run (benchmarks, experiments)
        args, passed = args[:args.index("--")], args[args.index("--") + 1:]
        used = {a.split("=", 1)[0] for a in passed if a.startswith("--")}
        known = option_names(click_command("train_seg_semisup"))
        assert used <= known, f"{doc}: {sorted(used - known)} after -- are not training options: {line!r}"
    command = click_command(module)
    if isinstance(command, click.Group):
        positional = [a for a in args if not a.startswith("-")]
        assert positional and positional[0] in command.commands, f"{doc}: no subcommand in {line!r}"
        command = command.commands[positional[0]]
    known = option_names(command)
    used = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    assert used <= known, f"{doc}: {sorted(used - known)} not options of {module} {command.name}: {line!r}"


def test_every_option_the_docs_name_exists():
    known = set(OUTSIDE_OPTIONS)
    for command in every_command():
        known |= option_names(command)
    missing = {}
    for doc in DOCS:
        for match in re.finditer(r"(?<![\w-])--[a-z][a-z0-9_-]*(\*?)", (ROOT / doc).read_text()):
            option = match.group(0)
            if match.group(1):  # a family, e.g. `--boxmask-*`: its members are named elsewhere
                continue
            if option not in known:
                missing.setdefault(option, doc)
    assert not missing, f"options named in the docs that no command has: {missing}"


def test_nothing_shipped_cites_the_unshipped_design_spec():
    """The design document (SPEC.md) stays with the developers: a user who reads "SPEC §4" in the README or
    in a copied module has nothing to open."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.sh"], cwd=ROOT, capture_output=True, text=True)
    files = listed.stdout.split()
    if listed.returncode or not files:
        pytest.skip("not a git checkout")
    citing = [f for f in files if f != "tests/test_docs.py" and "SPEC §" in (ROOT / f).read_text(encoding="utf-8")]
    assert not citing


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_option_of_the_scripts_is_in_the_readme(script):
    """Every option a user can give the scripts is named in the README (by its name or an alias)."""
    readme = (ROOT / "README.md").read_text()
    command = click_command(SCRIPTS[script])
    commands = list(command.commands.values()) if isinstance(command, click.Group) else [command]
    missing = []
    for sub in commands:
        for param in sub.params:
            names = [n for n in getattr(param, "opts", []) + getattr(param, "secondary_opts", []) if n.startswith("--")]
            if names and not any(re.search(re.escape(n) + r"(?![\w-])", readme) for n in names):
                missing.append(f"{sub.name} {names[0]}")
    assert not missing, f"options of {script} the README never names: {missing}"
