import subprocess
import sys

from tmd.cli import COMMANDS, main


def test_usage_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"  {name}" in out


def test_unknown_command_is_a_clear_error(capsys):
    assert main(["deploy"]) == 2
    assert "unknown command [deploy]" in capsys.readouterr().err


def test_every_command_has_help():
    for name in COMMANDS:
        done = subprocess.run([sys.executable, "-m", "tmd", name, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"usage: tmd {name}" in done.stdout
