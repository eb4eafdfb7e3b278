"""A stranger's request, refused or defused: file paths, list parameters, parsing, run folder names.

Each test reproduces one hole of the security review on the toy entry and
checks that no harm was done and that the user sees one clear message naming
the file and the field, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from recast import execution, spec
from recast import request as request_mod
from recast.cli import cli
from recast.errors import RequestError
from recast.files import UnsafePath
from recast.validate import load_analysis

POINT = {"x": 1, "label": "a", "events": "data/a.txt"}


def recast(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``recast ARGS`` as a user runs it: exit code and stderr as printed."""
    return subprocess.run([sys.executable, "-m", "recast", *args], capture_output=True, text=True, cwd=cwd)


def run_args(toy: Path, request: Path, workdir: Path) -> list[str]:
    return ["run", "toy", "--request", str(request), "--environment", "host", "--catalog", str(toy.parent),
            "--workdir", str(workdir)]


def write(toy: Path, name: str, text: str) -> Path:
    path = toy / "requests" / name
    path.write_text(text)
    return path


def request_with(toy: Path, parameters: dict, name: str = "req.yaml") -> Path:
    return write(toy, name, yaml.safe_dump({"parameters": parameters}))


def refusal(toy: Path, path: Path) -> str:
    with pytest.raises(RequestError) as err:
        request_mod.load(load_analysis(toy), path)
    return str(err.value)


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


# -- 1. request files: relative, no '..', through no link, regular ------------------------------------


def test_dotdot_through_an_inner_link_cannot_write_outside_the_run(toy, tmp_path):
    requests = toy / "requests"
    (requests / "deep" / "a" / "b" / "c").mkdir(parents=True)
    (requests / "deep" / "pwned.txt").write_text("attacker\n")
    os.symlink(requests / "deep" / "a" / "b" / "c", requests / "L")
    # Resolved, L/../../../pwned.txt is deep/pwned.txt, inside the request's folder; textually it is
    # ../../pwned.txt, which the old staging wrote two levels above RUN/inputs.
    evil = "L/../../../pwned.txt"
    req = request_with(toy, {"points": [{**POINT, "events": evil}]})
    workdir = tmp_path / "runs" / "toy" / "evil"
    before = files_under(tmp_path)

    proc = recast(*run_args(toy, req, workdir), cwd=tmp_path)

    assert proc.returncode == 1
    assert proc.stderr == (f"error: {req}: parameters.points[0].events: '{evil}': '..' is not allowed: "
                           f"a request's files stay inside its folder {requests}\n")
    assert files_under(tmp_path) == before, "nothing may be written anywhere"
    assert not workdir.exists()


def test_a_link_inside_the_request_folder_is_refused(toy):
    requests = toy / "requests"
    (requests / "deep").mkdir()
    (requests / "deep" / "a.txt").write_text("inside\n")
    os.symlink(requests / "deep", requests / "L")
    message = refusal(toy, request_with(toy, {"points": [{**POINT, "events": "L/a.txt"}]}))
    assert message == (f"{requests / 'req.yaml'}: parameters.points[0].events: "
                       "'L/a.txt': L is a symbolic link; a request's files and folders may not be links")


def test_a_fifo_is_refused_without_waiting_on_it(toy):
    os.mkfifo(toy / "requests" / "data" / "pipe.txt")
    message = refusal(toy, request_with(toy, {"points": [{**POINT, "events": "data/pipe.txt"}]}))
    assert message == (f"{toy / 'requests' / 'req.yaml'}: parameters.points[0].events: 'data/pipe.txt' is not a "
                       "regular file (a fifo, socket or device): expected a file")


@pytest.mark.parametrize("planted", ["inputs", "inputs/data"])
def test_staging_never_writes_through_a_link_in_the_run_folder(toy, tmp_path, planted):
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = tmp_path / "run"
    (run_dir / planted).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, run_dir / planted)
    analysis = load_analysis(toy)
    req = request_mod.load(analysis, toy / "requests" / "default.yaml")

    with pytest.raises(UnsafePath) as err:
        execution.prepare(analysis, req, run_dir, "host")

    assert str(err.value) == (f"{run_dir / planted} is a symbolic link or not a folder: "
                              "refusing to stage the request's files through it")
    assert list(outside.iterdir()) == []


