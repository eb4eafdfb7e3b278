"""The host environment: run a job's command with this machine's Python and PATH.

For development and for machines without a container engine. It enforces the
template's time limit and output-size limit and starts the command in the
job's output folder, but it cannot isolate the network or the file system:
that is what the docker environment is for.

A job does not inherit the caller's whole environment: only the variables that
say where this machine's software is (``PASSED_THROUGH``), then the job's
``OMP_NUM_THREADS`` and the template's own ``env``. So a worker's database URL
or a user's tokens never reach analysis code, and numerical settings of the
caller's shell (``OPENBLAS_CORETYPE``, ``MKL_*`` ...) do not make a host run
differ from the same job in its image. A template that needs one declares it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

from recast.environments import Job, Outcome
from recast.environments.watch import OutputWatch
from recast.errors import ExecutionError


# Where this machine's software and locale are: what "run with this machine's
# Python and PATH" needs, and nothing that tunes or authorises.
PASSED_THROUGH = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
                  "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH")


def job_environment(job: Job, caller: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a host job runs with (see the module's docstring)."""
    caller = os.environ if caller is None else caller
    env = {name: value for name, value in caller.items()
           if name in PASSED_THROUGH or name.startswith("LC_")}
    # As in the docker environment: a template's own OMP_NUM_THREADS wins over the one from cores.
    # A credential's variable names the operator's file itself (the host isolates nothing anyway).
    return {**env, "OMP_NUM_THREADS": str(max(1, int(job.cores))), **job.env,
            **{variable: source for _, source, variable in job.credentials}}


class HostEnvironment:
    name = "host"
    uses_images = False
    uses_container_broker = False

    def run(self, job: Job) -> Outcome:
        env = job_environment(job)
        if shutil.which(job.argv[0], path=env.get("PATH")) is None and os.sep not in job.argv[0]:
            raise ExecutionError(
                f"step {job.step}: command {job.argv[0]!r} is not installed on this host "
                "(install the analysis software, or run with --environment docker)"
            )
        job.outdir.mkdir(parents=True, exist_ok=True)
        log = open(job.log_path, "ab") if job.log_path else subprocess.DEVNULL
        try:
            try:
                proc = subprocess.Popen(
                    job.argv, cwd=job.workdir or job.outdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
            except OSError as exc:
                raise ExecutionError(f"step {job.step}: cannot start {job.argv[0]!r} in {job.outdir}: "
                                     f"{exc.strerror or exc}") from None
            # The command has a session of its own (so that the time limit can stop
            # all of it); stopping this job must stop it too, not leave it running.
            previous = signal.signal(signal.SIGTERM, _terminate)
            try:
                with OutputWatch(job.outdir, job.output_bytes, lambda: _kill_group(proc)) as watch:
                    code = proc.wait(timeout=job.time_limit_s)
                if watch.exceeded.is_set():
                    return Outcome(exit_code=code, output_exceeded=True,
                                   details={"pid": proc.pid, "output_limit_bytes": job.output_bytes,
                                            "output_exceeded": watch.reason})
                return Outcome(exit_code=code, details={"pid": proc.pid})
            except subprocess.TimeoutExpired:
                _kill(proc)
                return Outcome(exit_code=-9, timed_out=True, details={"pid": proc.pid})
            except BaseException:  # Ctrl-C, or SIGTERM via _terminate
                _kill(proc)
                raise
            finally:
                signal.signal(signal.SIGTERM, previous)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill(proc: subprocess.Popen) -> None:
    _kill_group(proc)
    proc.wait()
