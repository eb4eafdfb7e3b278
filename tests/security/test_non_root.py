"""recast run end to end as an unprivileged user in the docker group, as an operator should run it.

CI makes the user (scripts/ci-user.sh, called by .ci/run); under CI its
absence is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES

USER = os.environ.get("RECAST_TEST_USER", "recast-ci")

pytestmark = pytest.mark.docker


@pytest.fixture
def user():
    try:
        account = pwd.getpwnam(USER)
    except KeyError:
        if os.environ.get("CI"):
            pytest.fail(f"user {USER} does not exist: .ci/run makes it with scripts/ci-user.sh")
        pytest.skip(f"no user {USER} here: make it with `bash scripts/ci-user.sh` (as root)")
    if os.getuid() != 0:
        pytest.skip("switching to another user needs root")
    return account


def test_a_user_in_the_docker_group_runs_recast_end_to_end(user, tmp_path_factory):
    from recast import images
    from recast.validate import load_analysis

    home = tmp_path_factory.mktemp("non-root")
    os.chmod(home.parent, 0o755)  # pytest's own folders are private to root
    os.chmod(home.parent.parent, 0o755)
    catalog = home / "catalog"
    shutil.copytree(FIXTURES / "catalog" / "toy", catalog / "toy")
    images.build(load_analysis(catalog / "toy"))  # the engine is shared: root builds, the user runs
    shutil.chown(home, user.pw_uid, user.pw_gid)
    for root, dirs, names in os.walk(home):
        for name in dirs + names:
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)

    run_dir = home / "run"
    result = subprocess.run(
        ["runuser", "-u", user.pw_name, "--", sys.executable, "-m", "recast", "run", "toy",
         "--catalog", str(catalog), "--example", "default", "--workdir", str(run_dir), "--cores", "2"],
        capture_output=True, text=True, cwd=home, timeout=300,
        env={"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"})
    assert result.returncode == 0, result.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["values"]["squares"] == [2.0, 6.0, 13.25] and results["run"]["environment"] == "docker"
    # The job ran as the invoking user (not root, not nobody), and everything it left is theirs.
    assert json.loads((run_dir / "steps" / "square__0" / "square.json").read_text())["uid"] == user.pw_uid
    owners = {os.lstat(os.path.join(r, n)).st_uid for r, ds, ns in os.walk(run_dir) for n in ds + ns}
    assert owners == {user.pw_uid}
