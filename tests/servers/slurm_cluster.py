"""A real single-node Slurm cluster for tests: Debian's slurm-wlm and munge, started as
daemons on this machine, with their state, spool, logs and munge socket in a temporary folder.

Settings that let the daemons run inside containers and sandboxes (no cgroups, no systemd):
- ProctrackType=proctrack/linuxproc and TaskPlugin=task/none: track job processes through
  /proc and bind no CPUs, instead of cgroups;
- JobAcctGatherType=jobacct_gather/none, AccountingStorageType=accounting_storage/none: no
  slurmdbd, so `sacct` knows nothing and job states come from `squeue`; MinJobAge=7200 keeps
  finished jobs visible to squeue and scontrol for two hours, longer than any test run;
- one GPU as a GRES with File=/dev/null: Slurm schedules it and exports CUDA_VISIBLE_DEVICES
  like a real one, so `--gpus=1` requests are really granted; torch still sees no CUDA device.

The config goes to /etc/slurm/slurm.conf (and gres.conf), where Slurm's commands look by
default: snakemake-executor-plugin-slurm-jobstep 0.6.1 removes SLURM_CONF from the
environment of the `srun` it runs inside each job, so a config named only by SLURM_CONF is lost
there. An existing config that this module did not write is never touched.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from servers.llama_server import free_port

SLURM_ETC = Path("/etc/slurm")
MARKER = "# Written by vault-distill tests/servers/slurm_cluster.py for a test cluster; removed after it."
PACKAGES = ("slurm-wlm", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged", "mungekey")


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be installed or started here; the message says why."""


def ensure_installed(log: Path) -> None:
    """Install slurm-wlm and munge with apt-get if a binary is missing (root and Debian only)."""
    if all(shutil.which(binary) for binary in BINARIES):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("slurm-wlm and munge are not installed, and installing them needs root")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable("slurm-wlm and munge are not installed, and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *PACKAGES]
    with open(log, "a", encoding="utf-8") as out:
        done = subprocess.run(install, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900)
        if done.returncode != 0:  # a fresh machine may have no package lists yet
            subprocess.run(["apt-get", "update", "-q"], stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900)
            done = subprocess.run(install, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900)
    if done.returncode != 0 or not all(shutil.which(binary) for binary in BINARIES):
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} failed:\n{tail}")


