"""platform/ is a source root: it must never shadow the standard library's `platform`."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_init_in_platform_dir():
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_stdlib_platform_imports_from_repo_root():
    out = subprocess.run(
        [sys.executable, "-c", "import platform, uuid; print(platform.system()); print(platform.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    system, location = out.stdout.split()
    assert system == "Linux"
    assert not location.startswith(str(ROOT / "platform"))


def test_llamaray_imports_beside_stdlib_platform():
    import platform

    import llamaray

    assert platform.system()
    assert Path(llamaray.__file__).parent == ROOT / "platform" / "llamaray"
