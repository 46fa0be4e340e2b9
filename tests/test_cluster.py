"""``--ray`` on a real local Ray cluster (``ray start --head``, 2 CPUs), started by the tests."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from test_cli import interrupt_after_first_output, write_wav
from waiting import wait_until

from transcribe.weights import default_weights_path


def amt(*args, timeout=300, env=None):
    return subprocess.run([sys.executable, "-m", "transcribe", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_ray_without_ray_installed_says_how_to_install_it(tmp_path):
    shim = tmp_path / "shim" / "ray"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = dict(os.environ, PYTHONPATH=f"{shim.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    wav = write_wav(tmp_path / "a.wav")
    run = amt(wav, "--ray", env=env)
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip() == ("amt-transcribe: error: --ray needs Ray: pip install "
                                  "'amt-transcribe[cluster]' (or pip install ray)")
    assert not (tmp_path / "a.mid").exists()


def test_ray_followed_by_an_input_is_refused_with_the_way_to_write_it(tmp_path):
    a, b = write_wav(tmp_path / "a.wav"), write_wav(tmp_path / "b.wav")
    run = amt("--ray", a, b)
    assert run.returncode == 2
    assert "is not a cluster address" in run.stderr and "--ray=ADDRESS" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_address_where_no_cluster_answers_is_one_line_at_once(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install '.[cluster]')")
    wav = write_wav(tmp_path / "a.wav")
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    run = amt(wav, f"--ray=127.0.0.1:{port}", timeout=60)
    assert run.returncode == 1 and time.monotonic() - started < 30
    assert run.stderr.strip() == (f"amt-transcribe: error: cannot reach the Ray cluster at "
                                  f"127.0.0.1:{port} (Connection refused); is Ray running "
                                  "there (ray start --head)?")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """The address of a Ray head with 2 CPUs on this machine, stopped after the module.

    It requires a token, as Ray's own clusters do by default; the tests' processes get
    it through the environment, as a user's would.
    """
    pytest.importorskip("ray", reason="Ray is not installed (pip install '.[cluster]')")
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths are limited
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "token")
        patch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        head = subprocess.Popen(
            ["ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
             "--node-ip-address=127.0.0.1", "--include-dashboard=false",
             "--disable-usage-stats", f"--temp-dir={temp}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started = ""
        for line in head.stdout:
            started += line
            if "Ray runtime started" in line or head.poll() is not None:
                break
        assert "Ray runtime started" in started, started
        yield f"127.0.0.1:{port}"
        head.send_signal(signal.SIGTERM)  # --block: the head stops its cluster on the way out
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()


def _folder(root: Path, count: int, seconds: float) -> Path:
    """``count`` piano pieces of about ``seconds``, rendered with FluidR3: real notes."""
    import soundfile as sf
    from conftest import scale_midi
    from transcribe.training import synth
    font = synth.find_soundfont("FluidR3_GM.sf2")
    root.mkdir(parents=True)
    for i in range(count):
        midi = scale_midi(pitches=[48 + 3 * i + k % 12 for k in range(int(seconds * 2))])
        sf.write(root / f"piece{i}.wav", synth.render(midi, font, sample_rate=16000), 16000)
    return root


def test_a_cluster_batch_writes_what_a_local_batch_writes(tmp_path, cluster):
    src = _folder(tmp_path / "in", 3, 8)
    (src / "sub").mkdir()
    (src / "sub" / "bad.wav").write_bytes(b"RIFF not really")
    results, failures = {}, {}
    # One thread each, as a Ray task has by default: the network's sums are split by thread
    # count, so other counts differ in the last digits (0.1 ms, a velocity of 1).
    for where, extra in (("local", []), ("ray", [f"--ray={cluster}"])):
        out = tmp_path / where
        run = amt(src, "-o", out, "-f", "csv", "--threads", "1", *extra)
        assert run.returncode == 1, run.stderr  # the bad file fails; the others are written
        assert "Traceback" not in run.stderr
        # The nodes' check that the outputs' folders are writable made them, and sub/ stood
        # empty.
        assert not (out / "sub").exists()
        results[where] = {p.name: p.read_text() for p in out.iterdir()}
        failures[where] = [line for line in run.stderr.splitlines() if "failed:" in line]
        if where == "ray":
            assert "Ray cluster: 1 node, 2 CPUs" in run.stderr
    assert failures["ray"] == failures["local"]
    assert len(failures["ray"]) == 1 and "bad.wav: not a readable audio file" in failures["ray"][0]
    assert sorted(results["ray"]) == ["piece0.csv", "piece1.csv", "piece2.csv"]
    assert all(len(text.splitlines()) > 10 for text in results["ray"].values())  # real notes
    assert results["ray"] == results["local"]  # note for note
    again = amt(src, "-o", tmp_path / "ray", "-f", "csv", f"--ray={cluster}", "--skip-existing")
    assert again.returncode == 1 and "4 files: 3 skipped, 1 failed" in again.stderr, again.stderr


def _task_processes() -> list[int]:
    """PIDs of Ray workers running a transcription (Ray titles them after the task)."""
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines()
            if "ray::_transcribe_task" in line and "IDLE" not in line]


def test_a_worker_killed_mid_batch_is_retried_and_every_file_is_written_once(tmp_path, cluster):
    src = _folder(tmp_path / "in", 4, 30)
    out = tmp_path / "out"
    batch = subprocess.Popen([sys.executable, "-m", "transcribe", src, "-o", out, "-f", "csv",
                              f"--ray={cluster}", "--weights", default_weights_path()],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victims = wait_until(lambda: _task_processes() or batch.poll() is not None, 120, 0.02)
    victims = victims if isinstance(victims, list) else []
    assert victims, "no transcription task was seen running"
    os.kill(victims[0], signal.SIGKILL)
    _, stderr = batch.communicate(timeout=300)
    assert batch.returncode == 0, stderr
    assert "Ray worker lost" in stderr and "retrying (1 of 3)" in stderr
    assert sorted(p.name for p in out.iterdir()) == [f"piece{i}.csv" for i in range(4)]
    local = amt(src, "-o", tmp_path / "local", "-f", "csv", "--threads", "1")  # as each task
    assert local.returncode == 0, local.stderr
    for path in out.iterdir():
        assert path.read_text() == (tmp_path / "local" / path.name).read_text()


def test_ctrl_c_of_a_cluster_batch_leaves_no_partial_file(tmp_path, cluster, tiny_weights):
    src = tmp_path / "in"
    for i in range(6):
        write_wav(src / f"{i}.wav", seconds=40)
    interrupt_after_first_output(src, tmp_path / "out", tiny_weights, f"--ray={cluster}")


def test_nodes_that_cannot_see_the_files_are_named_before_any_work(tmp_path, cluster):
    wav = write_wav(tmp_path / "a.wav")
    script = f"""