class SlurmCluster:
    def __init__(self, cpus: int, real_memory_mb: int):
        self.node = socket.gethostname().split(".")[0]
        self.cpus = cpus
        self.real_memory_mb = real_memory_mb
        self.base = Path(tempfile.mkdtemp(prefix="vault-distill-slurm-"))
        self.base.chmod(0o755)  # munged runs as the munge user and must reach its folder
        self.munge_dir = self.base / "munge"
        self.log_dir = self.base / "log"
        self.processes: dict[str, subprocess.Popen] = {}
        self.wrote_config = False

    # Paths ------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return self.munge_dir / "munge.socket"

    @property
    def slurmctld_log(self) -> Path:
        return self.log_dir / "slurmctld.log"

    def slurm_conf(self) -> str:
        base = self.base
        return "\n".join(
            [
                MARKER,
                "ClusterName=vaultdistill",
                f"SlurmctldHost={self.node}(127.0.0.1)",
                f"SlurmctldPort={free_port()}",
                f"SlurmdPort={free_port()}",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={self.socket_path}",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"StateSaveLocation={base}/state",
                f"SlurmdSpoolDir={base}/spool",
                f"SlurmctldPidFile={base}/slurmctld.pid",
                f"SlurmdPidFile={base}/slurmd.pid",
                f"SlurmctldLogFile={self.slurmctld_log}",
                f"SlurmdLogFile={self.log_dir}/slurmd.log",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "MailProg=/bin/true",
                "SchedulerType=sched/backfill",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "MpiDefault=none",
                "ReturnToService=2",
                "MinJobAge=7200",
                "GresTypes=gpu",
                f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory_mb}"
                " Gres=gpu:1 State=UNKNOWN",
                f"PartitionName=main Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    # Life cycle ---------------------------------------------------------------

    def start(self, ready_timeout_s: float = 60.0) -> SlurmCluster:
        for existing in (SLURM_ETC / "slurm.conf", SLURM_ETC / "gres.conf"):
            if existing.exists() and MARKER not in existing.read_text(encoding="utf-8", errors="replace"):
                raise SlurmUnavailable(f"{existing} exists and was not written by this test; not overwriting it")
        for folder in ("state", "spool", "log"):
            (self.base / folder).mkdir()
        self._start_munge()
        SLURM_ETC.mkdir(parents=True, exist_ok=True)
        self.wrote_config = True
        (SLURM_ETC / "slurm.conf").write_text(self.slurm_conf(), encoding="utf-8")
        (SLURM_ETC / "gres.conf").write_text(f"{MARKER}\nNodeName={self.node} Name=gpu File=/dev/null\n")
        self._spawn("slurmctld", ["slurmctld", "-D", "-c"])
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.node])
        deadline = time.monotonic() + ready_timeout_s
        while self.node_state() != "idle":
            self._check_alive()
            if time.monotonic() > deadline:
                raise SlurmUnavailable(f"the node never became idle (state {self.node_state()!r}):\n{self.logs()}")
            time.sleep(0.5)
        return self

    def _start_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        self.munge_dir.mkdir()
        key = self.munge_dir / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        for path in (self.munge_dir, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        key.chmod(0o600)
        self.munge_dir.chmod(0o711)  # the daemons (root) and clients must reach the socket
        argv = [
            "munged", "--foreground",
            f"--socket={self.socket_path}",
            f"--key-file={key}",
            f"--pid-file={self.munge_dir}/munged.pid",
            f"--log-file={self.munge_dir}/munged.log",
            f"--seed-file={self.munge_dir}/munged.seed",
        ]  # fmt: skip
        self._spawn("munged", argv, user=munge.pw_uid, group=munge.pw_gid)
        deadline = time.monotonic() + 30
        while not self.socket_path.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise SlurmUnavailable(f"munged did not create its socket:\n{self.logs()}")
            time.sleep(0.1)

    def _spawn(self, name: str, argv: list[str], **kwargs) -> None:
        with open(self.log_dir / f"{name}.out", "w", encoding="utf-8") as out:  # the daemon keeps its own copy
            self.processes[name] = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.base, **kwargs
            )

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise SlurmUnavailable(f"{name} exited with {process.returncode}:\n{self.logs()}")

    def node_state(self) -> str:
        done = subprocess.run(["sinfo", "-h", "-n", self.node, "-o", "%T"], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    def scontrol_job(self, job_id: str) -> dict[str, str]:
        """One job's record as scontrol prints it, KEY=VALUE pairs on one line."""
        done = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=True)
        return dict(field.split("=", 1) for field in done.stdout.split() if "=" in field)

    def logs(self, chars: int = 3000) -> str:
        parts = []
        for path in [*sorted(self.log_dir.glob("*")), self.munge_dir / "munged.log"]:
            if path.is_file():
                parts.append(f"--- {path.name}\n{path.read_text(encoding='utf-8', errors='replace')[-chars:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel whatever is still queued, stop the daemons, remove the config and the folder."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True, timeout=30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                queue = subprocess.run(["squeue", "-h", "-t", "PD,R,CG"], capture_output=True, text=True)
                if queue.returncode != 0 or not queue.stdout.strip():
                    break
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.wrote_config:
            for path in (SLURM_ETC / "slurm.conf", SLURM_ETC / "gres.conf"):
                if path.exists() and MARKER in path.read_text(encoding="utf-8", errors="replace"):
                    path.unlink()
        shutil.rmtree(self.base, ignore_errors=True)
