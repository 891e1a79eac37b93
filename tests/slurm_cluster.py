"""A one-node SLURM cluster on this machine, for the SLURM executor tests.

``slurm_cluster`` (a pytest session fixture) yields a :class:`Cluster`:

* if a cluster already answers (``sinfo`` works), it is reused as it is and
  nothing is started or stopped;
* otherwise, as root, it installs Debian's ``slurm-wlm`` and ``munge`` when
  missing (``apt-get``), writes ``/etc/slurm/slurm.conf`` (it has to live there:
  the executor's job step strips ``SLURM_CONF`` from the environment of the
  nested ``srun``) and ``/etc/slurm/gres.conf``, starts ``munged`` (as user
  munge), ``slurmctld`` and ``slurmd`` (as root, in the foreground, as children
  of the test process), waits until the node is idle, and at the end stops
  exactly those daemons, by their pid, once no other test session is using
  the cluster (sessions register in ``/tmp/prior-landscape-slurm-users``; a
  session that reused the cluster keeps it until it ends) and the queue is
  empty; after 15 minutes of waiting it is left running instead. Once its
  daemons are stopped it removes the ``slurm.conf`` and ``gres.conf`` it wrote
  (only if they still hold exactly what it wrote) and ``/etc/slurm`` if it
  created that folder and left it empty; a file someone else wrote or changed is
  never removed, and an existing ``gres.conf`` that is not ours is never overwritten.

When none of this is possible (not root, no apt, an unrelated slurm.conf that
is not ours and no cluster answering, a daemon that does not come up) the tests
using the fixture are skipped with the reason.

The cluster: ``ClusterName=prior-landscape-test``, ``SlurmctldHost=localhost``,
one node named after this host (``NodeAddr=127.0.0.1``, ``CPUs=2``,
``RealMemory`` 80 % of the machine's, one count-only GPU GRES so that GPU
requests can be scheduled and checked), one partition ``debug`` (default, no
time limit), ``select/cons_tres``, ``proctrack/linuxproc``, ``task/none`` and
no accounting: ``sacct`` cannot answer, so the executor must be told to poll
with ``squeue`` (``slurm-status-command: squeue`` in profiles/slurm), and
``MinJobAge=3600`` keeps finished jobs visible to ``squeue`` for an hour.

Run by hand::

    python tests/slurm_cluster.py up      # start (or find) the cluster; prints what it did
    python tests/slurm_cluster.py down    # stop the daemons whose pids `up` recorded (unless in use)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MARKER = "# written by prior-landscape tests/slurm_cluster.py"
PARTITION = "debug"
CLUSTER_NAME = "prior-landscape-test"
# where `python tests/slurm_cluster.py up` records the pids it started, for `down`
PID_RECORD = Path(tempfile.gettempdir()) / "prior-landscape-slurm.json"
# one file per test session using the cluster (named after its pid): the session that
# started the cluster stops it only when no other live session is registered
USERS = Path(tempfile.gettempdir()) / "prior-landscape-slurm-users"
PACKAGES = ["slurm-wlm", "munge"]
BINARIES = ["slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "munged", "munge", "unmunge"]


class ClusterUnavailable(RuntimeError):
    """No cluster could be found or brought up; the message says why."""


@dataclass
class Cluster:
    node: str
    partition: str
    gpus: int
    reused: bool
    state_dir: Path | None = None
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict)
    # configuration files this session wrote (path -> the text written) and folders it created
    written: dict[Path, str] = field(default_factory=dict)
    created_dirs: list[Path] = field(default_factory=list)

    def slurmctld_log(self) -> str:
        if self.state_dir is None:
            return ""
        path = self.state_dir / "slurmctld.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _run(cmd: list[str], timeout: float = 20, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def cluster_answers() -> bool:
    """True when ``sinfo`` reaches a slurmctld."""
    if not shutil.which("sinfo"):
        return False
    try:
        proc = _run(["sinfo", "-h", "-o", "%P"], timeout=15)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def node_states() -> dict[str, str]:
    proc = _run(["sinfo", "-h", "-N", "-o", "%N %T"])
    return dict(line.split(None, 1) for line in proc.stdout.splitlines() if line.strip())


def default_partition() -> str:
    parts = _run(["sinfo", "-h", "-o", "%P"]).stdout.split()
    for p in parts:
        if p.endswith("*"):
            return p.rstrip("*")
    return PARTITION if PARTITION in parts else (parts[0] if parts else PARTITION)


def gpu_count() -> int:
    """GPUs (GRES gpu) configured on the cluster's nodes, at most one node's worth."""
    best = 0
    for gres in _run(["sinfo", "-h", "-N", "-o", "%G"]).stdout.split():
        for item in gres.split(","):
            fields = item.split("(")[0].split(":")
            if fields[0] == "gpu":
                try:
                    best = max(best, int(fields[-1]))
                except ValueError:
                    best = max(best, 1)
    return best


def _munge_works() -> bool:
    if not (shutil.which("munge") and shutil.which("unmunge")):
        return False
    try:
        cred = _run(["munge", "-n"], timeout=10)
        if cred.returncode != 0:
            return False
        return _run(["unmunge"], input=cred.stdout, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def ensure_packages() -> None:
    """Install slurm-wlm and munge with apt-get when a binary is missing."""
    missing = [b for b in BINARIES if not shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable(f"SLURM is not installed ({', '.join(missing)} missing) and we are not root")
    if not shutil.which("apt-get"):
        raise ClusterUnavailable(f"SLURM is not installed ({', '.join(missing)} missing) and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    proc = _run(install, timeout=900, env=env)
    if proc.returncode != 0:  # maybe the package lists are missing: update once, try again
        _run(["apt-get", "update", "-q"], timeout=900, env=env)
        proc = _run(install, timeout=900, env=env)
    if proc.returncode != 0:
        raise ClusterUnavailable(f"apt-get could not install {' '.join(PACKAGES)}: {proc.stderr.strip()[-500:]}")


def _sbin(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not path:
        raise ClusterUnavailable(f"{name} not found")
    return path


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


def slurm_conf(node: str, state_dir: Path, cpus: int = 2, real_memory_mb: int | None = None, gpus: int = 1) -> str:
    real_memory_mb = real_memory_mb or int(_mem_total_mb() * 0.8)
    gres = f" Gres=gpu:{gpus}" if gpus else ""
    return f"""{MARKER}
