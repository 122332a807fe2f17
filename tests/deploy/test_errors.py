"""Errors nobody foresaw (not an ApplianceError) still end in one line with what to do, and the journal says so.

These run the real entry point (builder.cli.main) in this process, on pve1 of the simulated cluster."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
from sim.cluster import SimCluster
from sim.scenario import linstor_package_version

from builder import cli
from builder.deploy import options, runner
from builder.deploy.controller import Directory
from builder.deploy.journal import Journal
from builder.deploy.steps.units import Units
from deploy.expect import journal
from deploy.fakeimage import FakeImage
from deploy.harness import SimDirectory, deploy_args, run_deploy, sim_env

pytestmark = pytest.mark.sim


class Stop(BaseException):
    pass


@pytest.fixture
def cluster(make_sim_cluster: Callable[..., SimCluster], monkeypatch: pytest.MonkeyPatch) -> SimCluster:
    made = make_sim_cluster(nodes=1, linstor_version="1.20", ha_delay=0.05)
    sim_env(made, "pve1", monkeypatch)
    return made


@pytest.fixture
def image(fake_images: Callable[..., FakeImage]) -> FakeImage:
    return fake_images(linstor_package_version("1.20"))


def main(cluster: SimCluster, args: list[str], monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:  # fmt: skip
    """`linstor-appliance ARGS` on pve1: the exit code and what it wrote to stderr."""
    from_args, run = options.from_args, runner.run

    def on_node(parsed: argparse.Namespace, root: Path | None = None) -> options.Options:
        return from_args(parsed, root=cluster.root("pve1"))

    def with_directory(opts: options.Options, directory: Directory | None = None, explicit: object = ()) -> int:
        return run(opts, SimDirectory(cluster, "pve1"), explicit)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(options, "from_args", on_node)
        patch.setattr(runner, "run", with_directory)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            cli.main(args)
    return int(exited.value.code or 0), capsys.readouterr().err


def last_line(stderr: str) -> str:
    lines = stderr.rstrip("\n").splitlines()
    assert "Traceback" not in stderr, stderr
    return lines[-1]


def test_unparsable_cluster_status_is_a_preflight_problem(cluster: SimCluster, image: FakeImage, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """pvesh answers, but not with what the deploy expects (a JSON object where a list belongs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pvesh").write_text('#!/bin/sh\ncase "$*" in *"get /cluster/status"*) echo \'{"data": 1}\'; exit 0;; '
                                   f'esac\nexec {cluster.state.bin}/pvesh "$@"\n')  # fmt: skip
    (bin_dir / "pvesh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{cluster.env('pve1')['PATH']}")
    code, stderr = main(cluster, ["deploy", *deploy_args(image.raw, redundancy=1)], monkeypatch, capsys)
    assert code == 1
    assert "problem: a check stopped on an unexpected AttributeError" in stderr, stderr
    assert last_line(stderr).startswith("error: preflight found "), stderr


def test_unexpected_error_in_the_rollback(cluster: SimCluster, image: FakeImage, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """An undo step fails with something that is not an ApplianceError (here: a connection reset by a peer):
    one line that says to run the rollback again, and the journal says `rollback-failed`."""
    finish = Journal.finish_step

    def stop_after_units(self: Journal, step: str, record: dict[str, object] | None = None) -> None:
        finish(self, step, record)
        if step == "units":
            raise Stop

    with monkeypatch.context() as patch:
        patch.setattr(Journal, "finish_step", stop_after_units)
        with pytest.raises(Stop):
            run_deploy(cluster, deploy_args(image.raw, redundancy=1))

    def reset(*args: object) -> list[str]:
        raise ConnectionResetError(104, "Connection reset by peer")

    with monkeypatch.context() as patch:
        patch.setattr(Units, "undo", reset)
        code, stderr = main(cluster, ["deploy", "--vmid", "100", "--rollback"], monkeypatch, capsys)
    assert code == 1
    assert last_line(stderr) == ("error: rolling back 'Bring the VM disk up at boot on every node, without a "
                                 "controller' failed: ConnectionResetError: [Errno 104] Connection reset by peer; "
                                 "then run 'linstor-appliance deploy --vmid 100 --rollback' again")  # fmt: skip
    data = journal(cluster)
    assert data["status"] == "rollback-failed" and data["failed_undo"] == "units"
    # Once the cause is gone, the rollback completes.
    code, _ = main(cluster, ["deploy", "--vmid", "100", "--rollback"], monkeypatch, capsys)
    assert code == 0
    assert journal(cluster)["status"] == "rolled-back"


def test_an_unexpected_error_outside_any_step_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    def broken(args: argparse.Namespace) -> int:
        raise ValueError("could not convert string to float: 'x'")

    monkeypatch.setattr("builder.commands.deploy.run", broken)
    with pytest.raises(SystemExit) as exited:
        cli.main(["deploy", "--vmid", "100", "--rollback"])
    assert exited.value.code == 1
    stderr = capsys.readouterr().err
    assert last_line(stderr) == ("error: unexpected ValueError: could not convert string to float: 'x'; run the "
                                 "command again with --debug to see where it happened, and report it")
