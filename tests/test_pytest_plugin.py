"""The pytest plugin, driven through ``pytester``: inner sessions (own processes, own moto) against real states.

The states are recorded once for the module, each in a process of its own so that this process's moto
stays clean: a call log (``replay.persist`` around moto, real boto3 calls over HTTP), a ``replay`` data
dir with a checkpoint and calls since, a ``snapshot`` data dir, a LocalStack legacy log, and archives
``replay export`` made of them.  Each source holds differently named resources, so a test can tell
which state it was given.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ARCHIVE_KEY = "pytest-plugin-archive-key-0123456789"
_SCRUBBED_ENV = ("DATA_DIR", "PERSISTENCE", "PERSISTENCE_BACKEND", "REPLAY_FSYNC", "REPLAY_ARCHIVE_KEY", "MOTO_PORT")

RECORD = '''
"""Record a workload into a data dir: python record.py MODE DATA_DIR."""
import sys
import threading

import boto3
from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import make_server

import replay
from replay.adapters.moto import MotoAdapter
from replay.backends.snapshot import SnapshotBackend
from replay.config import LoadStrategy, SaveStrategy
from replay.serve.emulators import moto_emulator

mode, data_dir = sys.argv[1], sys.argv[2]
emulator = moto_emulator()
backend = None
if mode == "snapshot":
    backend = SnapshotBackend(MotoAdapter(), data_dir, SaveStrategy.ON_REQUEST, LoadStrategy.ON_STARTUP)
    backend.restore()
    app = backend.wrap(emulator.app)
else:  # "log": no checkpoint; "checkpoint": one at exit; "tail": more calls after it
    percentage = 100 if mode == "checkpoint" else 0
    policy = replay.CheckpointPolicy(percentage=percentage, min_size=1 << 30, interval=3600)
    app = replay.persist(emulator.app, data_dir, seeder=emulator.seeder, adapter=MotoAdapter(), checkpoints=policy)
server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
thread = threading.Thread(target=server.serve_forever, daemon=True)
thread.start()
aws = {
    "endpoint_url": f"http://127.0.0.1:{server.server_port}",
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}
sqs, dynamodb, s3 = (boto3.client(name, **aws) for name in ("sqs", "dynamodb", "s3"))
queue = {"log": "jobs", "checkpoint": "before", "tail": "after", "snapshot": "snapped"}[mode]
url = sqs.create_queue(QueueName=queue)["QueueUrl"]
sqs.send_message(QueueUrl=url, MessageBody=f"hello from {mode}")
if mode in ("log", "snapshot"):
    table = "items" if mode == "log" else "snapitems"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName=table, Item={"id": {"S": mode}})
    s3.create_bucket(Bucket=f"files-{mode}")
    s3.put_object(Bucket=f"files-{mode}", Key="k", Body=mode.encode())
    s3.put_object(Bucket=f"files-{mode}", Key="big", Body=b"x" * 100_000)  # kept as an asset file
for client in (sqs, dynamodb, s3):
    client.close()
server.shutdown()
server.server_close()
if backend is not None:
    backend.close()
'''

# the inner sessions' configuration: as strict as this repository's own
INI = """
[pytest]
addopts = --strict-markers
filterwarnings =
    error
    ignore::DeprecationWarning:botocore.*
    ignore::DeprecationWarning:moto.*
    ignore::DeprecationWarning:flask_cors.*
"""

# helpers the inner test files share
HELPERS = """
import json
import sys

import pytest


def queues(aws):
    import boto3

    client = boto3.client("sqs", **aws)
    try:
        return sorted(url.rsplit("/", 1)[1] for url in client.list_queues().get("QueueUrls", []))
    finally:
        client.close()


def in_process_queues(emulator):
    answer = emulator.client.post("/", headers=emulator.headers("sqs", "AmazonSQS.ListQueues"), data="{}")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return sorted(url.rsplit("/", 1)[1] for url in json.loads(answer.get_data()).get("QueueUrls", []))
