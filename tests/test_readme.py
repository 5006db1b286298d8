"""The README's quick-start, run literally, so that it cannot rot.

The commands come from the fenced blocks of README.md's "## Set up" section, parsed here (none is copied into
this file). In a temporary copy of the project's files, the first ``sh`` block (a venv, ``pip install -e .``,
``replay serve`` on port 4566) runs as a shell process; once the health endpoint answers 200, the README's
boto3 snippet creates a queue and an S3 object is put, both with the README's client settings; the server
stops on SIGTERM, the README's restart command starts it again in the same directory, and both are still
there. The test command is not run (it would run this test again): it must be the line ``.ci/run`` runs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"
PORT = 4566
HEALTH_URL = f"http://localhost:{PORT}/_localstack/health"
INSTALL_TIMEOUT = 240.0  # a fresh venv and `pip install -e .`, then the first start
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
# what pip prints when it cannot reach a package index (then the test skips instead of failing)
NO_NETWORK = (
    "from versions: none",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Max retries exceeded",
    "ProxyError",
)
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")


def setup_blocks() -> list[tuple[str, str]]:
    """The fenced code blocks of the README's "## Set up" section, as (language, text), in order."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index("## Set up")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    blocks: list[tuple[str, str]] = []
    fence: re.Match[str] | None = None
    body: list[str] = []
    for line in lines[start + 1 : end]:
        if fence is None:
            fence = _FENCE.match(line)
            body = []
        elif line.strip() == "```" and line.startswith(fence["indent"]):
            blocks.append((fence["lang"], "\n".join(body)))
            fence = None
        else:
            body.append(line[len(fence["indent"]) :] if line.startswith(fence["indent"]) else line.lstrip())
    assert fence is None, "an unclosed code fence in the README's Set up section"
    return blocks


def sh_blocks() -> list[str]:
    return [text.strip() for lang, text in setup_blocks() if lang == "sh"]


def serve_command() -> str:
    """The first set-up command: a venv, ``pip install -e .`` and ``replay serve``."""
    command = sh_blocks()[0]
    assert "\n" not in command, f"the serve quick-start is one line: {command!r}"
    return command


def one_block(description: str, matches: Callable[[str], bool]) -> str:
    found = [block for block in sh_blocks() if matches(block)]
    assert len(found) == 1, f"the README's Set up section should have one {description} block, has {found}"
    return found[0]


def readme_test_command() -> str:
    return one_block("test command", lambda block: "-m pytest" in block)


def restart_command() -> str:
    return one_block("restart", lambda block: block.startswith(".venv/bin/replay serve"))


