"""The interop helpers themselves: running and stopping a process, and the echo command."""

import subprocess

import pytest

from tests.peers import listening_address, running, streams_command


def test_running_stops_the_process_by_its_id() -> None:
    with running(["sleep", "30"]) as process:
        assert process.poll() is None
    assert process.poll() is not None


def test_echo_prints_where_it_listens() -> None:
    command = streams_command("echo", "--backend", "memory", "--listen", "memory:cli-test")
    with running(command, ready_line="echo: listening on") as process:
        assert listening_address(process) == "memory:cli-test"


def test_a_process_that_never_gets_ready_fails_clearly() -> None:
    with (
        pytest.raises(AssertionError, match="did not print"),
        running(["sleep", "30"], ready_line="never", timeout=0.5),
    ):
        pass


def test_unknown_backend_is_a_clear_error() -> None:
    result = subprocess.run(
        streams_command("probe", "--backend", "nope", "--connect", "127.0.0.1:1"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
