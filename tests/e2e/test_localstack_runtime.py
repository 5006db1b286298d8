"""LocalStack's runtime, as a client sees it over HTTP: health, info, init hooks, state resets, restart and
kill, ``GATEWAY_LISTEN``, the ``Ready.`` line and the restore's log lines; real ``replay serve`` processes."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import AwsClients, ReplayServer, Servers, free_port, server_env

pytestmark = pytest.mark.e2e

SESSION_INFO_KEYS = {
    "version": str,
    "edition": str,
    "is_license_activated": bool,
    "session_id": str,
    "machine_id": str,
    "system": str,
    "is_docker": bool,
    "server_time_utc": str,
    "uptime": int,
}


def queues(aws: AwsClients, server: ReplayServer) -> list[str]:
    return sorted(url.rsplit("/", 1)[1] for url in aws("sqs", server).list_queues().get("QueueUrls", []))


def buckets(aws: AwsClients, server: ReplayServer) -> list[str]:
    return sorted(bucket["Name"] for bucket in aws("s3", server).list_buckets()["Buckets"])


# --- health ---------------------------------------------------------------------------------------------------


def test_health_speaks_localstack_and_calls_services_running_once_used(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    server = servers.start(tmp_path / "volume")
    health = server.health()
    assert {"services", "edition", "version", "features"} <= set(health)
    assert health["edition"] == "community" and health["features"]["persistence"] == "initialized"
    services = health["services"]
    assert "lambda" in services and "awslambda" not in services and "cognito-idp" in services  # LocalStack's names
    assert services["sqs"] == "available" and set(services.values()) <= {"available", "running", "disabled", "error"}
    aws("sqs", server).create_queue(QueueName="jobs")
    assert server.health()["services"]["sqs"] == "running"
    assert requests.head(server.endpoint + "/_localstack/health", timeout=10).status_code == 200


def test_health_says_disabled_without_persistence(servers: Servers, tmp_path: Path) -> None:
    server = servers.start(tmp_path / "volume", env={"PERSISTENCE": "0"})
    assert server.health()["features"]["persistence"] == "disabled"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"action": "dance"}', b'{"action": 1}', b'{"verb": "kill"}'],
    ids=["empty", "not-json", "list", "unknown-action", "number", "no-action"],
)
def test_health_post_refuses_what_is_no_action_with_a_400(
    module_servers: Servers, tmp_path_factory: pytest.TempPathFactory, body: bytes
) -> None:
    server = _shared(module_servers, tmp_path_factory)
    answer = requests.post(server.endpoint + "/_localstack/health", data=body, timeout=10)
    assert answer.status_code == 400 and answer.headers["Content-Type"] == "application/json"
    assert "kill" in answer.json()["message"] and "restart" in answer.json()["message"]
    assert server.running


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_health_answers_other_methods_405(
    module_servers: Servers, tmp_path_factory: pytest.TempPathFactory, method: str
) -> None:
    server = _shared(module_servers, tmp_path_factory)
    answer = requests.request(method, server.endpoint + "/_localstack/health", timeout=10)
    assert answer.status_code == 405 and answer.json()["error"]


def _shared(module_servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> ReplayServer:
    running = [server for server in module_servers.started if server.running]
    return running[0] if running else module_servers.start(tmp_path_factory.mktemp("shared") / "volume")


@pytest.mark.parametrize("backend", ["replay", "snapshot"])
def test_restart_restores_the_persisted_state_in_process(
    servers: Servers, aws: AwsClients, tmp_path: Path, backend: str
) -> None:
    server = servers.start(tmp_path / "volume", "--backend", backend)
    aws("sqs", server).create_queue(QueueName="before")
    aws("s3", server).create_bucket(Bucket="kept-bucket")
    answer = requests.post(server.endpoint + "/_localstack/health", json={"action": "restart"}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "action": "restart"}
    server.wait_healthy()
    assert queues(aws, server) == ["before"] and buckets(aws, server) == ["kept-bucket"]
    aws("sqs", server).create_queue(QueueName="after")  # it records again after the restart
    assert "restarted in" in server.stderr()
    server.stop()
    again = servers.start(tmp_path / "volume", "--backend", backend)
    assert queues(aws, again) == ["after", "before"] and buckets(aws, again) == ["kept-bucket"]


def test_a_restart_that_cannot_restore_stops_the_server_and_says_so(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    server = servers.start(tmp_path / "volume")
    aws("sqs", server).create_queue(QueueName="jobs")
    with open(server.log_path, "ab") as log:  # a complete line that is no entry: the restore refuses the log
        log.write(b"this is not an entry\n")
    answer = requests.post(server.endpoint + "/_localstack/health", json={"action": "restart"}, timeout=10)
    assert answer.status_code == 200
    server.proc.wait(timeout=30)
    stderr = server.stderr()
    assert server.proc.returncode == 1, stderr
    assert "the restart failed" in stderr.splitlines()[-1]  # never serving empty state as if restored


def test_kill_stops_the_server_as_sigterm_does(servers: Servers, aws: AwsClients, tmp_path: Path) -> None:
    server = servers.start(tmp_path / "volume")
    aws("sqs", server).create_queue(QueueName="jobs")
    answer = requests.post(server.endpoint + "/_localstack/health", json={"action": "kill"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["action"] == "kill"
    server.proc.wait(timeout=10)
    assert server.proc.returncode == 0 and "stopped; state is on disk" in server.stderr()
    again = servers.start(tmp_path / "volume")
    assert queues(aws, again) == ["jobs"]


# --- info -----------------------------------------------------------------------------------------------------


def test_info_has_exactly_the_keys_of_localstacks_session_info(
    module_servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = _shared(module_servers, tmp_path_factory)
    info = requests.get(server.endpoint + "/_localstack/info", timeout=10).json()
    assert set(info) == set(SESSION_INFO_KEYS)
    for key, kind in SESSION_INFO_KEYS.items():
        assert isinstance(info[key], kind), (key, info[key])
    assert info["edition"] == "community" and info["is_license_activated"] is False and info["uptime"] >= 0
    assert time.strptime(info["server_time_utc"], "%Y-%m-%dT%H:%M:%S")
    ours = requests.get(server.endpoint + "/_replay/info", timeout=10).json()
    assert ours["backend"]["backend"] == "replay" and ours["data_dir"] == str(server.data_dir)
    assert ours["listening"] == [server.endpoint] and ours["session_id"] == info["session_id"]
    assert requests.post(server.endpoint + "/_localstack/info", timeout=10).status_code == 405


# --- state ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_localstack/state"),
        ("GET", "/_localstack/state/"),
        ("GET", "/_localstack/state/save"),
        ("GET", "/_localstack/state/sqs/reset"),
        ("PUT", "/_localstack/state/reset"),
        ("DELETE", "/_localstack/state/s3/load"),
    ],
)
def test_state_paths_take_post_only(
    module_servers: Servers, tmp_path_factory: pytest.TempPathFactory, method: str, path: str
) -> None:
    server = _shared(module_servers, tmp_path_factory)
    answer = requests.request(method, server.endpoint + path, timeout=10)
    assert answer.status_code == 405, answer.text
    assert answer.headers["Content-Type"] == "application/json" and "POST" in answer.json()["message"]


@pytest.mark.parametrize("backend", ["replay", "snapshot"])
def test_resetting_one_service_is_kept_across_a_restart(
    servers: Servers, aws: AwsClients, tmp_path: Path, backend: str
) -> None:
    server = servers.start(tmp_path / "volume", "--backend", backend)
    aws("sqs", server).create_queue(QueueName="gone")
    aws("s3", server).create_bucket(Bucket="stays")
    answer = requests.post(server.endpoint + "/_localstack/state/sqs/reset", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"service": "sqs", "status": "ok"}
    assert queues(aws, server) == [] and buckets(aws, server) == ["stays"]
    aws("sqs", server).create_queue(QueueName="new")
    unknown = requests.post(server.endpoint + "/_localstack/state/no-such-service/reset", timeout=10)
    assert unknown.status_code == 404
    server.stop()
    again = servers.start(tmp_path / "volume", "--backend", backend)
    assert queues(aws, again) == ["new"] and buckets(aws, again) == ["stays"]


# --- init hooks -----------------------------------------------------------------------------------------------

_SEED = """\
import os, sys
import boto3

