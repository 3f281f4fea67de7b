"""A real SLURM job array: a single-node cluster (Debian's slurm-wlm + munge, started here as
root in a temporary folder) runs the script ``--write-sbatch`` writes for a two-participant
dataset, then the group level as the dependent job the command prints; outputs checked on disk.

Needs root and the binaries slurmctld, slurmd, munged, sbatch, sinfo, scontrol, scancel
(``apt-get install -y slurm-wlm munge``); skipped otherwise. No system service is used: munged
listens on its own socket (slurm.conf ``AuthInfo=socket=...``), all state, spool, logs and pid
files are under the test's temporary folder, and every daemon and job process is stopped at
the end, failure or not.
"""
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import shared

BINARIES = ("slurmctld", "slurmd", "munged", "sbatch", "sinfo", "scontrol", "scancel")
missing = [b for b in BINARIES if shutil.which(b) is None
           and not Path("/usr/sbin", b).is_file()]
pytestmark = [
    pytest.mark.skipif(bool(missing), reason=f"SLURM test needs {', '.join(missing)} "
                       "(apt-get install -y slurm-wlm munge)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="SLURM test starts slurmd (SlurmUser=root): "
                       "needs root"),
]


def _bin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_resources() -> tuple[int, int]:
    """CPUs and RealMemory (MB) as slurmd itself detects them (``slurmd -C``)."""
    out = subprocess.run([_bin("slurmd"), "-C"], capture_output=True, text=True).stdout
    cpus = re.search(r"\bCPUs=(\d+)", out)
    mem = re.search(r"\bRealMemory=(\d+)", out)
    return (int(cpus.group(1)) if cpus else os.cpu_count() or 1,
            int(mem.group(1)) if mem else 4000)


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.out", "w")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)  # own process group, killed at the end
        self.procs.append(proc)
        return proc

    def run(self, argv, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, **kw)

    def logs(self) -> str:
        out = []
        for f in sorted(self.root.glob("*.out")) + sorted(self.root.glob("*.log")):
            out.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)

    def stop(self) -> None:
        """Cancel this cluster's jobs, stop its job processes and daemons (by process id)."""
        if self.conf.is_file():
            self.run([_bin("scancel"), "--full", "--user", "root"], timeout=30)
            time.sleep(2)
        for pid in self._job_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                continue
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait(timeout=15)

    def _job_processes(self) -> list[int]:
        """slurmstepd and job processes of this cluster: they carry our SLURM_CONF."""
        mark = f"SLURM_CONF={self.conf}".encode()
        own = {p.pid for p in self.procs} | {os.getpid()}
        found = []
        for env in Path("/proc").glob("[0-9]*/environ"):
            try:
                pid = int(env.parent.name)
                if pid not in own and mark in env.read_bytes().split(b"\0"):
                    found.append(pid)
            except (OSError, ValueError):
                continue
        return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    c = Cluster(root)
    try:
        key = root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        sock = root / "munge.socket"
        c.start("munged", [_bin("munged"), "--foreground", "--force", f"--socket={sock}",
                           f"--key-file={key}", f"--pid-file={root / 'munged.pid'}",
                           f"--seed-file={root / 'munged.seed'}",
                           f"--log-file={root / 'munged.log'}"])
        deadline = time.time() + 30
        while not sock.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert sock.exists(), "munged did not create its socket\n" + c.logs()
        (root / "state").mkdir()
        (root / "spool").mkdir()
        cpus, mem = _node_resources()
        c.conf.write_text("\n".join([
            "ClusterName=boldsrtest",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={sock}",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "MinJobAge=3600",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n")
        c.start("slurmctld", [_bin("slurmctld"), "-D", "-f", str(c.conf)])
        c.start("slurmd", [_bin("slurmd"), "-D", "-N", "localhost", "-f", str(c.conf)])
        deadline, state = time.time() + 90, ""
        while time.time() < deadline:
            state = c.run([_bin("sinfo"), "-h", "-N", "-o", "%t"], timeout=30).stdout.strip()
            if state == "idle":
                break
            time.sleep(1)
        assert state == "idle", f"the node did not become idle (sinfo: {state!r})\n" + c.logs()
        c.cpus, c.mem = cpus, mem
        yield c
    finally:
        c.stop()


def _two_participants(root: Path) -> Path:
    """ds-xa30's sub-01 twice, as sub-01 and sub-02 (symlinked files)."""
    src = shared("ds-xa30")
    ds = root / "ds"
    for label in ("01", "02"):
        for f in (src / "sub-01").rglob("*"):
            if f.is_file():
                dst = ds / f"sub-{label}" / f.relative_to(src / "sub-01").parent / \
                    f.name.replace("sub-01", f"sub-{label}")
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(f)
    shutil.copy(src / "dataset_description.json", ds / "dataset_description.json")
    return ds


@pytest.mark.slow  # 8.6 min on the 2-core development machine under load (two ~5 min tasks in parallel)
def test_job_array_and_dependent_group_job(cluster, tmp_path):
    ds = _two_participants(tmp_path)
    out, work, job = tmp_path / "out", tmp_path / "work", tmp_path / "boldsr.sbatch"
    env = {**cluster.env, "TEMPLATEFLOW_HOME": str(tmp_path / "templateflow")}
    gen = subprocess.run(
        [sys.executable, "-m", "bids_boldsr.cli.run", str(ds), str(out), "participant",
         "--write-sbatch", str(job), "-w", str(work), "--sloppy", "--sr-method", "spline",
         "--cerebellum", "atlas", "--registration", "affine", "--nprocs", "1", "--mem-gb", "3",
         "--device", "cpu"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr
    text = job.read_text()
    assert "#SBATCH --array=0-1" in text and "#SBATCH --cpus-per-task=1" in text
    assert "#SBATCH --mem=3G" in text and "--gres" not in text
    # the printed follow-up, run as printed; --wait on the group job waits for the whole chain
    lines = gen.stdout.splitlines()
    submit, group = lines[2].strip(), lines[3].strip()
    assert submit.startswith("jobid=$(sbatch --parsable ") and group.startswith("sbatch --dependency")
    chain = f"set -e\n{submit}\necho \"$jobid\" > jobid\n{group.replace('sbatch ', 'sbatch --wait ', 1)}\n"
    t0 = time.time()
    ran = subprocess.run(["bash", "-c", chain], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=1800)
    elapsed = time.time() - t0
    jobid = (tmp_path / "jobid").read_text().strip()
    task_logs = "\n".join(f"--- {f.name}\n" + f.read_text()[-3000:]
                          for f in sorted(tmp_path.glob("slurm-*.out")))
    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}\n{task_logs}\n{cluster.logs()}"
    print(f"job array {jobid} + group job: {elapsed:.0f} s")

    # both array tasks completed, each with its participant and its own work dir
    for index, label in enumerate(("01", "02")):
        info = cluster.run([_bin("scontrol"), "show", "job", f"{jobid}_{index}"]).stdout
        assert "JobState=COMPLETED" in info and "ExitCode=0:0" in info, info
        log = (tmp_path / f"slurm-{jobid}_{index}.out").read_text()
        assert f"--participant-index {index}: sub-{label} ({index + 1} of 2 participants)" in log
        wf_dirs = [p.name for p in (work / f"array-{index}").glob("bids_boldsr_*_wf/sub_*_wf")]
        assert wf_dirs == [f"sub_{label}_wf"]
        func = out / f"sub-{label}" / "func"
        stem = f"sub-{label}_task-fa_run-1"
        for name in (f"{stem}_desc-sr_bold.nii.gz",
                     f"{stem}_space-MNI152NLin2009aSym_desc-sr_bold.nii.gz"):
            assert (func / name).is_file() and (func / name).stat().st_size > 0, name
        qc = pd.read_csv(out / f"sub-{label}" / f"sub-{label}_qc.tsv", sep="\t", dtype={"subject": str})
        assert len(qc) == 1
    assert len(list((work / "bids_db").glob("*/layout_index.sqlite"))) == 1  # built once, shared
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "bids-boldsr"
    assert not list(out.rglob("*.part")) and not list(out.glob(".dataset_description.json.*"))
    # the group job ran after the array and saw both participants
    table = pd.read_csv(out / "group_bold.tsv", sep="\t", dtype={"subject": str})
    assert sorted(table["subject"]) == ["01", "02"]
    group_log = [f for f in tmp_path.glob("slurm-*.out") if not re.search(r"_\d+\.out$", f.name)]
    assert len(group_log) == 1 and "group table" in group_log[0].read_text()
    assert shlex.split(group)[1] == "--dependency=afterok:$jobid"


def test_failed_task_cancels_the_group_job(cluster, tmp_path):
    """A task that fails (here: its --bids-filter-file vanished after the script was written)
    exits with its one-line error and code; the printed group job is then cancelled, not left
    pending (``--kill-on-invalid-dep=yes``)."""
    import nibabel as nib
    import numpy as np

    from conftest import make_bids

    rng = np.random.default_rng(0)
    bold = nib.Nifti1Image(rng.normal(500, 20, (8, 8, 6, 5)).astype(np.float32), np.diag([3, 3, 3, 1.0]))
    ds = make_bids(tmp_path / "ds", bold, sub="01")
    make_bids(ds, bold, sub="02")
    filters = tmp_path / "filters.json"
    filters.write_text('{"bold": {"task": "rest"}}')
    job = tmp_path / "boldsr.sbatch"
    gen = subprocess.run(
        [sys.executable, "-m", "bids_boldsr.cli.run", str(ds), str(tmp_path / "out"), "participant",
         "--write-sbatch", str(job), "-w", str(tmp_path / "work"), "--bids-filter-file", str(filters),
         "--nprocs", "1", "--mem-gb", "1", "--device", "cpu"],
        capture_output=True, text=True, env=cluster.env, cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr
    filters.unlink()
    lines = gen.stdout.splitlines()
    chain = (f"{lines[2].strip()}\necho \"$jobid\" > jobid\n"
             f"{lines[3].strip().replace('sbatch ', 'sbatch --wait ', 1)}\n")
    ran = subprocess.run(["bash", "-c", chain], capture_output=True, text=True, env=cluster.env,
                         cwd=tmp_path, timeout=600)
    jobid = (tmp_path / "jobid").read_text().strip()
    group_id = re.search(r"Submitted batch job (\d+)", ran.stdout).group(1)
    info = cluster.run([_bin("scontrol"), "show", "job", group_id]).stdout
    assert "JobState=CANCELLED" in info and "DependencyNeverSatisfied" in info, info
    for index in (0, 1):
        info = cluster.run([_bin("scontrol"), "show", "job", f"{jobid}_{index}"]).stdout
        assert "JobState=FAILED" in info and "ExitCode=66:0" in info, info
        log = (tmp_path / f"slurm-{jobid}_{index}.out").read_text()
        assert log.strip().splitlines()[-1] == (f"bids-boldsr: error: --bids-filter-file {filters} "
                                                "does not exist")
    assert not (tmp_path / "out" / "group_bold.tsv").exists()
