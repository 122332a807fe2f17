"""What the package ships besides the code, checked without building it: the manual pages and the bash
completion written from the argument parser, and the unit files of node/systemd/."""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from builder import __version__, completion, manpage
from builder.cli import make_parser
from builder.coldstart import layout
from builder.coldstart.settings import Settings
from builder.resources import render

PROJECT = Path(__file__).resolve().parents[2]
DATE = datetime.date(2026, 11, 30)
BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = manpage.subparsers(parser)
    return dict(action.choices) if action else {}


def options(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions if a.help != argparse.SUPPRESS for o in a.option_strings]


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return {page.name: page.text for page in manpage.pages(make_parser(), "linstor-appliance 0.1.0", DATE)}


def test_one_page_for_the_tool_and_one_per_subcommand(pages: dict[str, str]) -> None:
    parser = make_parser()
    assert set(pages) == {"linstor-appliance"} | {f"linstor-appliance-{name}" for name in subcommands(parser)}
    assert {"linstor-appliance-deploy", "linstor-appliance-coldstart", "linstor-appliance-build",
            "linstor-appliance-boot"} <= set(pages)  # fmt: skip
    top = pages["linstor-appliance"]
    for name in subcommands(parser):
        # Listed as a command, and pointed to.
        assert f"\\fB{manpage.literal(name)}\\fR" in top
        assert f"\\fB{manpage.literal('linstor-appliance-' + name)}\\fR(1)" in top


def test_every_option_of_a_subcommand_is_on_its_page(pages: dict[str, str]) -> None:
    for name, sub in subcommands(make_parser()).items():
        text = pages[f"linstor-appliance-{name}"]
        nested = subcommands(sub)
        # coldstart's actions have no pages of their own: their options are on the coldstart page.
        for parser in [sub, *nested.values()]:
            for option in options(parser):
                assert f"\\fB{manpage.literal(option)}\\fR" in text, (name, option)
        for action in nested:
            assert f'.SS "{manpage.literal(f"linstor-appliance {name} {action}")}"' in text


def test_help_defaults_are_filled_in_and_the_date_is_the_given_one(pages: dict[str, str]) -> None:
    deploy = pages["linstor-appliance-deploy"]
    assert deploy.startswith('.TH "LINSTOR\\-APPLIANCE\\-DEPLOY" "1" "2026-11-30" "linstor-appliance 0.1.0"')
    coldstart = pages["linstor-appliance-coldstart"]
    assert "(default: 300)" in coldstart and "%(default)" not in coldstart


def test_text_cannot_start_a_roff_request() -> None:
    assert manpage.escape(".hidden\n'quoted\nback\\slash") == "\\&.hidden\n\\&'quoted\nback\\eslash"


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db is not installed (make host-deps)")
def test_pages_render_without_warnings(pages: dict[str, str], tmp_path: Path) -> None:
    for name, text in pages.items():
        path = tmp_path / f"{name}.1"
        path.write_text(text)
        result = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(path)],
                                capture_output=True, text=True, env={"LC_ALL": "C.UTF-8", "MANWIDTH": "80",
                                                                     "PATH": "/usr/bin:/bin"})  # fmt: skip
        assert result.returncode == 0 and result.stderr == "", (name, result.stderr)


Complete = Callable[..., list[str]]


@pytest.fixture(scope="module")
def complete(tmp_path_factory: pytest.TempPathFactory) -> Complete:
    """Runs the completion generated for a parser (default: the tool's) under bash-completion for a
    command line; returns the candidates."""
    if not BASH_COMPLETION.is_file():
        pytest.skip("bash-completion is not installed (make host-deps)")
    directory = tmp_path_factory.mktemp("files")
    (directory / "appliance.raw.zst").write_text("")

    def run(line: str, parser: argparse.ArgumentParser | None = None) -> list[str]:
        parser = parser or make_parser()
        script = directory.parent / f"{parser.prog}.bash-completion"
        script.write_text(completion.script(parser))
        words = line.split(" ")
        program = f"""
            . {BASH_COMPLETION}
            . {script}
            cd {directory}
            COMP_WORDS=({" ".join(f"'{w}'" for w in words)}); COMP_CWORD={len(words) - 1}
            COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}
            _{parser.prog.replace("-", "_")}
            printf '%s\\n' "${{COMPREPLY[@]}}"
        """
        result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
        return sorted(filter(None, result.stdout.splitlines()))

    return run


