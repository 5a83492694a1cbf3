"""The package a user installs: a wheel into a fresh virtualenv, run from an empty folder.

Proves that the built-in profiles, rule packs, sites and scenarios are package
data, and that the install claims no generic top-level import names (the
checkout's drivers/, rules/ and simulators/ install as monitord.*).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SITE = """\
site: {id: tiny}
poll: 1s
profiles:  # the power pack reads the residual-current and cable-temperature points too
  - include: profiles/eastron-sdm630.yaml
  - include: profiles/fire-monitor.yaml
assets:
  - id: M1
    type: power_meter
    profile: eastron-sdm630
    connection: {modbus: {host: 127.0.0.1, port: 1502}}
rules:
  - include: rules/packs/power.yaml
"""


def sh(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with monitord installed from its wheel (not editable); its bin folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", ROOT, cwd=tmp)
    [wheel] = (tmp / "dist").glob("monitord-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"monitord", wheel.name.split("-py")[0] + ".dist-info"}, tops
    sh(sys.executable, "-m", "venv", tmp / "venv", cwd=tmp)
    sh(tmp / "venv" / "bin" / "pip", "install", "-q", wheel, cwd=tmp, timeout=600)
    return tmp / "venv" / "bin"


def test_the_installed_package_checks_a_site_that_uses_built_in_profiles_and_packs(
    installed: Path, tmp_path: Path
) -> None:
    (tmp_path / "site.yaml").write_text(SITE)
    done = sh(installed / "monitord", "check", "site.yaml", cwd=tmp_path)
    assert "site.yaml: ok — 1 assets, 2 profiles" in done.stdout
    where = "import monitord.rules; print(monitord.rules.__file__)"
    imported = sh(installed / "python", "-c", where, cwd=tmp_path)
    assert str(ROOT) not in imported.stdout, "the wheel's copy is imported, not the checkout"


def test_the_installed_package_runs_the_demo_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    done = sh(installed / "monitord", "demo", "--duration", "30s", cwd=tmp_path, timeout=120)
    assert "TICKET" in done.stdout, done.stdout
    assert (tmp_path / "monitord-data" / "demo.db").exists()


def test_the_installed_package_reads_its_own_message_catalogs(installed: Path, tmp_path: Path) -> None:
    """The .po files ship as package data and Babel (a dependency) reads them: a zh-CN text, not the
    English fallback an absent catalog would give."""
    code = (
        "from monitord.core import i18n; print(i18n.catalog_path('zh-CN'));"
        "print(i18n.translator('zh-CN')('recovered'))"
    )
    path, text = sh(installed / "python", "-c", code, cwd=tmp_path).stdout.splitlines()
    assert str(ROOT) not in path, "the wheel's catalog, not the checkout's"
    assert text == "已恢复"