sqs = boto3.client("sqs")
names = [url.rsplit("/", 1)[1] for url in sqs.list_queues().get("QueueUrls", [])]
with open(os.environ["MARKS"], "a") as marks:
    marks.write(("exists" if "seeded" in names else "created") + " " + os.environ["AWS_ENDPOINT_URL"] + "\\n")
if "seeded" not in names:
    sqs.create_queue(QueueName="seeded")
"""


def _init_dir(root: Path) -> Path:
    for stage in ("boot", "start", "ready", "shutdown"):
        (root / f"{stage}.d").mkdir(parents=True)
        script = root / f"{stage}.d" / f"10-{stage}.sh"
        script.write_text(f'#!/bin/sh\necho "{stage} $AWS_ACCESS_KEY_ID $AWS_DEFAULT_REGION" >> "$MARKS"\n')
        script.chmod(0o755)
    (root / "ready.d" / "20-seed.py").write_text(_SEED)
    failing = root / "ready.d" / "05-fails.sh"
    failing.write_text("#!/bin/sh\necho broken on purpose\nexit 3\n")
    failing.chmod(0o755)
    return root


def _wait_init(server: ReplayServer, timeout: float = 60.0) -> None:
    """Until the ready.d scripts have run (the server is healthy, and serving them, before)."""
    deadline = time.monotonic() + timeout
    while not requests.get(server.endpoint + "/_localstack/init/ready", timeout=10).json()["completed"]:
        assert time.monotonic() < deadline, server.stderr()
        time.sleep(0.1)


def test_init_hooks_run_in_their_stages_and_ready_sees_the_restored_state(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    init = _init_dir(tmp_path / "init")
    marks = tmp_path / "marks.txt"
    env = {"INIT_DIR": str(init), "MARKS": str(marks)}
    server = servers.start(tmp_path / "volume", env=env)
    _wait_init(server)
    document = requests.get(server.endpoint + "/_localstack/init", timeout=10).json()
    assert document["completed"] == {"BOOT": True, "START": True, "READY": True, "SHUTDOWN": False}
    states = {(script["stage"], script["name"]): script["state"] for script in document["scripts"]}
    assert states[("READY", "05-fails.sh")] == "ERROR" and states[("READY", "20-seed.py")] == "SUCCESSFUL"
    assert states[("SHUTDOWN", "10-shutdown.sh")] == "UNKNOWN"
    ready = requests.get(server.endpoint + "/_localstack/init/ready", timeout=10).json()
    assert ready["completed"] is True and {s["stage"] for s in ready["scripts"]} == {"READY"}
    assert requests.get(server.endpoint + "/_localstack/init/nope", timeout=10).status_code == 404
    assert server.health()["features"]["initScripts"] == "initialized"
    assert queues(aws, server) == ["seeded"]
    assert "broken on purpose" in server.stderr()  # a script's output goes to the log
    server.stop()
    again = servers.start(tmp_path / "volume", env=env)
    _wait_init(again)
    assert queues(aws, again) == ["seeded"]
    again.stop()
    lines = marks.read_text().splitlines()
    # boot and start before ready, shutdown last; the second ready.d saw the queue restored
    first = ["boot", "start", "ready", "created", "shutdown"]
    assert [line.split()[0] for line in lines] == [*first, "boot", "start", "ready", "exists", "shutdown"]
    assert lines.count("ready test us-east-1") == 2
    assert lines[3] == f"created {server.endpoint}" and lines[8] == f"exists {again.endpoint}"


# --- start, stop and logs -------------------------------------------------------------------------------------


def _serve(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "replay", "serve", "--data-dir", str(data_dir), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server_env(env),
    )


def _wait_ready(proc: subprocess.Popen[str], timeout: float = 30.0) -> float:
    """Seconds until ``Ready.`` came on stdout as a line of its own."""
    started = time.monotonic()
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if readable else "(nothing within the timeout)"
    if line != "Ready.\n":
        proc.kill()
        _out, err = proc.communicate(timeout=30)
        pytest.fail(f"expected 'Ready.' on stdout, got {line!r}; stderr:\n{err}")
    assert time.monotonic() - started < timeout
    return time.monotonic() - started


def test_ready_is_printed_once_the_restored_state_is_served_and_sigterm_exits_within_a_second(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc = _serve(tmp_path / "volume", "--port", str(port))
    try:
        _wait_ready(proc)
        assert requests.get(f"http://127.0.0.1:{port}/_localstack/health", timeout=10).status_code == 200
        requests.post(
            f"http://127.0.0.1:{port}/",
            data="Action=CreateQueue&QueueName=jobs",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request, "
                "SignedHeaders=host, Signature=abc",
            },
            timeout=10,
        ).raise_for_status()
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert took < 1.0, f"exit took {took:.2f} s after SIGTERM; stderr:\n{err}"
    assert out == "", out  # Ready. once, nothing else on stdout


def test_gateway_listen_binds_every_address_and_port_flags_win(tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    second = second if second != first else free_port([first])
    listen = f"127.0.0.1:{first},127.0.0.1:{second}"
    proc = _serve(tmp_path / "volume", env={"GATEWAY_LISTEN": listen})
    try:
        _wait_ready(proc)
        for port in (first, second):
            assert requests.get(f"http://127.0.0.1:{port}/_localstack/health", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    third = free_port([first, second])
    proc = _serve(tmp_path / "volume", "--port", str(third), env={"GATEWAY_LISTEN": listen})
    try:
        _wait_ready(proc)
        assert requests.get(f"http://127.0.0.1:{third}/_localstack/health", timeout=10).status_code == 200
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{first}/_localstack/health", timeout=2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_bad_gateway_listen_is_one_line(servers: Servers, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "replay", "serve", "--data-dir", str(tmp_path / "volume")],
        capture_output=True,
        text=True,
        env=server_env({"GATEWAY_LISTEN": "localhost:http"}),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "GATEWAY_LISTEN" in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1, done.stderr


def test_restored_line_counts_the_checkpoints_calls_and_the_replayed_tail(
    servers: Servers, aws: AwsClients, tmp_path: Path
) -> None:
    server = servers.start(tmp_path / "volume")
    sqs = aws("sqs", server)
    for name in ("a", "b", "c"):
        sqs.create_queue(QueueName=name)
    requests.post(server.endpoint + "/_replay/compact", timeout=30).raise_for_status()
    sqs.create_queue(QueueName="d")
    server.stop()
    again = servers.start(tmp_path / "volume")
    stderr = again.stderr()
    assert f"Restored 4 API calls from persistent file: {tmp_path / 'volume' / 'recorded_api_calls.json'}" in stderr
    assert "3 from checkpoint 000001" in stderr and "1 replayed from the log since it" in stderr
    again.stop()
    snapshot = servers.start(tmp_path / "snap", "--backend", "snapshot")
    aws("sqs", snapshot).create_queue(QueueName="x")
    snapshot.stop()
    restarted = servers.start(tmp_path / "snap", "--backend", "snapshot")
    assert f"Restored state of 1 services from {tmp_path / 'snap' / 'state'}" in restarted.stderr()
