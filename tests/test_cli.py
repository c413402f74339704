import subprocess
import sys

from vbsearch.cli import COMMANDS, main


def test_help_lists_every_subcommand_with_a_line():
    out = subprocess.run([sys.executable, "-m", "vbsearch.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in COMMANDS:
        line = next((ln for ln in out.stdout.splitlines() if ln.strip().startswith(cmd.name)), None)
        assert line is not None, cmd.name
    for name in ("index", "search", "train", "ui", "status", "transcript"):
        assert name in {c.name for c in COMMANDS}


def test_console_script_is_installed():
    exe = subprocess.run([sys.executable, "-c", "import shutil,sys; print(shutil.which('vbsearch', path=sys.prefix + '/bin'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert exe != "None"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("vbsearch ")


def test_status_on_an_empty_data_dir(tmp_path, capsys):
    assert main(["status", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "videos        0" in out and "vbsearch index" in out


def test_config_error_is_reported_not_raised(tmp_path, capsys):
    (tmp_path / "vbsearch.toml").write_text("nonsense = 1\n")
    assert main(["status", "--data-dir", str(tmp_path)]) == 2
    assert "unknown setting 'nonsense'" in capsys.readouterr().err


def test_only_the_chosen_command_is_imported():
    # A CLI search that asks a running service must not pay for polars or torch (search/owner.py).
    code = ("import sys; from vbsearch.cli import main\n"
            "try: main(['search', '--help'])\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'polars', 'indexer.run', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--top-k" in out and "--like" in out  # the chosen command's own flags are there
    assert out.strip().endswith("[]")
    index_help = subprocess.run([sys.executable, "-m", "vbsearch.cli", "index", "--help"], capture_output=True, text=True,
                           check=True).stdout
    assert "--prune" in index_help
