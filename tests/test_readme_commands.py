"""Every ``lstmkit`` command the README shows parses with the current command line (its
subcommands and flags exist), and every task the registry holds is documented."""

import re
import shlex
from pathlib import Path

import pytest

from lstmkit.cli.main import build_parser
from lstmkit.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.commenters = "#"
            lexer.wordchars += "-./=:,[]"
            tokens, part = list(lexer), []
            for token in [*tokens, "&&"]:
                if token not in ("&&", "|", ";"):
                    part.append(token)
                    continue
                if part[:1] == ["lstmkit"]:
                    commands.append(part[1:])
                elif "lstmkit.cli.main" in part:
                    commands.append(part[part.index("lstmkit.cli.main") + 1 :])
                part = []
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_commands_of_every_task():
    shown = {c[0] for c in COMMANDS if c}
    assert set(TASKS) <= shown and {"predict", "evaluate", "tune"} <= shown


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_readme_command_parses(argv):
    args, rest = build_parser().parse_known_args(argv)
    assert args.command is not None
    # what argparse leaves over must be --section.key VALUE config overrides
    keys = [r for r in rest if r.startswith("-")]
    assert all(k.startswith("--") and "." in k.split("=")[0] for k in keys), rest
