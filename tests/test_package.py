"""The package as a user installs it: build a wheel, install it (not editable) in a new virtual
environment, then run `demo`, `init` and `validate` in an empty folder outside the repository.

The new environment gets mailaction from the wheel only. Its dependencies come from the test
run's own environment (a .pth file names its site-packages, after the new environment's own),
so the test needs no network and takes seconds; the wheel is installed with --no-deps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "mailaction", "config.example.toml", "templates", "contacts")

pytestmark = pytest.mark.slow


def run(*command: str | Path, cwd: Path) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=environment, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a new virtual environment with the wheel of this checkout installed."""
    work = tmp_path_factory.mktemp("package")
    source = work / "source"  # a copy, so the build leaves nothing behind in the checkout
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", work / "dist", source, cwd=work)
    (wheel,) = (work / "dist").glob("mailaction-*.whl")
    env = work / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=work)
    (Path(site.strip()) / "outer.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel, cwd=work)
    return env / "bin"


def test_the_wheel_holds_the_example_and_the_page_templates(installed: Path) -> None:
    where = run(installed / "python", "-c", "import mailaction; print(mailaction.__file__)", cwd=installed)
    package = Path(where.strip()).parent
    assert package.is_relative_to(installed.parent)
    for name in ("config.example.toml", "templates/attachments/briefing.pdf", "contacts/supporters.csv"):
        assert (package / "example_campaign" / name).is_file(), name
    assert (package / "html" / "style.css").is_file()


def test_demo_runs_in_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    output = run(installed / "mailaction", "demo", cwd=tmp_path)
    assert "All 30 letters were sent." in output
    assert len(list((tmp_path / "mailaction-demo" / "received" / "new").iterdir())) == 30
    page = tmp_path / "report.html"
    run(installed / "mailaction", "report", "--log", "mailaction-demo/demo.sqlite", "--format", "html", "-o", page, cwd=tmp_path)
    assert "Free Maryia Kalesnikava" in page.read_text(encoding="utf-8")


def test_init_writes_a_campaign_that_validates(installed: Path, tmp_path: Path) -> None:
    run(installed / "mailaction", "init", "camp", cwd=tmp_path)
    output = run(installed / "mailaction", "validate", cwd=tmp_path / "camp")
    assert "30 letters ready" in output
