"""Init hooks: real scripts in real folders, run as child processes."""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from replay.serve.hooks import InitHooks, Script, ScriptState, Stage

LOGGER = "replay.init"


def shell(path: Path, body: str, *, executable: bool = True, shebang: str = "#!/bin/sh") -> Path:
    """Write a shell script (making its folders), executable unless told otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{shebang}\n{body}\n" if shebang else f"{body}\n")
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR if executable else mode & ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    return path


def python(path: Path, body: str) -> Path:
    """Write a Python script (not executable: it is run with the server's interpreter)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


def states(scripts: list[Script]) -> dict[str, ScriptState]:
    return {script.name: script.state for script in scripts}


def wait_for(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_order_is_the_folders_own_scripts_by_name_then_each_subfolder_depth_first(tmp_path: Path) -> None:
    ready = tmp_path / "ready.d"
    trail = tmp_path / "trail"
    names = ["b.sh", "10.sh", "2.sh", "sub2/x.sh", "sub1/z.sh", "sub1/deeper/y.sh", "sub1/deeper/more/w.sh"]
    for name in names:
        shell(ready / name, f'echo "{name}" >> "{trail}"')
    python(ready / "a.py", f"with open({str(trail)!r}, 'a') as f:\n    f.write('a.py\\n')\n")
    expected = ["10.sh", "2.sh", "a.py", "b.sh", "sub1/z.sh", "sub1/deeper/y.sh", "sub1/deeper/more/w.sh", "sub2/x.sh"]

    hooks = InitHooks(tmp_path)
    assert [script.path for script in hooks.scripts(Stage.READY)] == [ready / name for name in expected]
    assert all(script.state is ScriptState.UNKNOWN for script in hooks.scripts(Stage.READY))

    ran = hooks.run(Stage.READY)
    assert trail.read_text().split() == expected
    assert [script.state for script in ran] == [ScriptState.SUCCESSFUL] * len(expected)
    assert all(script.stage is Stage.READY for script in ran)


def test_other_files_and_other_stages_folders_are_not_scripts(tmp_path: Path) -> None:
    for name in ("notes.txt", "seed.bash", "seed.sh.bak", "README", "data.json", "run.pyc"):
        shell(tmp_path / "boot.d" / name, f'touch "{tmp_path / name}.ran"')
    (tmp_path / "boot.d" / "folder.sh").mkdir()  # a folder, even named like a script, is searched, not run
    shell(tmp_path / "boot.d" / "folder.sh" / "inner.sh", "true")
    shell(tmp_path / "elsewhere.d" / "x.sh", "true")
    shell(tmp_path / "top.sh", "true")

    hooks = InitHooks(tmp_path)
    assert [script.name for script in hooks.scripts(Stage.BOOT)] == ["inner.sh"]
    assert hooks.document()["scripts"] == [{"stage": "BOOT", "name": "inner.sh", "state": "UNKNOWN"}]
    hooks.run(Stage.BOOT)
    assert not list(tmp_path.glob("*.ran"))


def test_a_failing_script_is_an_error_and_the_next_ones_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start = tmp_path / "start.d"
    shell(start / "1-fails.sh", "exit 3")
    shell(start / "2-killed.sh", "kill -TERM $$")
    python(start / "3-raises.py", "raise RuntimeError('no bucket today')\n")
    shell(start / "4-runs.sh", f'touch "{tmp_path / "ran"}"')

    with caplog.at_level(logging.INFO, logger=LOGGER):
        ran = InitHooks(tmp_path).run(Stage.START)

    assert states(ran) == {
        "1-fails.sh": ScriptState.ERROR,
        "2-killed.sh": ScriptState.ERROR,
        "3-raises.py": ScriptState.ERROR,
        "4-runs.sh": ScriptState.SUCCESSFUL,
    }
    assert (tmp_path / "ran").exists()
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [
        "init start.d/1-fails.sh: failed with exit status 3",
        "init start.d/2-killed.sh: killed by signal SIGTERM",
        "init start.d/3-raises.py: failed with exit status 1",
    ]
    messages = caplog.messages
    assert "init start.d/3-raises.py: RuntimeError: no bucket today" in messages  # the traceback is logged


def test_environment_is_the_servers_with_the_given_variables_and_cwd_is_the_scripts_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLAY_TEST_INHERITED", "from the server")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "overridden")
    environment = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    variables = [*environment, "REPLAY_TEST_INHERITED"]
    lines = " ".join(f'"{name}=${name}"' for name in variables)
    shell(
        tmp_path / "ready.d" / "nested" / "env.sh", f'printf "%s\\n" {lines} "cwd=$(pwd -P)" > "{tmp_path / "sh.env"}"'
    )
    python(
        tmp_path / "ready.d" / "env.py",
        "import os\n"
        f"names = {variables!r}\n"
        f"with open({str(tmp_path / 'py.env')!r}, 'w') as f:\n"
        "    f.writelines(f'{name}={os.environ[name]}\\n' for name in names)\n"
        "    f.write(f'cwd={os.getcwd()}\\n')\n",
    )

    ran = InitHooks(tmp_path, environment).run(Stage.READY)

    assert states(ran) == {"env.py": ScriptState.SUCCESSFUL, "env.sh": ScriptState.SUCCESSFUL}
    expected = [f"{name}={value}" for name, value in environment.items()] + ["REPLAY_TEST_INHERITED=from the server"]
    real = tmp_path.resolve()
    assert (tmp_path / "sh.env").read_text().splitlines() == [*expected, f"cwd={real / 'ready.d' / 'nested'}"]
    assert (tmp_path / "py.env").read_text().splitlines() == [*expected, f"cwd={real / 'ready.d'}"]


def test_output_is_logged_line_by_line_stdout_and_stderr_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shell(tmp_path / "ready.d" / "seed.sh", 'echo "creating bucket"\necho "oops" >&2\nprintf "no newline"')
    python(
        tmp_path / "ready.d" / "sub" / "seed.py", "import sys\nprint('from python')\nprint('err', file=sys.stderr)\n"
    )

    with caplog.at_level(logging.INFO, logger=LOGGER):
        InitHooks(tmp_path).run(Stage.READY)

    records = [record for record in caplog.records if record.name == LOGGER]
    messages = [record.getMessage() for record in records]
    shell_lines = [m for m in messages if m.startswith("init ready.d/seed.sh: ") and "running" not in m]
    assert shell_lines[:3] == [
        "init ready.d/seed.sh: creating bucket",
        "init ready.d/seed.sh: oops",
        "init ready.d/seed.sh: no newline",
    ]
    assert "init ready.d/sub/seed.py: from python" in messages
    assert "init ready.d/sub/seed.py: err" in messages
    assert "init ready.d/seed.sh: running" in messages
    assert any(m.startswith("init ready.d/seed.sh: successful in ") for m in messages)
    assert all(record.levelno == logging.INFO for record in records)


def test_a_shell_script_that_is_not_executable_or_has_no_shebang_is_an_error_and_never_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    boot = tmp_path / "boot.d"
    shell(boot / "a-not-executable.sh", f'touch "{tmp_path / "a.ran"}"', executable=False)
    shell(boot / "b-no-shebang.sh", f'touch "{tmp_path / "b.ran"}"', shebang="")
    shell(boot / "c-neither.sh", f'touch "{tmp_path / "c.ran"}"', executable=False, shebang="")
    shell(boot / "d-fine.sh", f'touch "{tmp_path / "d.ran"}"')

    with caplog.at_level(logging.INFO, logger=LOGGER):
        ran = InitHooks(tmp_path).run(Stage.BOOT)

    assert [script.state for script in ran] == [ScriptState.ERROR] * 3 + [ScriptState.SUCCESSFUL]
    assert sorted(path.name for path in tmp_path.glob("*.ran")) == ["d.ran"]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert warnings[0].startswith("init boot.d/a-not-executable.sh: not run: the file is not executable")
    assert f"chmod +x {boot / 'a-not-executable.sh'}" in warnings[0]
    assert "shebang" not in warnings[0]
    assert warnings[1].startswith("init boot.d/b-no-shebang.sh: not run: it has no shebang")
    assert "#!/bin/sh" in warnings[1] and "chmod" not in warnings[1]
    assert "chmod +x" in warnings[2] and "shebang" in warnings[2]
    assert not any("init boot.d/a-not-executable.sh: running" in m for m in caplog.messages)


def test_a_script_whose_interpreter_is_missing_is_an_error_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shell(tmp_path / "boot.d" / "a.sh", "true", shebang="#!/no/such/shell")
    shell(tmp_path / "boot.d" / "b.sh", "true", shebang="#!/bin/sh\r")  # Windows line endings
    shell(tmp_path / "boot.d" / "c.sh", "true")

    with caplog.at_level(logging.INFO, logger=LOGGER):
        ran = InitHooks(tmp_path).run(Stage.BOOT)

    assert [script.state for script in ran] == [ScriptState.ERROR, ScriptState.ERROR, ScriptState.SUCCESSFUL]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [
        "init boot.d/a.sh: could not be started: the interpreter of its shebang line '#!/no/such/shell' was not found",
        "init boot.d/b.sh: could not be started: the interpreter of its shebang line '#!/bin/sh' was not found"
        " (the file has Windows line endings: convert it to Unix ones)",
    ]


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (a container's init may not reap it at once)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return fields[0] not in ("Z", "X")


def test_a_script_that_runs_too_long_is_killed_with_its_process_group(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = tmp_path / "child.pid"
    shell(
        tmp_path / "ready.d" / "1-hangs.sh",
        f'echo "before the hang"\nsleep 30 &\necho $! > "{pid_file}"\nwait',
    )
    shell(tmp_path / "ready.d" / "2-next.sh", f'touch "{tmp_path / "next.ran"}"')

    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        ran = InitHooks(tmp_path, timeout=0.5).run(Stage.READY)
    elapsed = time.monotonic() - started

    assert 0.5 <= elapsed < 3.0
    assert states(ran) == {"1-hangs.sh": ScriptState.ERROR, "2-next.sh": ScriptState.SUCCESSFUL}
    assert "init ready.d/1-hangs.sh: before the hang" in caplog.messages  # output said before the kill is kept
    assert "init ready.d/1-hangs.sh: did not finish in 0.5 s: killed, with its process group" in caplog.messages
    child = int(pid_file.read_text())
    wait_for(lambda: not _alive(child), timeout=2.0)
    assert (tmp_path / "next.ran").exists()


def test_a_running_script_shows_as_running_from_another_thread(tmp_path: Path) -> None:
    go = tmp_path / "go"
    shell(tmp_path / "ready.d" / "1-waits.sh", f'while [ ! -e "{go}" ]; do sleep 0.01; done')
    shell(tmp_path / "ready.d" / "2-after.sh", "true")
    hooks = InitHooks(tmp_path, timeout=10)
    runner = threading.Thread(target=hooks.run, args=(Stage.READY,))
    runner.start()
    try:
        wait_for(lambda: hooks.document()["scripts"][0]["state"] == "RUNNING")  # type: ignore[index]
        assert hooks.stage_document("ready") == {
            "completed": False,
            "scripts": [
                {"stage": "READY", "name": "1-waits.sh", "state": "RUNNING"},
                {"stage": "READY", "name": "2-after.sh", "state": "UNKNOWN"},
            ],
        }
        assert not hooks.completed(Stage.READY)
        assert hooks.summary(Stage.READY) == "init ready.d: 2 scripts to run"
        assert hooks.run(Stage.READY)[0].state is ScriptState.RUNNING  # a second call while it runs runs nothing
    finally:
        go.touch()
        runner.join(10)
    assert not runner.is_alive()
    assert hooks.stage_document("READY") == {
        "completed": True,
        "scripts": [
            {"stage": "READY", "name": "1-waits.sh", "state": "SUCCESSFUL"},
            {"stage": "READY", "name": "2-after.sh", "state": "SUCCESSFUL"},
        ],
    }


def test_documents_have_localstacks_shape(tmp_path: Path) -> None:
    shell(tmp_path / "boot.d" / "ok.sh", "true")
    shell(tmp_path / "ready.d" / "sub" / "bad.sh", "exit 1")
    python(tmp_path / "ready.d" / "seed.py", "pass\n")
    shell(tmp_path / "shutdown.d" / "bye.sh", "true")
    hooks = InitHooks(tmp_path)

    assert hooks.document() == {
        "completed": {"BOOT": False, "START": False, "READY": False, "SHUTDOWN": False},
        "scripts": [
            {"stage": "BOOT", "name": "ok.sh", "state": "UNKNOWN"},
            {"stage": "READY", "name": "seed.py", "state": "UNKNOWN"},
            {"stage": "READY", "name": "bad.sh", "state": "UNKNOWN"},
            {"stage": "SHUTDOWN", "name": "bye.sh", "state": "UNKNOWN"},
        ],
    }
    for stage in (Stage.BOOT, Stage.START, Stage.READY):
        hooks.run(stage)

    assert hooks.document() == {
        "completed": {"BOOT": True, "START": True, "READY": True, "SHUTDOWN": False},
        "scripts": [
            {"stage": "BOOT", "name": "ok.sh", "state": "SUCCESSFUL"},
            {"stage": "READY", "name": "seed.py", "state": "SUCCESSFUL"},
            {"stage": "READY", "name": "bad.sh", "state": "ERROR"},
            {"stage": "SHUTDOWN", "name": "bye.sh", "state": "UNKNOWN"},
        ],
    }
    ready = {
        "completed": True,
        "scripts": [
            {"stage": "READY", "name": "seed.py", "state": "SUCCESSFUL"},
            {"stage": "READY", "name": "bad.sh", "state": "ERROR"},
        ],
    }
    assert hooks.stage_document("ready") == hooks.stage_document("READY") == hooks.stage_document("Ready") == ready
    assert hooks.stage_document("start") == {"completed": True, "scripts": []}
    assert hooks.stage_document("shutdown") == {"completed": False, "scripts": [hooks.document()["scripts"][-1]]}  # type: ignore[index]
    for unknown in ("", "ready.d", "BOOTS", "init", "0"):
        assert hooks.stage_document(unknown) is None
    assert hooks.summary(Stage.BOOT) == "init boot.d: 1 script, none failed"
    assert hooks.summary(Stage.READY) == "init ready.d: 2 scripts, 1 failed"
    assert hooks.summary(Stage.START) == "init start.d: no scripts"
    assert hooks.summary(Stage.SHUTDOWN) == "init shutdown.d: 1 script to run"


def test_a_stage_runs_once(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    shell(tmp_path / "shutdown.d" / "count.sh", f'echo x >> "{counter}"')
    hooks = InitHooks(tmp_path)
    first = hooks.run(Stage.SHUTDOWN)
    second = hooks.run(Stage.SHUTDOWN)
    assert counter.read_text() == "x\n"
    assert first == second == [Script(Stage.SHUTDOWN, tmp_path / "shutdown.d" / "count.sh", ScriptState.SUCCESSFUL)]


@pytest.mark.parametrize("root", ["none", "missing", "file", "empty"])
def test_no_init_dir_means_no_scripts_and_every_stage_completes(tmp_path: Path, root: str) -> None:
    path = {"none": None, "missing": tmp_path / "nope", "file": tmp_path / "file", "empty": tmp_path}[root]
    if root == "file":
        (tmp_path / "file").write_text("not a folder")
    hooks = InitHooks(path)
    empty = {"completed": {"BOOT": False, "START": False, "READY": False, "SHUTDOWN": False}, "scripts": []}
    assert hooks.document() == empty
    for stage in Stage:
        assert hooks.run(stage) == []
        assert hooks.summary(stage) == f"init {stage.name.lower()}.d: no scripts"
    assert hooks.document() == {"completed": dict.fromkeys(("BOOT", "START", "READY", "SHUTDOWN"), True), "scripts": []}


def test_a_relative_init_dir_works_though_scripts_run_in_their_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell(tmp_path / "init" / "ready.d" / "sub" / "ok.sh", 'touch "ran"')
    monkeypatch.chdir(tmp_path)
    ran = InitHooks(Path("init")).run(Stage.READY)
    assert states(ran) == {"ok.sh": ScriptState.SUCCESSFUL}
    assert (tmp_path / "init" / "ready.d" / "sub" / "ran").exists()


def test_a_symbolic_link_loop_is_searched_once(tmp_path: Path) -> None:
    shell(tmp_path / "ready.d" / "a" / "x.sh", "true")
    (tmp_path / "ready.d" / "a" / "loop").symlink_to(tmp_path / "ready.d")
    hooks = InitHooks(tmp_path)
    assert [script.name for script in hooks.scripts(Stage.READY)] == ["x.sh"]


def test_a_python_script_runs_with_the_servers_interpreter(tmp_path: Path) -> None:
    python(
        tmp_path / "ready.d" / "which.py", f"import sys\nopen({str(tmp_path / 'which')!r}, 'w').write(sys.executable)\n"
    )
    InitHooks(tmp_path).run(Stage.READY)
    assert (tmp_path / "which").read_text() == sys.executable


def test_timeout_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        InitHooks(tmp_path, timeout=0)
