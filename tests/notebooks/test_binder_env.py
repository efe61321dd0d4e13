"""Build a fresh virtualenv from binder/ alone, as repo2docker does, and run 01_quickstart in it.

repo2docker copies the repository, installs binder/requirements.txt into an environment that already has
JupyterLab, then runs binder/postBuild from the repository root. Here JupyterLab stands in for that base
environment; everything else comes from binder/. Slow (installs TensorFlow, from pip's cache when warm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from notebook_runner import REPO, check_outputs

INSTALL_TIMEOUT_S = 1200


def _copy_repository(target: Path) -> None:
    """The files repo2docker would see: tracked and not-ignored ones (no .venv, no build output)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = INSTALL_TIMEOUT_S) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_binder_environment_runs_the_quickstart(tmp_path: Path) -> None:
    repo, venv, out = tmp_path / "repo", tmp_path / "env", tmp_path / "out"
    for directory in (repo, out):
        directory.mkdir()
    _copy_repository(repo)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env |= {"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv)}
    python = str(bin_dir / "python")

    _run([python, "-m", "pip", "install", "-q", "jupyterlab"], repo, env)  # repo2docker's base environment
    _run([python, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], repo, env)
    _run(["bash", "binder/postBuild"], repo, env)

    _run([python, "-c", "import jupyter_server_proxy, nbserve, tensorflow_serving.apis"], repo, env, 300)
    assert "nbserve" in _run([python, "-c", "import nbserve; print(nbserve.__file__)"], repo, env, 300)
    notebook = repo / "notebooks" / "01_quickstart.ipynb"
    runner = repo / "tests" / "notebooks" / "notebook_runner.py"
    print(_run([python, str(runner), str(notebook), str(out)], repo, env))
    check_outputs(nbformat.read(out / notebook.name, as_version=4), notebook.stem)
