"""A stand-in for the few LSF commands Snakemake's LSF executor plugin calls (tests only).

No LSF can be installed on the test machines. These scripts record every ``bsub`` command
line (one JSON object per line in ``$LSF_STANDIN_DIR/bsub.jsonl``) and run the job locally in
the background, so the tests can check what each job asked the scheduler for. They implement
only what the plugin uses: bsub's reply, ``bjobs -o 'jobid stat' -aJ <pattern>``, bkill, and
the configuration that ``badmin showconf mbd`` and ``lsclusters`` report; and ``jsrun``, with
which a distributed job starts its processes.
"""

import contextlib
import fnmatch
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ["LSF_STANDIN_DIR"])
CLUSTER = "standin"


def _job_dir(job_id: str) -> Path:
    return STATE / "jobs" / job_id


def bsub(argv: list[str]) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    counter = STATE / "next_id"
    job_id = str(int(counter.read_text()) if counter.exists() else 1000)
    counter.write_text(str(int(job_id) + 1))
    options, command, i = {}, None, 0
    while i < len(argv):
        if argv[i] == "-env":  # '-env all'
            i += 2
        elif argv[i].startswith("-") and i + 1 < len(argv):
            options.setdefault(argv[i], []).append(argv[i + 1])
            i += 2
        else:
            command = argv[i]
            i += 1
    with open(STATE / "bsub.jsonl", "a") as fh:
        fh.write(json.dumps({"job": job_id, "argv": argv, "options": options}) + "\n")
    folder = _job_dir(job_id)
    folder.mkdir(parents=True)
    (folder / "name").write_text(options["-J"][0])
    (folder / "stat").write_text("RUN")
    log = options.get("-o", [str(folder / "out")])[0]
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ, LSB_JOBID=job_id, LSB_JOBINDEX="0")
    runner = f"({command}); echo $? > {shlex.quote(str(folder / 'exit'))}"
    with open(log, "a") as out:
        process = subprocess.Popen(
            ["bash", "-c", runner],
            cwd=options.get("-cwd", ["."])[0],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (folder / "pid").write_text(str(process.pid))
    queue = options.get("-q", ["normal"])[0]
    print(f"Job <{job_id}> is submitted to queue <{queue}>.")


def _status(folder: Path) -> str:
    exit_file = folder / "exit"
    if exit_file.exists() and exit_file.read_text().strip():
        return "DONE" if exit_file.read_text().strip() == "0" else "EXIT"
    return "RUN"


def bjobs(argv: list[str]) -> None:
    pattern = argv[argv.index("-aJ") + 1] if "-aJ" in argv else "*"
    for folder in sorted((STATE / "jobs").glob("*")):
        if fnmatch.fnmatchcase((folder / "name").read_text(), pattern):
            print(folder.name, _status(folder))


def bkill(argv: list[str]) -> None:
    for job_id in argv:
        pid_file = _job_dir(job_id) / "pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):  # already finished
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)


def badmin(argv: list[str]) -> None:
    confdir = STATE / "conf"
    params = confdir / "lsbatch" / CLUSTER / "configdir" / "lsb.params"
    params.parent.mkdir(parents=True, exist_ok=True)
    params.write_text("Begin Parameters\nDEFAULT_QUEUE = normal\nEnd Parameters\n")
    print("MBD configuration at a stand-in")
    print(f"LSB_SHAREDIR = {STATE / 'share'}")
    print(f"LSF_CONFDIR = {confdir}")
    print("LSF_UNIT_FOR_LIMITS = MB")


def lsclusters(argv: list[str]) -> None:
    print("CLUSTER_NAME   STATUS   MASTER_HOST   ADMIN   HOSTS   SERVERS")
    print(f"{CLUSTER}        ok       localhost     root    1       1")


def lsid(argv: list[str]) -> None:
    print("IBM Spectrum LSF stand-in (tests only)")
    print(f"My cluster name is {CLUSTER}")
    print("My master name is localhost")


def jsrun(argv: list[str]) -> None:
    """``jsrun --nrs=N [options] command``: N copies of the command on this machine, each with
    jsrun's rank variables, recorded in ``jsrun.jsonl``; the highest exit status (a signal as
    128 + its number)."""
    options, i = {}, 0
    while i < len(argv) and argv[i].startswith("-"):
        key, _, value = argv[i].partition("=")
        if not value:
            i += 1
            value = argv[i]
        options[key] = value
        i += 1
    with open(STATE / "jsrun.jsonl", "a") as fh:
        fh.write(json.dumps({"argv": argv, "options": options}) + "\n")
    size = int(options["--nrs"])
    ranks = [
        subprocess.Popen(
            argv[i:],
            env=dict(
                os.environ,
                JSM_NAMESPACE_RANK=str(r),
                JSM_NAMESPACE_SIZE=str(size),
                JSM_NAMESPACE_LOCAL_RANK=str(r),
            ),
        )
        for r in range(size)
    ]
    sys.exit(max(128 - code if code < 0 else code for code in (rank.wait() for rank in ranks)))


COMMANDS = {c.__name__: c for c in (bsub, bjobs, bkill, badmin, lsclusters, lsid, jsrun)}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](sys.argv[2:])
