"""The two distributions built from this repository, and the devnet's pytest plugin in a user's own suite.

The wheels are built from a copy of each project (so no ``build/`` folder of an earlier build can leak
into them); the devnet wheel is installed into a folder of its own and a user-style test project, in a
temporary folder outside this suite, runs on it in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
_JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")

USER_CONFTEST = """
import pytest


@pytest.fixture(scope="session")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def og_devnet_options():
    return {"lock_time": 7200}
"""

USER_TESTS = """
import os

import pytest

import og_inference_devnet
from og_inference_async import og

pytestmark = pytest.mark.anyio


def test_the_plugin_comes_from_the_installed_wheel():
    assert og_inference_devnet.__file__.startswith(os.environ["OG_DEVNET_SITE"])


async def test_the_devnet_takes_the_options_of_this_conftest(og_devnet):
    assert og_devnet.lock_time == 7200


async def test_one_chat_through_a_broker_on_the_devnet(og_providers, og_broker_factory):
    chatbot = og_providers[0]
    broker = await og_broker_factory()
    await broker.inference.ensure_ready(chatbot.address, create_ledger=True)
    result = await broker.inference.chat(chatbot.address, [{"role": "user", "content": "hi"}])
    assert result.content == "Echo: hi"
    assert (await broker.ledger.get_ledger()).total > 0


@pytest.mark.parametrize("run", [1, 2])
async def test_each_test_starts_from_the_same_chain(og_devnet_snapshot, run):
    address = og_devnet_snapshot.accounts[9].address
    assert await og_devnet_snapshot.get_balance(address) == 10**24
    await og_devnet_snapshot.set_balance(address, run)
"""


def _wheel(project: Path, work: Path) -> zipfile.ZipFile:
    """Build ``project`` (a copy of it, in ``work``) into a wheel with pip and open it."""
    source = work / "src"
    shutil.copytree(project, source, ignore=_JUNK)
    out = work / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


@pytest.fixture(scope="module")
def sdk_wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The runtime wheel (og-inference-async) built from the repository root."""
    work = tmp_path_factory.mktemp("sdk")
    project = work / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, project / name)
    shutil.copytree(REPO / "og_inference_async", project / "og_inference_async", ignore=_JUNK)
    return _wheel(project, work)


@pytest.fixture(scope="module")
def devnet_wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The devnet wheel (og-inference-devnet) built from ``devnet/``."""
    return _wheel(REPO / "devnet", tmp_path_factory.mktemp("devnet"))


def _entry_points(wheel: zipfile.ZipFile) -> str:
    found = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    return wheel.read(found[0]).decode() if found else ""


def test_runtime_wheel_holds_no_devnet(sdk_wheel: zipfile.ZipFile) -> None:
    """The SDK wheel has its package, the public token and ABI modules, the ABIs, and no devnet."""
    names = sdk_wheel.namelist()
    assert {
        "og_inference_async/__init__.py",
        "og_inference_async/tokens.py",
        "og_inference_async/abi.py",
    } <= set(names)
    assert "og_inference_async/_chain/abi/InferenceServing.json" in names
    assert [n for n in names if "devnet" in n.lower()] == []
    assert "og-devnet" not in _entry_points(sdk_wheel)


def test_devnet_wheel_holds_the_devnet_script_and_plugin(devnet_wheel: zipfile.ZipFile) -> None:
    """The devnet's wheel has the whole package (typed), the og-devnet script and the pytest11 entry point."""
    names = set(devnet_wheel.namelist())
    for module in ("__init__.py", "__main__.py", "py.typed", "pytest_plugin.py", "faultproxy.py"):
        assert f"og_inference_devnet/{module}" in names
    assert "og_inference_devnet/provider/routes/chat.py" in names
    assert not [n for n in names if n.startswith("og_inference_async/")]
    entry_points = _entry_points(devnet_wheel)
    assert "og-devnet = og_inference_devnet.__main__:main" in entry_points
    assert "[pytest11]" in entry_points and "og_inference_devnet.pytest_plugin" in entry_points


def test_installed_devnet_wheel_runs_a_user_test_suite(devnet_wheel: zipfile.ZipFile, tmp_path: Path) -> None:
    """A user's own tests get a devnet, providers and brokers from the plugin of the installed wheel."""
    site = tmp_path / "site"
    assert devnet_wheel.filename is not None
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(site),
            devnet_wheel.filename,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    project = tmp_path / "user-project"
    project.mkdir()
    (project / "conftest.py").write_text(USER_CONFTEST)
    (project / "test_with_devnet.py").write_text(USER_TESTS)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p),
        "OG_DEVNET_SITE": str(site),
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_with_devnet.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 passed" in run.stdout
