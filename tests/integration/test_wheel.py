"""The wheel as `pip install katagate` installs it, in a fresh virtualenv outside the checkout:
one top-level import name, `katagate`, with every stage under it, and a CLI that works."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What a build must not pick up from a working checkout.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", ".katagate",
                                    "__pycache__", ".*_cache", ".hypothesis", "tests", "bench")


def run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_given_the_wheel_in_a_fresh_venv_then_katagate_is_its_only_import_name(tmp_path: Path):
    # Given: the wheel built from a copy of the source (no stale build/ of the checkout's)
    source = tmp_path / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SOURCE)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", source,
        cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("katagate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"katagate", wheel.name.split("-py3")[0]
                                                      + ".dist-info"}
    for data in ("katagate/schemas/json/mail.received.v1.json", "katagate/eventlog/broker/pom.xml",
                 "katagate/console/templates/base.html", "katagate/ingest/server.py"):
        assert data in names, data

    # When: it is installed into a fresh virtualenv; the dependencies are the test venv's own
    # (a path in a .pth file, which runs none of that venv's .pth hooks such as its editable
    # katagate), so the install takes seconds and needs no index.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel,
        cwd=tmp_path)

    # Then: katagate is the distribution's one top-level name, the CLI runs from outside the
    # checkout, and the stages import only through it.
    top = run(python, "-c", "from importlib.metadata import distribution as d; print(sorted("
              "{f.parts[0] for f in d('katagate').files if f.suffix == '.py'}))", cwd=tmp_path)
    assert top.stdout.strip() == "['katagate']"
    shown = run(venv / "bin" / "katagate", "up", "--help", cwd=tmp_path)
    assert "usage: katagate up" in shown.stdout
    where = run(python, "-c", "import katagate.ingest.server as s, katagate.schemas.mail as e;"
                " print(s.__file__, e.__file__)", cwd=tmp_path)
    assert where.stdout.count(str(site)) == 2, where.stdout
    bare = subprocess.run([python, "-c", "import schemas"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert "No module named 'schemas'" in bare.stderr
