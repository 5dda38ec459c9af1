"""How the command-line tools end: one line for user errors, a traceback for bugs, clean exits on signals.

Real subprocesses: SIGTERM and Ctrl-C (SIGINT) during a video write, concurrent writers of one output,
a writer killed with SIGKILL and the sweep of its temporary file by the next run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from common.cli import run_cli
from common.errors import InputError
from model.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def python(code: str, *args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


# ----------------------------------------------------------------------------------- user error vs bug
def test_run_cli_one_line_for_user_errors_traceback_for_bugs(capsys):
    def user_error():
        raise InputError("photo.jpg: the image file is truncated")

    assert run_cli(user_error) == 1
    assert capsys.readouterr().err == "error: photo.jpg: the image file is truncated\n"

    def missing():
        raise FileNotFoundError(2, "No such file or directory", "nothing.jpg")

    assert run_cli(missing) == 1  # OSError from a user path: one line too
    assert capsys.readouterr().err.count("\n") == 1

    for bug in (ValueError("shapes do not match"), RuntimeError("internal"), KeyError("x")):
        def work(bug=bug):
            raise bug

        with pytest.raises(type(bug)):  # not swallowed: Python prints its traceback
            run_cli(work)
    assert issubclass(InputError, UserError) and issubclass(InputError, ValueError)


def test_style_transfer_bug_prints_a_traceback(tmp_path):
    code = """
        import sys
        import common.images
        import style_transfer
        def broken(path):
            raise RuntimeError("an internal bug")
        common.images.read_image_file = broken  # the first step of an image run
        sys.exit(style_transfer.main(["--content", sys.argv[1]]))
    """
    (tmp_path / "photo.jpg").write_bytes(b"x")
    rc, _, err = finish(python(code, str(tmp_path / "photo.jpg"), cwd=tmp_path))
    assert rc == 1
    assert "Traceback (most recent call last)" in err and "RuntimeError: an internal bug" in err


def test_style_transfer_user_error_is_one_line(tmp_path):
    code = "import sys, style_transfer; sys.exit(style_transfer.main(['--content', 'nothing.jpg']))"
    rc, _, err = finish(python(code, cwd=tmp_path))
    assert rc == 1
    assert err == "error: content not found: nothing.jpg\n"


# ------------------------------------------------------------------------------------------- signals
SLOW_WRITER = """
    import sys, time
    from pathlib import Path
    import numpy as np
    from common.cli import run_cli
    from pipeline.videoio import VideoWriter

    def work():
        out = Path(sys.argv[1])
        with VideoWriter(out / "clip_vtoonify_d.mp4", 10, 64, 48) as writer:
            for i in range(100000):
                writer.write(np.full((48, 64, 3), i % 256, np.uint8))
                if i == 3:
                    print("writing", flush=True)
                time.sleep(0.01)
        return out

    sys.exit(run_cli(work, lambda out: print("saved", out)))
"""


@pytest.mark.parametrize("sig, status, line", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_signal_during_a_write_exits_cleanly_and_leaves_nothing(tmp_path, sig, status, line):
    out = tmp_path / "out"
    out.mkdir()
    proc = python(SLOW_WRITER, str(out), cwd=tmp_path)
    assert proc.stdout.readline().strip() == "writing"
    assert [p.name for p in out.iterdir()][0].endswith(".partial.mp4")  # the temporary file exists now
    proc.send_signal(sig)
    rc, _, err = finish(proc)
    assert rc == status
    assert err.strip() == line  # one line, no traceback
    assert list(out.iterdir()) == []


def test_temporary_file_of_a_killed_run_is_swept_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = python(SLOW_WRITER, str(out), cwd=tmp_path)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()  # SIGKILL: no clean-up possible
    proc.wait()
    stale = list(out.iterdir())
    assert len(stale) == 1 and stale[0].name.startswith(".clip_vtoonify_d.mp4.")

    from pipeline.videoio import VideoWriter

    with VideoWriter(out / "clip_vtoonify_d.mp4", 10, 64, 48) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert [p.name for p in out.iterdir()] == ["clip_vtoonify_d.mp4"]


# --------------------------------------------------------------------------------------- concurrency
CONCURRENT_WRITER = """
    import sys, time
    from pathlib import Path
    import numpy as np
    from pipeline.stylize import atomic_imwrite
    from pipeline.videoio import VideoWriter

    out, me, other, value = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    frame = np.full((48, 64, 3), value, np.uint8)
    with VideoWriter(out / "clip_vtoonify_d.mp4", 10, 64, 48) as writer:
        for i in range(5):
            writer.write(frame)
        (out.parent / me).touch()  # both writers are half-way before either finishes
        while not (out.parent / other).exists():
            time.sleep(0.01)
        for i in range(5):
            writer.write(frame)
    atomic_imwrite(out / "photo_vtoonify_d.png", frame)
    print("saved")
"""


def test_two_processes_writing_the_same_outputs_each_leave_a_whole_file(tmp_path):
    from pipeline.videoio import VideoReader

    out = tmp_path / "out"
    out.mkdir()
    procs = [python(CONCURRENT_WRITER, str(out), "a", "b", "40", cwd=tmp_path),
             python(CONCURRENT_WRITER, str(out), "b", "a", "200", cwd=tmp_path)]
    results = [finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0], [r[2] for r in results]
    assert sorted(p.name for p in out.iterdir()) == ["clip_vtoonify_d.mp4", "photo_vtoonify_d.png"]
    with VideoReader(out / "clip_vtoonify_d.mp4") as reader:
        frames = list(reader)
    assert len(frames) == 10
    value = round(float(frames[0].mean()))
    assert any(abs(value - v) <= 3 for v in (40, 200))  # one writer's file, whole, not a mix of both
    assert all(abs(float(f.mean()) - value) <= 3 for f in frames)
