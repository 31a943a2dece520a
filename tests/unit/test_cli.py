"""The ``og-inference`` command line without a chain: key handling, errors before any I/O, isolation.

Commands are run in-process through :func:`og_inference_async.cli.main` (in a worker thread);
every case here fails or finishes before a broker opens, so no RPC is reached. The devnet runs
are in ``tests/integration/test_cli.py``.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from og_inference_async.cli import main as cli_main

#: A well-formed key that must never be printed (the first public anvil dev key).
KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
#: Nothing listens there: a command that reached the RPC would fail with another error.
NOWHERE = ["--network", "hardhat", "--rpc-url", "http://127.0.0.1:9"]


def main(argv: list[str]) -> int:
    """Run the CLI in a thread of its own: the session's event loop may be current in this one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(cli_main, argv).result()


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OG_PRIVATE_KEY", "OG_KEY_FILE", "OG_NETWORK", "OG_RPC_URL"):
        monkeypatch.delenv(name, raising=False)


def _outputs(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    assert KEY[2:] not in captured.out + captured.err
    assert "Traceback" not in captured.err
    return captured.out, captured.err


def test_a_command_that_signs_needs_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    """Without OG_PRIVATE_KEY or --key-file, a wallet command exits 1 and says where to put the key."""
    assert main([*NOWHERE, "ledger", "show"]) == 1
    _, err = _outputs(capsys)
    assert "needs the wallet's private key" in err
    assert "OG_PRIVATE_KEY" in err and "--key-file" in err


def test_an_unreadable_key_file_is_a_config_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A key file that does not exist is reported by path, with exit code 1."""
    missing = tmp_path / "nope.key"
    assert main([*NOWHERE, "--key-file", str(missing), "ledger", "show"]) == 1
    _, err = _outputs(capsys)
    assert "cannot read the key file" in err and "nope.key" in err


def test_a_bad_key_is_refused_without_echoing_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A key file holding something that is not a key is refused; its content is not printed."""
    path = tmp_path / "bad.key"
    path.write_text(KEY[:-4] + "zzzz\n")
    path.chmod(0o600)
    assert main([*NOWHERE, "--key-file", str(path), "ledger", "show"]) == 1
    _, err = _outputs(capsys)
    assert "not a valid secp256k1 private key" in err
    assert "zzzz" not in err


def test_a_readable_key_file_warns(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A key file other users can read draws a warning (the key itself stays unprinted)."""
    path = tmp_path / "open.key"
    path.write_text(KEY)
    path.chmod(0o644)
    assert main([*NOWHERE, "--key-file", str(path), "ledger", "show", "--user", "0xnot-an-address"]) == 1
    _, err = _outputs(capsys)
    assert "can be read by other users" in err


def test_a_key_argument_warns(capsys: pytest.CaptureFixture[str]) -> None:
    """``--private-key`` is accepted with a warning about shell history."""
    main([*NOWHERE, "--private-key", KEY, "ledger", "create", "abc"])
    _, err = _outputs(capsys)
    assert "warning: --private-key" in err


def test_a_bad_amount_is_refused_before_any_io(capsys: pytest.CaptureFixture[str]) -> None:
    """An amount finer than a wei exits 1 with the InvalidAmountError message, before a broker exists."""
    assert main([*NOWHERE, "fund", "0x" + "11" * 20, "0.0000000000000000001"]) == 1
    out, err = _outputs(capsys)
    assert out == ""
    assert "more than 18 decimal places (InvalidAmountError)" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command is a usage error (exit code 2)."""
    assert main(["no-such-command"]) == 2


def test_importing_the_sdk_does_not_import_the_cli() -> None:
    """``import og_inference_async`` loads neither the CLI nor typer."""
    code = (
        "import sys, og_inference_async; "
        "print(sorted(m for m in sys.modules if m.startswith(('og_inference_async.cli', 'typer'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
