"""The embedded Redis: relative paths work, and a server that fails to start is explained by its own log."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from streams import redisconn
from tests.integration.conftest import free_port


def test_a_relative_data_dir_and_log_path_work(tmp_path, monkeypatch):
    """redis-server changes into --dir before opening --logfile; relative paths are made absolute first."""
    monkeypatch.chdir(tmp_path)
    started = redisconn.start_embedded_redis(f"redis://127.0.0.1:{free_port()}/0", Path("data/redis"),
                                             Path("data/logs/redis.log"))  # fmt: skip
    try:
        assert redisconn.redis_answers(started.url)
        assert (tmp_path / "data" / "logs" / "redis.log").stat().st_size > 0
    finally:
        os.kill(started.pid, signal.SIGTERM)
        os.waitpid(started.pid, 0)  # the server is this process's child here (the CLI that starts one exits)


def test_a_server_that_exits_is_explained_by_the_last_lines_of_its_log(tmp_path, monkeypatch):
    """The error quotes the log (which exists, where it says), and the empty directory made for it is removed."""
    fake = tmp_path / "redis-server"
    fake.write_text('#!/bin/sh\nwhile [ "$1" != "--logfile" ]; do shift; done\n'
                    'echo "# Warning: no config file specified" > "$2"\n'
                    'echo "# Can\'t chdir to somewhere: Permission denied" >> "$2"\nexit 1\n')  # fmt: skip
    fake.chmod(0o755)
    monkeypatch.setattr(redisconn, "embedded_redis_binary", lambda: str(fake))
    workdir = tmp_path / "redis"
    with pytest.raises(RuntimeError) as failure:
        redisconn.start_embedded_redis(f"redis://127.0.0.1:{free_port()}/0", workdir, tmp_path / "logs" / "r.log")
    message = str(failure.value)
    assert message.startswith("embedded Redis exited with code 1: ")
    assert "Can't chdir to somewhere: Permission denied" in message and str(tmp_path / "logs" / "r.log") in message
    assert not workdir.exists()