"""


@dataclasses.dataclass(frozen=True)
class States:
    """Paths of the recorded states (see the module docstring)."""

    log: Path  # the call log file of `log_dir`: queue jobs, table items, bucket files-log
    log_dir: Path  # a replay data dir without checkpoints
    checkpointed: Path  # a replay data dir: queue before (in its checkpoint), queue after (since)
    snapshot: Path  # a snapshot data dir: queue snapped, table snapitems, bucket files-snapshot
    localstack: Path  # a LocalStack legacy log: queue legacy
    failing: Path  # a call log whose one call fails on replay (a SendMessage to a queue never created)
    foreign: Path  # a text file
    replay_archive: Path  # `replay export` of log_dir, signed with ARCHIVE_KEY
    snapshot_archive: Path  # `replay export` of snapshot, signed with ARCHIVE_KEY
    unsigned_archive: Path  # `replay export` of snapshot, unsigned


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _SCRUBBED_ENV}
    env.update(extra or {})
    return env


def _run(commands: Iterable[tuple[list[str], dict[str, str]]], cwd: Path) -> None:
    """Run ``commands`` at the same time; fail with the stderr of any that did not exit 0."""
    procs = [
        (command, subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for command, env in commands
    ]
    failures = []
    for command, proc in procs:
        _out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failures.append(f"{' '.join(command)} exited {proc.returncode}:\n{err.decode(errors='replace')}")
    assert not failures, "\n\n".join(failures)


def _localstack_log(path: Path) -> None:
    body = "Action=CreateQueue&QueueName=legacy&Version=2012-11-05"
    record = {
        "a": "sqs",
        "m": "POST",
        "p": "/",
        "d": base64.b64encode(body.encode()).decode(),
        "h": {
            "Host": "localhost:4566",
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20220101/us-east-1/sqs/aws4_request, "
            "SignedHeaders=host, Signature=abc",
        },
        "rd": "",
    }
    path.write_text(json.dumps(record) + "\n")


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory) -> States:
    root = tmp_path_factory.mktemp("states")
    script = root / "record.py"
    script.write_text(RECORD)
    log_dir, checkpointed, snapshot = root / "log", root / "checkpointed", root / "snapshot"
    record = [sys.executable, str(script)]
    _run(
        [
            ([*record, "log", str(log_dir)], _env()),
            ([*record, "checkpoint", str(checkpointed)], _env()),
            ([*record, "snapshot", str(snapshot)], _env()),
        ],
        root,
    )
    export = [sys.executable, "-m", "replay", "export"]
    keyed = _env({"REPLAY_ARCHIVE_KEY": ARCHIVE_KEY})
    _run(
        [
            ([*record, "tail", str(checkpointed)], _env()),
            ([*export, str(root / "replay.replay"), "--data-dir", str(log_dir)], keyed),
            ([*export, str(root / "snapshot.replay"), "--data-dir", str(snapshot)], keyed),
        ],
        root,
    )
    _run([([*export, str(root / "unsigned.replay"), "--data-dir", str(snapshot)], _env())], root)
    assert (checkpointed / "checkpoints" / "MANIFEST.json").is_file()
    assert (snapshot / "state" / "api_states" / "sqs" / "backend.state").is_file()

    log = log_dir / "recorded_api_calls.json"
    failing = root / "failing.json"
    failing.write_bytes(next(line for line in log.read_bytes().splitlines(True) if b'"SendMessage"' in line))
    foreign = root / "foreign.txt"
    foreign.write_text("hello, not a state\n")
    localstack = root / "localstack.json"
    _localstack_log(localstack)
    return States(
        log,
        log_dir,
        checkpointed,
        snapshot,
        localstack,
        failing,
        foreign,
        root / "replay.replay",
        root / "snapshot.replay",
        root / "unsigned.replay",
    )


def _suite(pytester: pytest.Pytester, source: str, ini: str = "") -> None:
    """The inner suite: ``pytest.ini`` (with ``ini`` added), ``suite/helpers.py`` and ``suite/test_inner.py``."""
    pytester.makefile(".ini", pytest=INI + ini)
    suite = pytester.path / "suite"
    suite.mkdir(exist_ok=True)
    (suite / "helpers.py").write_text(HELPERS)
    (suite / "test_inner.py").write_text(textwrap.dedent(source))


def test_states_of_every_kind_markers_and_isolation(
    pytester: pytest.Pytester, states: States, monkeypatch: pytest.MonkeyPatch
) -> None:
    relative = pytester.path / "suite" / "states"
    relative.mkdir(parents=True)
    shutil.copy(states.localstack, relative / "legacy.json")
    monkeypatch.setenv("REPLAY_ARCHIVE_KEY", ARCHIVE_KEY)
    _suite(
        pytester,
        f"""
        import sys

        import pytest
        from helpers import in_process_queues, queues

        FIRST = []


        def test_a_test_without_the_fixtures_starts_nothing():
            assert "moto" not in sys.modules and "boto3" not in sys.modules


        def test_the_option_state_over_http(replay_aws, replay_emulator):
            import boto3

            assert queues(replay_aws) == ["jobs"]
            sqs = boto3.client("sqs", **replay_aws)
            url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
            assert replay_aws["endpoint_url"] in url
            [message] = sqs.receive_message(QueueUrl=url)["Messages"]
            assert message["Body"] == "hello from log"
            dynamodb = boto3.client("dynamodb", **replay_aws)
            assert dynamodb.scan(TableName="items")["Items"] == [{{"id": {{"S": "log"}}}}]
            s3 = boto3.client("s3", **replay_aws)
            assert s3.get_object(Bucket="files-log", Key="k")["Body"].read() == b"log"
            assert s3.get_object(Bucket="files-log", Key="big")["Body"].read() == b"x" * 100_000
            # changes this test makes are gone for the next one
            sqs.delete_queue(QueueUrl=url)
            dynamodb.put_item(TableName="items", Item={{"id": {{"S": "extra"}}}})
            s3.delete_object(Bucket="files-log", Key="k")
            s3.delete_object(Bucket="files-log", Key="big")
            assert queues(replay_aws) == []
            assert replay_emulator.source.kind.value == "log"
            FIRST.append(replay_emulator.loaded)
            for client in (sqs, dynamodb, s3):
                client.close()


        def test_the_same_state_in_process(replay_emulator):
            assert in_process_queues(replay_emulator) == ["jobs"]
            assert {{"dynamodb", "s3", "sqs"}} <= set(replay_emulator.services())
            answer = replay_emulator.client.get("/files-log/k", headers=replay_emulator.headers("s3"))
            assert answer.status_code == 200 and answer.get_data() == b"log"
            answer = replay_emulator.client.get("/files-log/big", headers=replay_emulator.headers("s3"))
            assert answer.get_data() == b"x" * 100_000
            assert replay_emulator.loaded is FIRST[0]  # restored once, then loaded from its baseline


        @pytest.mark.replay_state({str(states.checkpointed)!r})
        def test_a_replay_data_dir_with_a_checkpoint(replay_aws, replay_emulator):
            assert queues(replay_aws) == ["after", "before"]
            assert replay_emulator.source.kind.value == "replay"


        @pytest.mark.replay_state({str(states.snapshot)!r})
        def test_a_snapshot_data_dir(replay_aws, replay_emulator):
            import boto3

            assert queues(replay_aws) == ["snapped"]
            dynamodb = boto3.client("dynamodb", **replay_aws)
            assert dynamodb.scan(TableName="snapitems")["Items"] == [{{"id": {{"S": "snapshot"}}}}]
            s3 = boto3.client("s3", **replay_aws)
            assert len(s3.get_object(Bucket="files-snapshot", Key="big")["Body"].read()) == 100_000
            for client in (dynamodb, s3):
                client.close()
            assert replay_emulator.source.kind.value == "snapshot"


        @pytest.mark.replay_state("states/legacy.json")
        def test_a_localstack_log_relative_to_the_test_file(replay_aws, replay_emulator):
            assert queues(replay_aws) == ["legacy"]
            assert replay_emulator.source.kind.value == "localstack"


        @pytest.mark.replay_state({str(states.replay_archive)!r})
        def test_a_replay_archive(replay_emulator):
            assert in_process_queues(replay_emulator) == ["jobs"]
            assert replay_emulator.source.kind.value == "archive"
            assert replay_emulator.loaded.source.kind.value == "replay"


        @pytest.mark.replay_state({str(states.snapshot_archive)!r})
        def test_a_signed_snapshot_archive(replay_aws):
            assert queues(replay_aws) == ["snapped"]


        @pytest.mark.replay_state(None)
        def test_none_is_an_empty_emulator(replay_aws, replay_emulator):
            assert queues(replay_aws) == []
            assert replay_emulator.source is None and replay_emulator.services() == []


        @pytest.mark.replay_state({str(states.snapshot)!r})
        class TestAClassMarker:
            def test_it_applies_to_each_method(self, replay_aws):
                assert queues(replay_aws) == ["snapped"]


        def test_back_to_the_option_state_unchanged(replay_aws):
            import boto3

            assert queues(replay_aws) == ["jobs"]
            dynamodb = boto3.client("dynamodb", **replay_aws)
            assert dynamodb.scan(TableName="items")["Count"] == 1
            dynamodb.close()


        def test_mock_aws_resets_the_shared_moto(replay_aws):
            from moto import mock_aws

            with mock_aws():
                assert queues(replay_aws) == []  # same process-global backends, reset on entry
            assert queues(replay_aws) == []  # ... and on exit


        def test_the_next_test_has_its_state_back(replay_aws):
            assert queues(replay_aws) == ["jobs"]
        """,
        # the option wins over the ini value
        ini=f"replay_state = {states.snapshot}\n",
    )
    result = pytester.runpytest_subprocess(f"--replay-state={states.log}", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=13)
    result.stdout.fnmatch_lines(["configfile: pytest.ini"])  # the ini (and its replay_state) was read


def test_the_ini_state_relative_to_the_rootdir_and_trust(
    pytester: pytest.Pytester, states: States, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLAY_ARCHIVE_KEY", raising=False)
    (pytester.path / "states").mkdir()
    shutil.copy(states.unsigned_archive, pytester.path / "states" / "unsigned.replay")
    _suite(
        pytester,
        f"""
        import pytest
        from helpers import queues


        def test_the_ini_state(replay_aws):
            assert queues(replay_aws) == ["snapped"]


        @pytest.mark.replay_state({str(states.replay_archive)!r})
        def test_a_signed_replay_archive_needs_no_key(replay_aws):
            assert queues(replay_aws) == ["jobs"]
        """,
        ini="replay_state = states/unsigned.replay\n",
    )
    result = pytester.runpytest_subprocess("--replay-trust", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["configfile: pytest.ini"])


def test_a_state_that_cannot_be_restored_fails_its_tests_in_one_line(
    pytester: pytest.Pytester, states: States, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLAY_ARCHIVE_KEY", raising=False)
    _suite(
        pytester,
        f"""
        import pytest


        @pytest.mark.replay_state("missing")
        def test_missing(replay_emulator):
            pass


        @pytest.mark.replay_state("missing")
        def test_missing_again(replay_aws):
            pass


        @pytest.mark.replay_state({str(states.foreign)!r})
        def test_foreign(replay_emulator):
            pass


        @pytest.mark.replay_state({str(states.unsigned_archive)!r})
        def test_untrusted(replay_emulator):
            pass


        @pytest.mark.replay_state({str(states.failing)!r})
        def test_failed_calls(replay_emulator):
            pass


        def test_other_tests_still_run(replay_emulator):
            assert replay_emulator.services() == []
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1, errors=5)
    missing = pytester.path / "suite" / "missing"
    result.stdout.fnmatch_lines(
        [
            f"replay: cannot restore the state: no call log at {missing}: no such file or directory",
            f"replay: cannot restore the state: {states.foreign} is not a replay call log, a LocalStack log or *",
            f"replay: cannot restore the state: {states.unsigned_archive}: not imported (untrusted): *--trust*",
            f"replay: cannot restore the state: {states.failing}: 1 of 1 replayed calls failed *",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines([f"WARNING *{states.failing}:1: sqs.SendMessage failed on replay *"])
    messages = [line for line in result.stdout.lines if line.startswith("replay: cannot restore")]
    assert len(messages) == 5, result.stdout.str()


def test_help_lists_the_options_in_their_group_and_the_marker(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(
        [
            "replay: tests against moto restored from a recorded state:",
            "  --replay-state=PATH*",
            "  --replay-trust*",
        ]
    )
    result.stdout.fnmatch_lines(["  replay_state (string):*"])
    markers = pytester.runpytest_subprocess("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.replay_state(path): start the test from this recorded state*"])
