"""Click commands whose errors, usage errors included, are one line: ``Error: <what and how to fix it>``.

Click prints a usage error (a bad option value, a missing argument) after the command's usage line and
a hint; the project's rule is one line for every bad input, so these command classes print only the
error, with click's exit codes (2 for usage errors, 1 for the others). Use ``cls=Command`` or
``cls=Group`` in ``click.command`` / ``click.group``.
"""
from __future__ import annotations

import sys

import click


def one_line(message: str) -> str:
    """Click lists a choice option's values one per line ("Choose from:\n\ta,\n\tb"): join the lines."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


class OneLineErrors:
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as err:
            click.echo(f"Error: {one_line(err.format_message())}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # --help and ctx.exit(n) come back as their exit code


class Command(OneLineErrors, click.Command):
    pass


class Group(OneLineErrors, click.Group):
    pass
