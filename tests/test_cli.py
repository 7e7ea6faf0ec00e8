from __future__ import annotations

import subprocess
import sys

import pytest

from napari_unet.cli import main
from tests.conftest import BAD_FILE_MESSAGES


def test_info_describes_a_stack(stack_path, capsys):
    assert main(["info", str(stack_path)]) == 0
    out = capsys.readouterr().out
    assert "ZYX (5, 40, 50) uint16" in out and "Z=2 micrometer" in out


@pytest.mark.parametrize("name", sorted(BAD_FILE_MESSAGES))
def test_info_bad_file_is_one_error_line(bad_files, name, capsys):
    assert main(["info", str(bad_files[name])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napari-unet: error: ")
    assert str(bad_files[name]) in err[0] and BAD_FILE_MESSAGES[name] in err[0]


def test_info_good_and_bad_files_together(bad_files, stack_path, capsys):
    assert main(["info", str(stack_path), str(bad_files["empty"])]) == 1
    captured = capsys.readouterr()
    assert "stack.tif" in captured.out and "empty.tif" in captured.err


def test_console_script_runs_without_traceback(bad_files):
    result = subprocess.run(
        [sys.executable, "-m", "napari_unet.cli", "info", str(bad_files["truncated"])],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "truncated or corrupt" in result.stderr


def test_importing_the_package_stays_light():
    code = "import sys, napari_unet, napari_unet.io; print(sorted(m for m in ('torch', 'napari', 'qtpy', 'dask', 'monai') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