# A one-node test cluster on localhost (no accounting database).
ClusterName={CLUSTER_NAME}
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
{"GresTypes=gpu" if gpus else ""}
ReturnToService=2
# finished jobs stay visible to squeue for an hour: the executor polls with squeue
# (it needs MinJobAge >= 3 x its first status-check delay) and the tests read it
MinJobAge=3600
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=60
StateSaveLocation={state_dir}/ctld
SlurmdSpoolDir={state_dir}/d
SlurmctldPidFile={state_dir}/slurmctld.pid
SlurmdPidFile={state_dir}/slurmd.pid
SlurmctldLogFile={state_dir}/slurmctld.log
SlurmdLogFile={state_dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={real_memory_mb}{gres} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _ours(path: Path) -> bool:
    """True when ``path`` does not exist or was written by this module (it carries MARKER)."""
    return not path.exists() or MARKER in path.read_text(errors="replace")


def write_conf_files(node: str, state_dir: Path) -> tuple[dict[Path, str], list[Path]]:
    """Write slurm.conf and gres.conf; return (path -> text written, folders created).

    Refuses (ClusterUnavailable) to overwrite a file that is not ours. A file of ours left
    by an earlier session (it points at a state folder that no longer exists) is replaced
    and, being written now, removed at the end like the others."""
    for path in (SLURM_CONF, GRES_CONF):
        if not _ours(path):
            raise ClusterUnavailable(f"{path} exists and was not written by these tests; not overwriting it")
    # the folders mkdir creates now (outermost first), to be removed again if left empty
    created: list[Path] = []
    for folder in dict.fromkeys((SLURM_CONF.parent, GRES_CONF.parent)):
        created += [d for d in (*reversed(folder.parents), folder) if not d.exists() and d not in created]
        folder.mkdir(parents=True, exist_ok=True)
    texts = {
        SLURM_CONF: slurm_conf(node, state_dir),
        # a pretend GPU: SLURM needs a device file for gres/gpu, /dev/null stands in (nothing
        # is bound: task/none), so GPU requests are scheduled and can be checked, no CUDA
        GRES_CONF: f"{MARKER}\nNodeName={node} Name=gpu File=/dev/null\n",
    }
    written = {}
    for path, text in texts.items():
        path.write_text(text)
        written[path] = text
    return written, created


def remove_conf_files(written: dict[Path, str], created_dirs: list[Path]) -> list[str]:
    """Remove the files ``written`` that still hold exactly what was written, then the folders
    ``created_dirs`` that are empty (deepest first); return notes on what was left and why."""
    notes = []
    for path, text in written.items():
        try:
            current = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        if current == text:
            path.unlink()
        else:
            notes.append(f"{path} changed since these tests wrote it; left in place")
    for d in sorted(created_dirs, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            notes.append(f"{d} is not empty; left in place")
    return notes


def _start_munge(daemons: dict, state_dir: Path) -> None:
    if _munge_works():
        return
    key = Path("/etc/munge/munge.key")
    for d in (Path("/run/munge"), Path("/var/log/munge"), Path("/var/lib/munge"), Path("/etc/munge")):
        d.mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "munge", "munge")
    Path("/run/munge").chmod(0o755)
    if not key.exists():
        if shutil.which("mungekey", path="/usr/sbin:/usr/bin:/sbin"):
            proc = _run([_sbin("mungekey"), "--create", "--keyfile", str(key)])
        else:
            proc = _run([_sbin("create-munge-key")])
        if proc.returncode != 0:
            raise ClusterUnavailable(f"could not create a munge key: {proc.stderr.strip()}")
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    out = open(state_dir / "munged.out", "w")
    daemons["munged"] = subprocess.Popen(
        [_sbin("munged"), "--foreground", "--force", "--pid-file", "/run/munge/munged.pid"],
        user="munge",
        group="munge",
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait(_munge_works, 30, "munged did not start", daemons, state_dir / "munged.out")


def _wait(ok, timeout: float, what: str, daemons: dict, log: Path | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ok():
            return
        dead = [name for name, p in daemons.items() if p.poll() is not None]
        if dead:
            break
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise ClusterUnavailable(
        f"{what} (daemons that exited: {[n for n, p in daemons.items() if p.poll() is not None]})\n{tail}"
    )


def start(timeout: float = 90) -> Cluster:
    """Find the running cluster or bring one up; raise ClusterUnavailable with the reason."""
    if cluster_answers():
        return Cluster(
            node=next(iter(node_states()), "?"), partition=default_partition(), gpus=gpu_count(), reused=True
        )
    if os.geteuid() != 0:
        raise ClusterUnavailable("no SLURM cluster answers and bringing one up needs root")
    for path in (SLURM_CONF, GRES_CONF):
        if not _ours(path):
            raise ClusterUnavailable(f"{path} exists and was not written by these tests; not overwriting it")
    ensure_packages()

    node = socket.gethostname().split(".")[0]
    state_dir = Path(tempfile.mkdtemp(prefix="prior-landscape-slurm-"))
    state_dir.chmod(0o755)
    for sub in ("ctld", "d"):
        (state_dir / sub).mkdir()
    daemons: dict[str, subprocess.Popen] = {}
    cluster = Cluster(node=node, partition=PARTITION, gpus=1, reused=False, state_dir=state_dir, daemons=daemons)
    try:
        cluster.written, cluster.created_dirs = write_conf_files(node, state_dir)
        _start_munge(daemons, state_dir)
        for name in ("slurmctld", "slurmd"):
            out = open(state_dir / f"{name}.out", "w")
            daemons[name] = subprocess.Popen(
                [_sbin(name), "-D"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            if name == "slurmctld":
                _wait(cluster_answers, timeout, "slurmctld did not answer", daemons, state_dir / "slurmctld.log")

        def idle():
            states = list(node_states().values())
            bad = [s for s in states if "drain" in s or "inval" in s or s.startswith("down")]
            if bad:  # e.g. the node's hardware does not match slurm.conf
                reason = _run(["sinfo", "-h", "-N", "-o", "%N %T %E"]).stdout.strip()
                raise ClusterUnavailable(f"node {node} is {bad[0]}: {reason}")
            return any(s.startswith("idle") for s in states)

        _wait(idle, timeout, f"node {node} did not become idle", daemons, state_dir / "slurmctld.log")
    except BaseException:
        stop(cluster)
        raise
    return cluster


def active_jobs() -> list[str]:
    """Jobs queued or running on the cluster (anyone's)."""
    try:
        proc = _run(["squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING,CONFIGURING,SUSPENDED", "-o", "%i"])
    except (OSError, subprocess.SubprocessError):
        return []
    return proc.stdout.split() if proc.returncode == 0 else []


def register() -> Path:
    """Record that this process uses the cluster (see :func:`stop`)."""
    USERS.mkdir(parents=True, exist_ok=True)
    USERS.chmod(0o1777)
    me = USERS / str(os.getpid())
    me.write_text(str(time.time()))
    return me


def other_users() -> list[int]:
    """Other live processes registered as using the cluster."""
    out = []
    for f in USERS.glob("*") if USERS.exists() else []:
        try:
            pid = int(f.name)
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            f.unlink(missing_ok=True)  # a session that ended without unregistering
            continue
        except PermissionError:
            pass
        out.append(pid)
    return out


def stop(cluster: Cluster, drain_timeout: float = 900) -> None:
    """Stop the daemons this module started (by pid), newest first; leave anything else alone;
    then remove the configuration files it wrote (:func:`remove_conf_files`).

    Another test session may have found this cluster answering and be using it
    (it registers, see :func:`register`; an unregistered client shows as queued
    jobs): wait up to ``drain_timeout`` seconds for those sessions to end and the
    queue to empty, and otherwise leave the cluster running rather than pull it
    from under them (its configuration files then stay too: the daemons read them)."""
    if cluster.daemons and any(p.poll() is None for p in cluster.daemons.values()):
        end = time.monotonic() + drain_timeout
        while (busy := other_users() + active_jobs()) and time.monotonic() < end:
            time.sleep(5)
        if busy:
            print(
                f"slurm_cluster: still in use (sessions/jobs {busy}); leaving the cluster running "
                f"(daemons {', '.join(f'{n} pid {p.pid}' for n, p in cluster.daemons.items())}) "
                f"and its configuration {', '.join(map(str, cluster.written))}",
                file=sys.stderr,
            )
            cluster.daemons.clear()
            cluster.written.clear()
            return
    for name in reversed(list(cluster.daemons)):
        proc = cluster.daemons[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    cluster.daemons.clear()
    for note in remove_conf_files(cluster.written, cluster.created_dirs):
        print(f"slurm_cluster: {note}", file=sys.stderr)
    cluster.written.clear()
    if cluster.state_dir is not None and not os.environ.get("PRIOR_LANDSCAPE_KEEP_SLURM_STATE"):
        shutil.rmtree(cluster.state_dir, ignore_errors=True)


try:  # the fixture, when imported by pytest
    import pytest

    @pytest.fixture(scope="session")
    def slurm_cluster():
        me = register()
        try:
            try:
                cluster = start()
            except ClusterUnavailable as e:
                pytest.skip(f"no SLURM cluster: {e}")
            yield cluster
        finally:
            me.unlink(missing_ok=True)
        stop(cluster)

except ImportError:  # pragma: no cover - used as a script without pytest
    pass


def _main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "up"
    if cmd == "up":
        cluster = start()
        if not cluster.reused:
            PID_RECORD.write_text(
                json.dumps(
                    {
                        "state_dir": str(cluster.state_dir),
                        "pids": {n: p.pid for n, p in cluster.daemons.items()},
                        "written": {str(p): t for p, t in cluster.written.items()},
                        "created_dirs": [str(d) for d in cluster.created_dirs],
                    }
                )
            )
            # leave the daemons running after this process exits
            cluster.daemons.clear()
        print(
            json.dumps(
                {
                    "node": cluster.node,
                    "partition": cluster.partition,
                    "gpus": cluster.gpus,
                    "reused": cluster.reused,
                    "state_dir": str(cluster.state_dir),
                }
            )
        )
        return 0
    if cmd == "down":
        if not PID_RECORD.exists():
            print("nothing recorded: no daemons were started by `up`")
            return 0
        users, jobs = other_users(), active_jobs()
        if (users or jobs) and "--force" not in argv:
            print(f"the cluster is in use (test sessions {users}, jobs {jobs}); not stopping it (--force to anyway)")
            return 1
        rec = json.loads(PID_RECORD.read_text())
        stopped = []
        for name, pid in reversed(list(rec["pids"].items())):
            try:  # only if that pid is still the daemon we started (pids get reused)
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                cmdline = ""
            if Path(cmdline).name != name:
                print(f"{name} (pid {pid}) is no longer running")
                continue
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
            print(f"stopped {name} (pid {pid})")
        for pid in stopped:  # the configuration goes once the daemons reading it are gone
            for _ in range(60):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.5)
        written = {Path(p): t for p, t in rec.get("written", {}).items()}
        for note in remove_conf_files(written, [Path(d) for d in rec.get("created_dirs", [])]):
            print(note)
        PID_RECORD.unlink()
        if not os.environ.get("PRIOR_LANDSCAPE_KEEP_SLURM_STATE"):
            shutil.rmtree(rec["state_dir"], ignore_errors=True)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