def client_settings() -> dict[str, str]:
    """The README's ``export AWS_...=...`` line, as a mapping."""
    words = shlex.split(one_block("client settings", lambda block: block.startswith("export ")))
    assert words[0] == "export"
    settings = dict(word.split("=", 1) for word in words[1:])
    assert {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"} <= set(settings)
    return settings


def boto3_snippet() -> str:
    snippets = [text for lang, text in setup_blocks() if lang == "python"]
    assert len(snippets) == 1, "the README's Set up section should have one boto3 snippet"
    return snippets[0]


def test_the_set_up_section_has_its_two_commands_and_a_matching_restart() -> None:
    setup = [block for block in sh_blocks() if "python3 -m venv" in block]
    assert setup == [serve_command(), readme_test_command()], "exactly two set-up commands: serve, then test"
    assert "pip install -e . " in setup[0] and "replay serve --data-dir ./volume --port 4566" in setup[0]
    # restarting runs the same server, without the venv and the install before it
    assert setup[0].split(" && ")[-1] == restart_command()
    assert client_settings()["AWS_ENDPOINT_URL"] == f"http://localhost:{PORT}"


def test_the_readme_test_command_is_what_ci_runs() -> None:
    command = readme_test_command()
    ci_lines = [line.strip() for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines()]
    assert command in ci_lines, f"{CI_SCRIPT} should run the README's test command verbatim: {command}"


# -- the quick-start itself ---------------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    """Whether something answers on ``localhost:port`` or holds 127.0.0.1:``port``."""
    for family, kind, proto, _, address in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as probe:
            probe.settimeout(1)
            try:
                if probe.connect_ex(address) == 0:
                    return True
            except OSError:  # an address family this machine does not route
                pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def project_copy(destination: Path) -> Path:
    """The project's files (``git ls-files``, and new files not ignored yet) copied into ``destination``."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the project's files are listed with git, which failed here: {exc}")
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # not one deleted in the work tree
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def shell_env() -> dict[str, str]:
    """This environment without replay's or AWS's settings, which would change what the README shows."""
    replay_settings = ("DATA_DIR", "PERSISTENCE", "REPLAY_", "SNAPSHOT_", "MOTO_", "GATEWAY_", "AWS_", "VIRTUAL_ENV")
    env = {key: value for key, value in os.environ.items() if not key.startswith(replay_settings)}
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@contextmanager
def shell(command: str, cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` run by ``sh`` in a process group of its own, its output in ``log``; killed if still running.

    Like the interactive shell a user pastes the line into, this shell waits for the server on SIGTERM
    instead of dying of it (``trap :`` catches the signal; a caught signal, unlike an ignored one, is not
    passed on to the commands the shell runs), so its exit status is the server's.
    """
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["sh", "-c", f"trap : INT TERM; {command}"],
            cwd=cwd,
            env=shell_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_healthy(process: subprocess.Popen[bytes], log: Path, timeout: float, installing: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(HEALTH_URL, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if process.poll() is not None:
            output = log.read_text(errors="replace")
            offline = [line for line in output.splitlines() if any(marker in line for marker in NO_NETWORK)]
            if installing and offline:
                pytest.skip(f"pip could not reach a package index: {offline[0].strip()}")
            pytest.fail(f"the command exited ({process.returncode}) before {HEALTH_URL} answered 200:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"{HEALTH_URL} did not answer 200 within {timeout:.0f} s:\n{log.read_text(errors='replace')}")
        time.sleep(0.5)


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM to the server's process group; it must exit 0 and log no traceback."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        status = process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM:\n{log.read_text()}")
    output = log.read_text(errors="replace")
    assert status == 0, f"the server exited {status} on SIGTERM:\n{output}"
    assert "Traceback" not in output, output


def client(service: str, settings: dict[str, str]) -> Any:
    """A boto3 client configured as the README's ``export`` line says (and no retries)."""
    session = boto3.session.Session(
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        region_name=settings["AWS_DEFAULT_REGION"],
    )
    config = BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"})
    return session.client(service, endpoint_url=settings["AWS_ENDPOINT_URL"], config=config)


@pytest.mark.e2e
@pytest.mark.skipif(not hasattr(os, "killpg") or shutil.which("sh") is None, reason="needs a POSIX shell")
def test_quick_start_keeps_a_queue_and_an_object_across_a_restart(tmp_path: Path) -> None:
    if port_in_use(PORT):
        pytest.skip(f"port {PORT} is in use: the README's quick-start needs it free")
    if shutil.which("python3") is None:
        pytest.skip("the README's quick-start runs python3, which is not on PATH")
    settings = client_settings()
    project = project_copy(tmp_path / "project")

    with shell(serve_command(), project, tmp_path / "serve.log") as server:
        wait_healthy(server, tmp_path / "serve.log", INSTALL_TIMEOUT, installing=True)
        snippet = subprocess.run(
            [sys.executable, "-c", boto3_snippet()],
            env={**shell_env(), **settings},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert snippet.returncode == 0, snippet.stderr
        queue_url = snippet.stdout.strip()
        assert queue_url.startswith(settings["AWS_ENDPOINT_URL"]), queue_url
        s3 = client("s3", settings)
        s3.create_bucket(Bucket="photos")
        s3.put_object(Bucket="photos", Key="cat.jpg", Body=b"\x89 a cat")
        s3.close()
        stop(server, tmp_path / "serve.log")
    assert (project / "volume").is_dir(), "the state is kept in ./volume"

    with shell(restart_command(), project, tmp_path / "restart.log") as server:
        wait_healthy(server, tmp_path / "restart.log", START_TIMEOUT)
        sqs, s3 = client("sqs", settings), client("s3", settings)
        assert sqs.get_queue_url(QueueName=queue_url.rsplit("/", 1)[1])["QueueUrl"] == queue_url
        assert s3.get_object(Bucket="photos", Key="cat.jpg")["Body"].read() == b"\x89 a cat"
        sqs.close()
        s3.close()
        stop(server, tmp_path / "restart.log")
    shutil.rmtree(project / ".venv")  # hundreds of MB; the logs stay for a look