def test_completion_offers_commands_options_choices_and_files(complete: Complete) -> None:
    assert complete("linstor-appliance ") == ["backup", "boot", "build", "coldstart", "deploy", "restore", "status",
                                             "sync", "upgrade"]
    assert complete("linstor-appliance --") == ["--debug", "--help", "--verbose", "--version"]
    assert complete("linstor-appliance -v coldstart ") == ["install", "remove", "status"]
    assert complete("linstor-appliance coldstart install --re") == ["--retry-interval"]
    assert complete("linstor-appliance boot --accel ") == ["auto", "kvm", "tcg"]
    assert complete("linstor-appliance deploy --image app") == ["appliance.raw.zst"]
    assert complete("linstor-appliance restore --image app") == ["appliance.raw.zst"]
    assert complete("linstor-appliance upgrade --image app") == ["appliance.raw.zst"]
    # An option's value is not mistaken for a subcommand or a position.
    assert complete("linstor-appliance deploy --vmid 100 --st") == ["--storage", "--strategy"]
    assert complete("linstor-appliance deploy --name deploy --dry") == ["--dry-run"]


def test_an_option_value_named_like_a_subcommand_is_a_value(complete: Complete) -> None:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--profile")
    sub = parser.add_subparsers()
    sub.add_parser("start").add_argument("--wait", action="store_true")
    sub.add_parser("stop").add_argument("--force", action="store_true")
    assert complete("tool --profile stop ", parser) == ["start", "stop"]
    assert complete("tool --profile stop start --", parser) == ["--help", "--wait"]


def test_every_option_of_every_command_completes(complete: Complete) -> None:
    def walk(parser: argparse.ArgumentParser, words: str) -> None:
        assert set(complete(f"{words} -")) == set(options(parser)), words
        for name, sub in subcommands(parser).items():
            walk(sub, f"{words} {name}")

    walk(make_parser(), "linstor-appliance")


def test_packaged_units_are_what_coldstart_install_writes_with_the_defaults() -> None:
    """node/systemd/ must not drift from the templates the tool renders for the package's own tool path (the
    units run /usr/bin/linstor-appliance); update both together."""
    defaults = Settings()
    units = PROJECT / "node/systemd"
    expected = {
        "linstor-coldstart-retry.service": render(f"{layout.TEMPLATES}/linstor-coldstart-retry.service.j2",
                                                  command=layout.tool_command(packaged=True)),
        "linstor-coldstart-retry.timer": render(f"{layout.TEMPLATES}/linstor-coldstart-retry.timer.j2",
                                                interval=defaults.retry_interval),
    }  # fmt: skip
    assert "ExecStart=/usr/bin/linstor-appliance coldstart retry\n" in expected["linstor-coldstart-retry.service"]
    coldstart = {path.name: path.read_text() for path in units.iterdir() if path.name.startswith("linstor-coldstart")}
    assert coldstart == expected
    # The only other units: backup's and sync's, which no command writes.
    assert sorted(p.name for p in units.iterdir() if p.name not in expected) == [
        "linstor-appliance-backup.service", "linstor-appliance-backup.timer",
        "linstor-appliance-sync.service", "linstor-appliance-sync.timer"]


@pytest.mark.skipif(shutil.which("dpkg-parsechangelog") is None, reason="dpkg-dev is not installed")
def test_the_package_version_is_the_tools() -> None:
    """make deb refuses to build otherwise: the package would claim a version the tool does not report."""
    version = subprocess.run(["dpkg-parsechangelog", "-l", str(PROJECT / "debian/changelog"), "-SVersion"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert version == __version__
