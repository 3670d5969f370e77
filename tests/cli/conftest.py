"""The ``gateway`` command line run in this process, on a config file written to tmp_path for
the test's database and keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.config import Config


@pytest.fixture
def toml(config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GATEWAY_CONFIG", "")  # restored after the test: main() sets it
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'issuer = "{config.issuer}"\n'
        f'[database]\nurl = "{config.database_url}"\n'
        f'[keys]\ndir = "{config.keys_dir}"\nalgorithm = "{config.keys.algorithm}"\n'
    )
    return path


@pytest.fixture
def gw(toml: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[Any, str, str]]:
    """Run the CLI; return (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[Any, str, str]:
        capsys.readouterr()
        try:
            code: Any = cli.main(["--config", str(toml), *argv])
        except SystemExit as exit_:  # argparse's usage errors exit from parse_args
            code = exit_.code
        out, err = capsys.readouterr()
        return code, out, err

    return run
