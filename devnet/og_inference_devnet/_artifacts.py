"""Pinned npm artifacts for the devnet: the anvil binary and the 0G contracts' ABI and bytecode.

Nothing third-party is shipped with this package. On first use the pinned npm packages are
installed into a cache folder outside the repository (one folder per set of pins), the
contracts' ABI and creation bytecode are read out of the official TS SDK's typechain
factories with a node one-liner, each bytecode is checked against a pinned sha256, and the
result is cached as JSON next to ``node_modules``. Concurrent processes serialise the install
on a lock file; later runs only read the cached JSON.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ._errors import DevnetError

__all__ = [
    "ANVIL_VERSION",
    "BYTECODE_SHA256",
    "CONTRACT_NAMES",
    "ETHERS_VERSION",
    "NPM_PACKAGES",
    "TS_SDK_VERSION",
    "ContractArtifact",
    "DevnetArtifacts",
    "default_cache_dir",
    "ensure_artifacts",
    "verify_bytecode",
]

#: Version of the npm package ``@foundry-rs/anvil`` (ships the native binary per platform).
ANVIL_VERSION = "1.7.1"
#: Version of ``@0gfoundation/0g-compute-ts-sdk`` whose typechain factories carry the contracts.
TS_SDK_VERSION = "0.9.0"
#: The ``ethers`` 6 version the TS SDK resolves to; pinned so conformance tests can use it.
ETHERS_VERSION = "6.17.0"

#: Exact npm specs installed into the cache folder.
NPM_PACKAGES: tuple[str, ...] = (
    f"@foundry-rs/anvil@{ANVIL_VERSION}",
    f"@0gfoundation/0g-compute-ts-sdk@{TS_SDK_VERSION}",
    f"ethers@{ETHERS_VERSION}",
)

#: The two contracts, in deployment order.
CONTRACT_NAMES: tuple[str, ...] = ("LedgerManager", "InferenceServing")

#: sha256 over the raw creation bytecode (hex-decoded, without ``0x``) of each contract.
BYTECODE_SHA256: Mapping[str, str] = {
    "LedgerManager": "778db63c51b5398d08bc528066280303bfd2e9cc380f639b878c9eaabcc6e1a1",
    "InferenceServing": "989abbbe99378fd2108c19d6e0a7af2637dfc4755c6560253565966ca5908448",
}

_SDK_DIR = "node_modules/@0gfoundation/0g-compute-ts-sdk/lib.commonjs"
_FACTORIES: Mapping[str, str] = {
    "LedgerManager": f"{_SDK_DIR}/ledger/contract/typechain/factories/LedgerManager__factory.js",
    "InferenceServing": f"{_SDK_DIR}/inference/contract/typechain/factories/InferenceServing__factory.js",
}
_ARTIFACTS_FILE = "og-devnet-artifacts.json"
_MARKER_FILE = "og-devnet-installed.json"
_LOCK_FILE = ".og-devnet-install.lock"
_INSTALL_TIMEOUT = 600.0

# The factories are CommonJS modules; the package's "exports" map blocks requiring them by
# subpath, so they are required by absolute file path. Prints {name: {abi, bytecode}}.
_EXTRACT_JS = """
const out = {};
for (let i = 1; i < process.argv.length; i += 2) {
  const name = process.argv[i];
  const factory = require(process.argv[i + 1])[name + "__factory"];
  out[name] = { abi: factory.abi, bytecode: factory.bytecode };
}
process.stdout.write(JSON.stringify(out));
"""


@dataclass(frozen=True)
class ContractArtifact:
    """ABI and verified creation bytecode of one contract.

    Attributes:
        name: ``"LedgerManager"`` or ``"InferenceServing"``.
        abi: the contract ABI, as in the TS SDK's typechain factory.
        bytecode: the creation bytecode (raw bytes; its sha256 equals :data:`BYTECODE_SHA256`).
    """

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes

    def __repr__(self) -> str:
        size = len(self.bytecode)
        return f"ContractArtifact(name={self.name!r}, abi=[{len(self.abi)} entries], bytecode={size} bytes)"


@dataclass(frozen=True)
class DevnetArtifacts:
    """The installed, verified devnet artifacts.

    Attributes:
        cache_dir: the folder holding ``node_modules`` and the extracted JSON.
        anvil: path of the native ``anvil`` binary for this platform.
        contracts: ``{"LedgerManager": ..., "InferenceServing": ...}``.
    """

    cache_dir: Path
    anvil: Path
    contracts: Mapping[str, ContractArtifact]

    @property
    def node_modules(self) -> Path:
        """The ``node_modules`` folder (has ``ethers`` and the official TS SDK, for conformance tests)."""
        return self.cache_dir / "node_modules"


def _pins_digest() -> str:
    text = "\n".join([*NPM_PACKAGES, *(f"{k}={v}" for k, v in sorted(BYTECODE_SHA256.items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    """Return the folder the artifacts are installed into.

    ``$OG_DEVNET_CACHE/<pins hash>`` when the variable is set, else
    ``$XDG_CACHE_HOME/og-inference-async/npm/<pins hash>`` (``~/.cache`` when ``XDG_CACHE_HOME``
    is unset). The short hash covers every pinned package and bytecode hash, so changing a pin
    installs into a fresh folder.
    """
    base = os.environ.get("OG_DEVNET_CACHE")
    if base:
        root = Path(base).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "og-inference-async" / "npm"
    return root / _pins_digest()


def verify_bytecode(name: str, bytecode_hex: str) -> bytes:
    """Check a contract's creation bytecode against its pinned sha256.

    Args:
        name: the contract name (a key of :data:`BYTECODE_SHA256`).
        bytecode_hex: the bytecode as hex, with or without ``0x``.

    Returns:
        The raw bytecode.

    Raises:
        DevnetError: unknown contract, bytecode that is not hex, or a hash mismatch.
    """
    expected = BYTECODE_SHA256.get(name)
    if expected is None:
        raise DevnetError(f"no pinned bytecode hash for contract {name!r}")
    text = bytecode_hex[2:] if bytecode_hex.startswith(("0x", "0X")) else bytecode_hex
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise DevnetError(f"{name} bytecode is not hex") from exc
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected:
        raise DevnetError(
            f"{name} bytecode sha256 {actual} does not match the pinned {expected}; refusing to use it",
            hint="the npm package content changed or the cache is corrupt: delete the devnet cache folder "
            "and run `python -m og_inference_devnet install` again; if it persists, report it",
        )
    return raw


def _anvil_platform_package() -> str:
    system = sys.platform
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    os_name = "linux" if system.startswith("linux") else "darwin" if system == "darwin" else None
    if arch is None or os_name is None:
        raise DevnetError(
            f"no anvil binary is published for {system}/{machine}",
            hint="the devnet runs on Linux or macOS, x86_64 or arm64",
        )
    return f"@foundry-rs/anvil-{os_name}-{arch}"


def _anvil_path(cache_dir: Path) -> Path:
    return cache_dir / "node_modules" / _anvil_platform_package() / "bin" / "anvil"


def _parse_artifacts(cache_dir: Path, text: str) -> DevnetArtifacts:
    try:
        data = json.loads(text)
        contracts = {
            name: ContractArtifact(
                name=name,
                abi=list(data[name]["abi"]),
                bytecode=verify_bytecode(name, str(data[name]["bytecode"])),
            )
            for name in CONTRACT_NAMES
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise DevnetError(
            f"cannot read the contract artifacts in {cache_dir}",
            hint="delete that folder and run `python -m og_inference_devnet install` again",
        ) from exc
    return DevnetArtifacts(cache_dir=cache_dir, anvil=_anvil_path(cache_dir), contracts=contracts)


def _marker_text() -> str:
    return json.dumps(
        {"packages": list(NPM_PACKAGES), "bytecode_sha256": dict(BYTECODE_SHA256)}, sort_keys=True
    )


async def _load_cached(cache_dir: Path) -> DevnetArtifacts | None:
    """Return the cached artifacts when a complete install is there, else ``None``."""
    marker = anyio.Path(cache_dir / _MARKER_FILE)
    if not await marker.is_file() or await marker.read_text() != _marker_text():
        return None
    if not await anyio.Path(_anvil_path(cache_dir)).is_file():
        return None
    path = anyio.Path(cache_dir / _ARTIFACTS_FILE)
    if not await path.is_file():
        return None
    return _parse_artifacts(cache_dir, await path.read_text())


def _tail(data: bytes, limit: int = 2000) -> str:
    text = data.decode(errors="replace").strip()
    return text[-limit:]


async def _run(cmd: list[str], cwd: Path, what: str) -> bytes:
    try:
        result = await anyio.run_process(cmd, cwd=cwd, check=False, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise DevnetError(f"{what} could not be run: {exc}") from exc
    if result.returncode != 0:
        raise DevnetError(
            f"{what} failed with exit code {result.returncode}: "
            f"{_tail(result.stderr) or _tail(result.stdout)}",
            hint="check that the npm registry is reachable (npm config get registry) and retry",
        )
    return result.stdout


async def _atomic_write(path: Path, text: str) -> None:
    tmp = anyio.Path(f"{path}.tmp.{os.getpid()}")
    await tmp.write_text(text)
    await tmp.replace(path)


class _InstallLock:
    """An exclusive ``flock`` on a file, acquired by polling so the event loop never blocks."""

    def __init__(self, path: Path, timeout: float) -> None:
        self._path = path
        self._timeout = timeout
        self._fd: int | None = None

    async def __aenter__(self) -> _InstallLock:
        import fcntl

        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            with anyio.fail_after(self._timeout):
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                            raise
                    await anyio.sleep(0.1)
        except TimeoutError as exc:
            os.close(fd)
            raise DevnetError(
                f"timed out waiting for another process installing into {self._path.parent}",
                hint="if no install is running, delete the lock file and retry",
            ) from exc
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


_MEMO: dict[Path, DevnetArtifacts] = {}


def _resolve_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return Path(os.path.abspath(folder))


async def ensure_artifacts(cache_dir: str | os.PathLike[str] | None = None) -> DevnetArtifacts:
    """Install (once) and verify the pinned devnet artifacts, and return them.

    The first call on a machine runs ``npm install --ignore-scripts`` of :data:`NPM_PACKAGES`
    into ``cache_dir`` (about 12 s), extracts the two contracts' ABI and bytecode with
    ``node`` and checks each bytecode's sha256 against :data:`BYTECODE_SHA256`. Later calls
    read the cached JSON (and re-check the hashes). Concurrent processes wait for each other
    on a lock file. Nothing blocks the event loop.

    Args:
        cache_dir: where to install; default :func:`default_cache_dir`.

    Returns:
        The verified :class:`DevnetArtifacts`.

    Raises:
        DevnetError: ``node``/``npm`` missing, the install or extraction failed, or a bytecode
            hash does not match the pin.
    """
    folder = _resolve_dir(cache_dir)
    memo = _MEMO.get(folder)
    if memo is not None:
        return memo
    found = await _load_cached(folder)
    if found is None:
        found = await _install(folder)
    _MEMO[folder] = found
    return found


async def _install(folder: Path) -> DevnetArtifacts:
    _anvil_platform_package()  # fail early on a platform without an anvil package
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        raise DevnetError(
            "the devnet needs Node.js and npm to fetch anvil and the 0G contracts, and "
            f"{'npm' if npm is None else 'node'} was not found on PATH",
            hint="install Node.js 18 or newer (it brings npm), e.g. `apt-get install nodejs npm`",
        )
    try:
        await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DevnetError(
            f"cannot create the devnet cache folder {folder}: {exc}",
            hint="set OG_DEVNET_CACHE to a writable folder",
        ) from exc
    async with _InstallLock(folder / _LOCK_FILE, _INSTALL_TIMEOUT):
        found = await _load_cached(folder)  # another process may have finished meanwhile
        if found is not None:
            return found
        package_json = {
            "name": "og-inference-async-devnet-cache",
            "private": True,
            "description": "npm artifacts for og_inference_devnet (generated; safe to delete)",
            "dependencies": {spec.rpartition("@")[0]: spec.rpartition("@")[2] for spec in NPM_PACKAGES},
        }
        await _atomic_write(folder / "package.json", json.dumps(package_json, indent=2) + "\n")
        with anyio.fail_after(_INSTALL_TIMEOUT):
            await _run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--ignore-scripts",
                    "--save-exact",
                    *NPM_PACKAGES,
                ],
                folder,
                "npm install",
            )
        anvil = _anvil_path(folder)
        if not await anyio.Path(anvil).is_file():
            raise DevnetError(
                f"npm installed no anvil binary at {anvil}",
                hint=f"check that npm can install {_anvil_platform_package()} on this platform",
            )
        if not os.access(anvil, os.X_OK):
            await anyio.Path(anvil).chmod(0o755)
        args: list[str] = []
        for name in CONTRACT_NAMES:
            args += [name, str(folder / _FACTORIES[name])]
        out = await _run(
            [node, "-e", _EXTRACT_JS, *args], folder, "extracting the contract artifacts with node"
        )
        text = out.decode()
        found = _parse_artifacts(folder, text)  # verifies the hashes before anything is cached
        await _atomic_write(folder / _ARTIFACTS_FILE, text)
        await _atomic_write(folder / _MARKER_FILE, _marker_text())
        return found