def test_a_link_left_at_a_staged_file_is_replaced_not_written_through(toy, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run_dir = tmp_path / "run"
    (run_dir / "inputs" / "data").mkdir(parents=True)
    os.symlink(victim, run_dir / "inputs" / "data" / "a.txt")
    analysis = load_analysis(toy)
    req = request_mod.load(analysis, toy / "requests" / "default.yaml")

    staged = request_mod.stage_inputs(req, run_dir)

    assert victim.read_text() == "precious\n"
    target = run_dir / "inputs" / "data" / "a.txt"
    assert staged["data/a.txt"] == target and not target.is_symlink()
    assert target.read_bytes() == (toy / "requests" / "data" / "a.txt").read_bytes()


# -- 2. only parameters declared `file` are files --------------------------------------------------


def add_labels_stage(toy: Path) -> None:
    """A template with a list-of-strings parameter, fed from the request."""
    (toy / "code" / "labels.py").write_text(
        "import json, sys\n"
        "json.dump({'labels': sys.argv[2:]}, open(sys.argv[1], 'w'))\n"
    )
    (toy / "templates" / "labels.yaml").write_text(yaml.safe_dump({
        "schema": "recast/template/1.0.0", "name": "labels", "description": "writes its labels",
        "parameters": {"script": {"type": "file"}, "regions": {"type": "list", "items": {"type": "string"}}},
        "process": {"kind": "command", "argv": ["python3", "{script}", "{outdir}/labels.json", "{regions}"]},
        "environment": {"kind": "image", "image": "toy", "resources": {"memory": "256MiB", "time_limit": "60s"}},
        "outputs": {"files": {"result": "labels.json"}},
    }))
    spec_path = toy / "analysis.yaml"
    doc = yaml.safe_load(spec_path.read_text())
    doc["templates"]["labels"] = "templates/labels.yaml"
    doc["workflow"]["stages"].append({"name": "labels", "template": "labels",
                                      "bind": {"script": "$entry/code/labels.py", "regions": "$request.regions"}})
    doc["request"]["parameters"]["regions"] = {"type": "list", "items": {"type": "string"}, "default": ["SR1"]}
    spec_path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_a_list_of_labels_is_data_and_the_job_runs(toy, tmp_path):
    add_labels_stage(toy)
    req = request_with(toy, {"points": [POINT], "regions": ["SRLM", "SRHM"]})
    analysis = load_analysis(toy)
    run_dir = tmp_path / "run"

    outcome = execution.run(analysis, request_mod.load(analysis, req), run_dir, environment="host")

    assert outcome.status == "success" and "labels" in outcome.jobs_run
    assert json.loads((run_dir / "steps" / "labels" / "labels.json").read_text()) == {"labels": ["SRLM", "SRHM"]}
    job = outcome.plan.job("labels")
    assert job.inputs == [str(toy / "code" / "labels.py")]
    assert job.argv[-2:] == ["SRLM", "SRHM"]


def test_host_paths_given_as_strings_are_not_inputs_or_mounts(toy, tmp_path):
    add_labels_stage(toy)
    req = request_with(toy, {"points": [POINT], "regions": ["/etc/hostname", "/root/secret"]})
    analysis = load_analysis(toy)

    plan = execution.prepare(analysis, request_mod.load(analysis, req), tmp_path / "run", "host")

    every_input = {path for job in plan.jobs for path in job.inputs}
    assert not every_input & {"/etc/hostname", "/root/secret"}
    assert plan.job("labels").inputs == [str(toy / "code" / "labels.py")]  # under Docker: the only read-only mount
    assert plan.job("labels").argv[-2:] == ["/etc/hostname", "/root/secret"]  # still passed on, as text


# -- 3. parsing: bounded before it can hang, flood or crash -----------------------------------------

ALIAS_BOMB = """\
parameters:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_an_alias_bomb_is_refused_by_count(toy, tmp_path):
    req = write(toy, "bomb.yaml", ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 800
    proc = recast(*run_args(toy, req, tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 1
    # e holds 9**5 "lol"s once expanded: the first collection over the limit, found before anything is built.
    assert proc.stderr == (f"error: {req}: parameters.e (line 6): more than {request_mod.MAX_VALUES} values "
                           "once its aliases are expanded\n")
    assert not (tmp_path / "run").exists()


def test_a_recursive_alias_is_refused(toy):
    req = write(toy, "loop.yaml", "parameters:\n  points: &p [*p]\n")
    assert refusal(toy, req) == (f"{req}: parameters.points[0] (line 2): an alias refers to a collection "
                                 "that contains it (a recursive structure)")


def test_deep_nesting_is_refused(toy):
    req = write(toy, "deep.yaml", "parameters:\n  points: " + "[" * 5000 + "]" * 5000 + "\n")
    assert refusal(toy, req) == f"{req}: line 2: nested more than {spec.MAX_DEPTH} levels deep"
    req = write(toy, "deep.json", '{"parameters": {"points": ' + "[" * 5000 + "]" * 5000 + "}}")
    assert refusal(toy, req) == f"{req}: (top level): nested more than {spec.MAX_DEPTH} levels deep"


def test_a_huge_request_is_refused_before_it_is_read(toy):
    req = toy / "requests" / "huge.yaml"
    with req.open("wb") as f:
        f.write(b"parameters: {}\n")
        f.truncate(200 * 2**20)  # sparse: 200 MB that take no disk
    assert refusal(toy, req) == (f"{req}: (top level): {200 * 2**20} bytes, more than the limit of "
                                 f"{request_mod.MAX_BYTES} bytes; not read")


def test_a_million_element_list_is_refused_quickly_and_briefly(toy):
    # Two bytes per element: over the size limit, refused unread.
    req = write(toy, "million.yaml", "parameters:\n  points: [" + "0," * (10**6 - 1) + "0]\n")
    message = refusal(toy, req)
    assert message.startswith(f"{req}: (top level): ") and message.endswith("; not read")
    # Under the size limit, refused by counting values while parsing.
    req = write(toy, "many.yaml", "parameters:\n  points: [" + "0," * 99_999 + "0]\n")
    assert refusal(toy, req) == f"{req}: line 2: more than {request_mod.MAX_VALUES} values"


def test_too_many_items_gives_one_short_line(toy):
    spec_path = toy / "analysis.yaml"
    doc = yaml.safe_load(spec_path.read_text())
    doc["request"]["parameters"]["points"]["maxItems"] = 200
    spec_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    req = request_with(toy, {"points": [dict(POINT) for _ in range(5_000)]})  # copies: no YAML aliases
    assert refusal(toy, req) == f"{req}: parameters.points: 5000 items, more than the maximum of 200"


def test_many_bad_values_give_a_bounded_list_of_problems(toy):
    req = request_with(toy, {"points": [{**POINT, "x": "ten"} for _ in range(5_000)]})
    lines = refusal(toy, req).splitlines()
    assert len(lines) == spec.MAX_PROBLEMS + 1
    assert lines[0] == f"{req}: parameters.points[0].x: expected number, found str 'ten'"
    assert lines[-1] == f"{req}: (top level): more problems not shown (only the first {spec.MAX_PROBLEMS} are listed)"


def test_long_values_are_echoed_short(toy):
    long_name = "x" * 500_000
    req = write(toy, "long.yaml", yaml.safe_dump({"analysis": long_name, "parameters": {"points": [POINT]}}))
    message = refusal(toy, req)
    assert message == f"{req}: analysis: this request is for {spec.short(long_name)}, not 'toy'"
    assert len(message) < len(str(req)) + 150
    req = write(toy, "schema.yaml", yaml.safe_dump({"schema": long_name, "parameters": {"points": [POINT]}}))
    message = refusal(toy, req)
    assert message == (f"{req}: schema: {spec.short(long_name)} is not a schema recast reads here: "
                       "expected one of recast/request/1.0.0, recast/request/1.1.0")
    assert len(spec.short(long_name)) <= 80
    req = write(toy, "key.json", '{"parameters": {"' + long_name + '": NaN}}')
    assert refusal(toy, req) == (f"{req}: parameters.{'x' * 39}…: NaN is not a finite number "
                                 "(NaN and infinities are not allowed)")


def test_a_5000_digit_integer_is_refused_without_a_traceback(toy, tmp_path):
    digits = "9" * 5000
    req = write(toy, "int.yaml", f"parameters:\n  points:\n    - {{x: {digits}, label: a, events: data/a.txt}}\n")
    proc = recast(*run_args(toy, req, tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    shown = spec.short(digits, 40)
    assert proc.stderr == (f"error: {req}: parameters.points[0].x (line 3): integer {shown} has 5000 digits: "
                           "expected |n| < 2**63 (at most 19 digits)\n")
    req = write(toy, "int.json", '{"parameters": {"points": [{"x": ' + digits + ', "label": "a", "events": "data/a.txt"}]}}')
    assert refusal(toy, req) == (f"{req}: parameters.points[0].x: integer {shown} has 5000 digits: "
                                 "expected |n| < 2**63 (at most 19 digits)")
    req = write(toy, "edge.yaml", "parameters:\n  offset: -9223372036854775808\n  points: []\n")
    assert refusal(toy, req) == (f"{req}: parameters.offset (line 2): integer '-9223372036854775808' is out of "
                                 "range: expected |n| < 2**63")


@pytest.mark.parametrize("name, text, where", [
    ("dup.yaml", "parameters:\n  offset: 1\n  points: []\n  offset: 2\n", "parameters (line 4)"),
    ("dup.json", '{"parameters": {"offset": 1, "points": [], "offset": 2}}', "parameters"),
])
def test_duplicate_keys_are_refused(toy, name, text, where):
    req = write(toy, name, text)
    first = " (first on line 2)" if name.endswith(".yaml") else ""
    assert refusal(toy, req) == f"{req}: {where}: duplicate key 'offset'{first}"


@pytest.mark.parametrize("name, text, where, shown", [
    ("nan.yaml", "parameters:\n  offset: .nan\n", "parameters.offset (line 2)", "'.nan'"),
    ("inf.yaml", "parameters:\n  offset: -.inf\n", "parameters.offset (line 2)", "'-.inf'"),
    ("big.yaml", "parameters:\n  offset: 1.0e+999\n", "parameters.offset (line 2)", "'1.0e+999'"),
    ("nan.json", '{"parameters": {"offset": NaN}}', "parameters.offset", "NaN"),
    ("inf.json", '{"parameters": {"offset": -Infinity}}', "parameters.offset", "-Infinity"),
    ("big.json", '{"parameters": {"offset": 1e999}}', "parameters.offset", "'1e999'"),
])
def test_non_finite_numbers_are_refused(toy, name, text, where, shown):
    req = write(toy, name, text)
    assert refusal(toy, req) == f"{req}: {where}: {shown} is not a finite number (NaN and infinities are not allowed)"


def test_spec_documents_have_the_same_guards(toy):
    (toy / "templates" / "square.yaml").write_text(ALIAS_BOMB.replace("parameters:", "description:"))
    from recast.validate import check

    analysis, problems = check(toy)
    assert analysis is None
    assert (str(toy / "templates" / "square.yaml"), "description.f (line 7)",
            f"more than {spec.MAX_DOCUMENT_VALUES} values once its aliases are expanded") in problems


# -- 4. the default run folder is one safe path component --------------------------------------------


def name_hash(stem: str, n: int) -> str:
    return hashlib.sha256(stem.encode()).hexdigest()[:n]


@pytest.mark.parametrize("file_name, expected", [
    ("default.yaml", "default"),
    ("a.b.yaml", "a.b"),
    ("a.c.json", "a.c"),
    (".yaml", f"request-{name_hash('', 12)}"),
    ("..yaml", f"request-{name_hash('.', 12)}"),
    ("...yml", f"request-{name_hash('..', 12)}"),
    (".hidden.yaml", f"hidden-{name_hash('.hidden', 8)}"),
    ("my request.yaml", f"my_request-{name_hash('my request', 8)}"),
    ("réquête.yaml", f"r_qu_te-{name_hash('réquête', 8)}"),
    ("日本.yaml", f"request-{name_hash('日本', 12)}"),
    ("a\\..\\b.yaml", "a_.._b-" + name_hash("a\\..\\b", 8)),
    ("x" * 300 + ".yaml", "x" * 64 + f"-{name_hash('x' * 300, 8)}"),
])
def test_run_name_is_one_safe_component(file_name, expected):
    name = request_mod.run_name(Path("some/folder") / file_name, "sha256:" + "0" * 64)
    assert name == expected
    assert name not in ("", ".", "..") and not name.startswith(".") and "/" not in name and "\\" not in name


def test_run_name_without_a_file_uses_the_digest():
    assert request_mod.run_name(None, "sha256:0123456789abcdef") == "request-0123456789ab"


def test_a_request_named_dot_yaml_gets_its_own_run_folder(toy, tmp_path, monkeypatch):
    req = write(toy, ".yaml", (toy / "requests" / "default.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run", "toy", "--request", str(req), "--environment", "host",
                                      "--catalog", str(toy.parent), "--json"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "toy" / f"request-{name_hash('', 12)}"
    assert json.loads(result.stdout)["run_dir"] == str(run_dir.resolve())
    assert (run_dir / "results.json").is_file()
    assert sorted(p.name for p in (tmp_path / "runs" / "toy").iterdir()) == [run_dir.name]



@pytest.mark.parametrize("name, text, where, message", [
    ("tag.yaml", "parameters:\n  offset: !!int abc\n", "parameters.offset (line 2)", "'abc' is not a valid int"),
    ("bool.yaml", "parameters:\n  offset: !!bool maybe\n", "parameters.offset (line 2)", "'maybe' is not a valid bool"),
    ("key.yaml", "parameters:\n  on: 1\n", "parameters (line 2)", "key 'on' is not a string: quote it"),
    ("bin.yaml", "parameters:\n  offset: !!binary aGk=\n", "parameters.offset (line 2)",
     "YAML tag !!binary is not allowed: expected plain JSON data"),
    ("utf.yaml", 'parameters:\n  label: "\\ud800"\n', "parameters.label (line 2)",
     "text '\\ud800' is not valid Unicode (surrogates not allowed)"),
    ("utf.json", '{"parameters": {"label": "\\ud800"}}', "parameters.label",
     "text '\\ud800' is not valid Unicode (surrogates not allowed)"),
])
def test_only_plain_json_data_comes_out(toy, name, text, where, message):
    # Each of these used to end in a traceback (ValueError, KeyError, or UnicodeEncodeError in the digest).
    req = write(toy, name, text)
    assert refusal(toy, req) == f"{req}: {where}: {message}"