from pathlib import Path
from transcribe.batch import Job
from transcribe.cluster import check_nodes, connect
from transcribe.errors import TranscribeError
from transcribe.version import __version__
connect({cluster!r})
for job in (Job(Path({str(wav)!r}), Path("/proc/no/a.mid")),
            Job(Path({str(tmp_path / 'gone.wav')!r}), Path({str(tmp_path / 'a.mid')!r}))):
    try:
        check_nodes([job], __version__)
    except TranscribeError as error:
        print(error)
print(check_nodes([Job(Path({str(wav)!r}), Path({str(tmp_path / 'a.mid')!r}))], __version__))
try:
    check_nodes([Job(Path({str(wav)!r}), Path({str(tmp_path / 'a.mid')!r}))], "0.0-other")
except TranscribeError as error:
    print(error)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 4, run.stdout + run.stderr
    assert lines[0].startswith("Ray node ") and "/proc/no: cannot write there" in lines[0]
    assert lines[0].endswith("--ray needs the inputs and outputs on a filesystem every node "
                             "sees, at the same paths")
    assert f"{tmp_path / 'gone.wav'}: not there" in lines[1]
    assert lines[2] == "1"
    assert "has amt-transcribe" in lines[3] and "install one version on every node" in lines[3]


def test_cuda_on_a_cluster_without_a_gpu_is_refused_not_left_waiting(tmp_path, cluster):
    wav = write_wav(tmp_path / "a.wav")
    run = amt(wav, f"--ray={cluster}", "--device", "cuda", timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "amt-transcribe: error: --device cuda: no node of the Ray cluster has a GPU")
    assert not (tmp_path / "a.mid").exists()


def test_a_cluster_batch_leaves_a_file_another_run_is_transcribing_to_it(tmp_path, cluster,
                                                                         tiny_weights):
    """A cluster batch and a local one (or two drivers) on the same outputs share the files,
    as local runs do: the driver claims each file as its task is submitted."""
    import platform
    src, out = tmp_path / "in", tmp_path / "out"
    for name in ("held", "free"):
        write_wav(src / f"{name}.wav", seconds=2)
    out.mkdir()
    marker = out / ".held.mid.amt-running"
    other = subprocess.Popen(["sleep", "120"])  # the other run, alive, on this machine
    try:
        marker.write_text(f"amt-transcribe, process {other.pid} on {platform.node()}: x\n")
        stderr_path = tmp_path / "stderr"
        with open(stderr_path, "w") as stderr:
            batch = subprocess.Popen([sys.executable, "-m", "transcribe", src, "-o", out,
                                      f"--ray={cluster}", "--weights", tiny_weights,
                                      "--skip-existing"], stderr=stderr, text=True)
            try:
                wait_until(lambda: batch.poll() is not None
                           or "waiting for other runs" in stderr_path.read_text(), 180)
                assert batch.poll() is None, stderr_path.read_text()
                assert (out / "free.mid").exists()  # its own file done first
                (out / "held.mid").write_bytes(b"the other run's notes")
                marker.unlink()
                assert batch.wait(timeout=120) == 0, stderr_path.read_text()
            finally:
                batch.kill()
                batch.wait()
    finally:
        other.kill()
        other.wait()
    said = " ".join(stderr_path.read_text().split())
    assert "2 files: 1 done, 1 skipped (1 transcribed by other runs)" in said, said
    assert (out / "held.mid").read_bytes() == b"the other run's notes"
    assert sorted(p.name for p in out.iterdir()) == ["free.mid", "held.mid"]  # no marker left
