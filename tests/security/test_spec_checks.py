"""What an analysis spec may make a job reach or use, refused at `recast validate` time.

Each test reproduces one hole of the security review on the toy entry and
checks that validation now refuses it with the file, the field and what was
expected: host files named by literal bindings or defaults, `$entry/...`
paths and check fixtures that are links or not regular files, resources
outside recast's limits (``memory: 0B`` meant unlimited to Docker), and image
locks that do not pin an image ID.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from recast import images, limits
from recast.cli import cli
from recast.errors import RecastError
from recast.validate import check, load_analysis

LITERAL = "a literal file path is not allowed; use $entry/PATH for a file archived in the entry"


def edit(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def refused(entry: Path, field: str, fragment: str, file: str = "analysis.yaml") -> str:
    """The message of the problem at ``field`` of ``file``; fails if the entry validates."""
    analysis, problems = check(entry)
    assert analysis is None, f"{field}: expected a problem, but the entry validates"
    # The loader may name the line too: "field (line 6)".
    matching = [p for p in problems if (p[1] == field or p[1].startswith(f"{field} (")) and fragment in p[2]]
    assert matching, problems
    assert matching[0][0].endswith(file), matching
    return matching[0][2]


def stage(doc, name):
    return next(s for s in doc["workflow"]["stages"] if s["name"] == name)


# -- 6. files a job gets: only through references, only regular files of the entry -----


@pytest.mark.parametrize("literal", ["/etc/passwd", "code/total.py", "$$entry/code/total.py"])
def test_literal_path_bound_to_a_file_parameter_is_refused(toy, literal):
    edit(toy / "analysis.yaml", lambda d: stage(d, "total")["bind"].update(script=literal))
    assert refused(toy, "workflow.stages[1].bind.script", LITERAL) == LITERAL


def test_literal_list_of_paths_bound_to_a_list_of_files_is_refused(toy):
    # References inside a literal list are not resolved either, so $entry there is a literal too.
    edit(toy / "analysis.yaml", lambda d: stage(d, "total")["bind"].update(squares=["$entry/code/total.py", "/etc/passwd"]))
    message = refused(toy, "workflow.stages[1].bind.squares[1]", LITERAL)
    assert "not resolved" in message
    refused(toy, "workflow.stages[1].bind.squares[0]", LITERAL)


def test_the_cli_shows_the_literal_path_problem(toy):
    edit(toy / "analysis.yaml", lambda d: stage(d, "total")["bind"].update(script="/etc/passwd"))
    result = CliRunner().invoke(cli, ["validate", str(toy)])
    assert result.exit_code == 1
    assert f"analysis.yaml: workflow.stages[1].bind.script: {LITERAL}" in result.output


def test_literal_file_default_of_a_template_parameter_is_refused(toy):
    def add_defaults(d):
        d["parameters"]["script"]["default"] = "/etc/passwd"
        d["parameters"]["squares"]["default"] = ["/etc/shadow"]

    edit(toy / "templates" / "total.yaml", add_defaults)
    message = refused(toy, "parameters.script.default", "cannot have a default path", "total.yaml")
    assert "$entry/PATH" in message
    refused(toy, "parameters.squares.default[0]", "cannot have a default path", "total.yaml")


def test_object_with_a_file_field_default_is_refused(toy):
    def add(d):
        d["parameters"]["extra"] = {"type": "object", "properties": {"f": {"type": "file"}, "n": {"type": "number"}},
                                    "default": {"f": "/etc/passwd", "n": 1}}
        d["process"]["argv"].append("{extra}")

    edit(toy / "templates" / "total.yaml", add)
    refused(toy, "parameters.extra.default.f", "cannot have a default path", "total.yaml")


@pytest.mark.parametrize(
    "bind, field, fragment",
    [
        # A string of the request is not checked as a file of the request's folder: it could be any host path.
        ({"stage": "square", "events": "$request.path"}, "workflow.stages[0].bind.events",
         "takes a file, but request parameter 'path' gives no file"),
        ({"stage": "square", "events": "$item.label"}, "workflow.stages[0].bind.events",
         "takes a file, but $item.label gives no file"),
        # An output value is whatever the job wrote into its JSON.
        ({"stage": "total", "squares": "$steps.square.y"}, "workflow.stages[1].bind.squares",
         "is an output value, which is data, not a file"),
        ({"stage": "total", "squares": "$entry/code/total.py"}, "workflow.stages[1].bind.squares",
         "takes a list of files, but $entry/code/total.py gives a file"),
    ],
)
def test_a_file_parameter_takes_only_references_to_files(toy, bind, field, fragment):
    def change(d):
        d["request"]["parameters"]["path"] = {"type": "string", "default": "/etc/passwd"}
        stage(d, bind.pop("stage"))["bind"].update(bind)

    edit(toy / "analysis.yaml", change)
    refused(toy, field, fragment)


def test_entry_path_through_a_link_is_refused_even_to_a_file_inside(toy):
    # Resolving the link at validation time is not enough: it can be changed before the run.
    (toy / "code" / "link.py").symlink_to("total.py")
    edit(toy / "analysis.yaml", lambda d: stage(d, "total")["bind"].update(script="$entry/code/link.py"))
    refused(toy, "workflow.stages[1].bind.script", "reached through no symbolic link")


def test_entry_path_through_a_linked_folder_is_refused(toy):
    (toy / "linked").symlink_to("code")
    edit(toy / "analysis.yaml", lambda d: stage(d, "total")["bind"].update(script="$entry/linked/total.py"))
    refused(toy, "workflow.stages[1].bind.script", "links are not followed")


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.mkdir(), "not a regular file"),
    (lambda p: os.mkfifo(p), "not a regular file"),
])
def test_entry_path_to_a_folder_or_fifo_is_refused(toy, make, fragment):
    make(toy / "code" / "special")
    edit(toy / "analysis.yaml", lambda d: stage(d, "total")["bind"].update(script="$entry/code/special"))
    refused(toy, "workflow.stages[1].bind.script", fragment)


def test_absolute_entry_path_is_refused(toy):
    edit(toy / "analysis.yaml", lambda d: stage(d, "total")["bind"].update(script="$entry//etc/passwd"))
    message = refused(toy, "workflow.stages[1].bind.script", "leaves the catalog entry's folder")
    assert "not an absolute one" in message


def test_check_fixture_through_a_link_is_refused(toy):
    (toy / "fixtures" / "linked.txt").symlink_to("events.txt")
    edit(toy / "checks.yaml", lambda d: d["steps"]["square"]["parameters"].update(events="fixtures/linked.txt"))
    refused(toy, "steps.square.parameters.events", "reached through no symbolic link", "checks.yaml")


def test_check_fixtures_folder_that_is_a_link_is_refused(toy):
    (toy / "elsewhere").symlink_to("fixtures")
    edit(toy / "checks.yaml", lambda d: d["steps"]["square"].update(fixtures="elsewhere"))
    refused(toy, "steps.square.fixtures", "symbolic link, which is not followed", "checks.yaml")


def test_check_fixture_inside_an_object_parameter_is_checked(toy):
    def add(d):
        d["parameters"]["extra"] = {"type": "object", "properties": {"f": {"type": "file"}}}
        d["process"]["argv"].append("{extra}")

    edit(toy / "templates" / "square.yaml", add)
    edit(toy / "analysis.yaml", lambda d: stage(d, "square")["bind"].update(extra={}))
    edit(toy / "checks.yaml", lambda d: d["steps"]["square"]["parameters"].update(extra={"f": "/etc/passwd"}))
    message = refused(toy, "steps.square.parameters.extra.f", "leaves the catalog entry's folder", "checks.yaml")
    assert "not an absolute one" in message


def test_the_shipped_entries_bind_files_only_through_references(toy):
    from conftest import ROOT

    for entry in (ROOT / "catalog" / "wh1lbb", toy):
        analysis, problems = check(entry)
        assert problems == [] and analysis is not None


# -- 8. resources within recast's minimums and the operator's maximums --------------------


@pytest.mark.parametrize(
    "resources, field, fragment",
    [
        ({"memory": "0B"}, "environment.resources.memory", "0 B is outside the allowed range 32 MiB to 16 GiB"),
        ({"memory": "64GiB"}, "environment.resources.memory", "the operator's maximum, see RECAST_LIMITS"),
        ({"time_limit": "0s"}, "environment.resources.time_limit", "0 s is outside the allowed range 1 s to 48 h"),
        ({"cores": 0.001}, "environment.resources.cores", "0.001 is outside the allowed range 0.01 to 16"),
        ({"cores": 64}, "environment.resources.cores", "the operator's maximum"),
        # The schema's maximum lets NaN through (every comparison with it is false).
        ({"cores": float("nan")}, "environment.resources.cores", "nan"),
        ({"output": "0B"}, "environment.resources.output", "outside the allowed range 1 MiB"),
        ({"output": "1000TiB"}, "environment.resources.output", "the operator's maximum"),
    ],
)
def test_resources_outside_the_limits_are_refused(toy, resources, field, fragment):
    edit(toy / "templates" / "square.yaml", lambda d: d["environment"]["resources"].update(resources))
    refused(toy, field, fragment, "square.yaml")


def test_a_huge_number_is_refused_by_the_schema_not_a_crash(toy):
    edit(toy / "templates" / "square.yaml",
         lambda d: d["environment"]["resources"].update(memory="9" * 5000 + "GiB", time_limit="9" * 5000 + "s"))
    refused(toy, "environment.resources.memory", "does not have the expected form", "square.yaml")


def test_parse_errors_echo_only_the_start_of_the_value():
    for parse, value in ((limits.parse_size, "9" * 5000 + "GiB"), (limits.parse_duration, "9" * 5000 + "s"),
                         (limits.parse_size, 10**5000)):
        with pytest.raises(ValueError) as err:
            parse(value)
        assert len(str(err.value)) < 150, str(err.value)[:300]


def test_operator_limits_raise_the_maximum(toy, tmp_path, monkeypatch):
    (tmp_path / "limits.yaml").write_text("max_cores: 64\nmax_memory: 64GiB\n")
    monkeypatch.setenv("RECAST_LIMITS", str(tmp_path / "limits.yaml"))
    edit(toy / "templates" / "square.yaml", lambda d: d["environment"]["resources"].update(cores=64, memory="64GiB"))
    resources = load_analysis(toy).templates["square"].resources
    assert (resources.cores, resources.memory_bytes) == (64, 64 * 2**30)


def test_output_limit_is_parsed_with_a_default(toy):
    edit(toy / "templates" / "square.yaml", lambda d: d["environment"]["resources"].update(output="300MiB"))
    analysis = load_analysis(toy)
    assert analysis.templates["square"].resources.output_bytes == 300 * 2**20
    assert analysis.templates["total"].resources.output_bytes == limits.DEFAULT_OUTPUT_BYTES


# -- environment variables --------------------------------------------------------------


def test_environment_values_with_nul_are_refused(toy):
    (toy / "templates" / "square.yaml").write_text(
        (toy / "templates" / "square.yaml").read_text().replace("kind: image\n", 'kind: image\n  env: {A: "x\\0y"}\n'))
    refused(toy, "environment.env.A", "NUL character", "square.yaml")


def test_environment_names_that_yaml_made_numbers_are_refused(toy):
    # The schema's name pattern does not apply to keys that are not strings.
    edit(toy / "templates" / "square.yaml", lambda d: d["environment"].update(env={1: "x"}))
    analysis, problems = check(toy)
    assert analysis is None
    assert [p for p in problems if p[0].endswith("square.yaml") and p[1].startswith("environment.env")
            and "1" in p[2]], problems


@pytest.mark.parametrize("name", ["A=B", "A\0B", "lower"])
def test_environment_names_must_be_variable_names(toy, name):
    edit(toy / "templates" / "square.yaml", lambda d: d["environment"].update(env={name: "x"}))
    refused(toy, "environment.env", "does not have the expected form", "square.yaml")


# -- 10. the image lock pins image IDs -------------------------------------------------------


def write_lock(entry: Path, images_: dict | list, **top) -> None:
    lock = {"analysis": "toy", "version": "1.0.0", "images": images_, **top}
    (entry / images.LOCK_FILE).write_text(json.dumps(lock))


def test_a_tag_in_the_lock_is_refused_not_run(toy):
    write_lock(toy, {"toy": {"tag": "recast/toy:1.0.0", "id": "recast/toy:1.0.0"}})
    analysis = load_analysis(toy)
    with pytest.raises(RecastError) as err:
        images.resolve(analysis, "toy")
    message = str(err.value)
    assert "images.lock.json: images.toy.id is 'recast/toy:1.0.0', not an image ID" in message
    assert f"run `recast images build toy --catalog {toy.parent}`" in message  # the command as it must be typed
    # Rebuilding is what the message asks for, so reading the lock for a build still works.
    assert images.read_lock(analysis)["images"]["toy"]["id"] == "recast/toy:1.0.0"


@pytest.mark.parametrize("bad_id", ["sha256:" + "0" * 63, "sha256:" + "G" * 64, None, 42, "sha256:" + "a" * 64 + "\n"])
def test_anything_but_an_image_id_in_the_lock_is_refused(toy, bad_id):
    write_lock(toy, {"toy": {"tag": "recast/toy:1.0.0", "id": bad_id}})
    with pytest.raises(RecastError, match=r"not an image ID \(sha256: and 64 hex digits\)"):
        images.resolve(load_analysis(toy), "toy")


@pytest.mark.parametrize("lock", ["[]", '{"analysis": "toy", "version": "1.0.0", "images": []}',
                                  '{"analysis": "toy", "version": "1.0.0", "images": {"toy": "sha256:x"}}'])
def test_a_tampered_lock_is_an_error_not_a_silent_rebuild(toy, lock):
    (toy / images.LOCK_FILE).write_text(lock)
    with pytest.raises(RecastError, match=r"images\.lock\.json: .*delete (it|the lock) and run `recast images build toy --catalog \S+`"):
        images.resolve(load_analysis(toy), "toy")


def test_a_pinned_id_resolves(toy):
    pinned = "sha256:" + "ab" * 32
    write_lock(toy, {"toy": {"tag": "recast/toy:1.0.0", "id": pinned}})
    assert images.resolve(load_analysis(toy), "toy").id == pinned
    write_lock(toy, {"toy": {"tag": "recast/toy:0.9", "id": pinned}})
    assert images.resolve(load_analysis(toy), "toy").id is None, "built for another tag: not this spec's image"
