"""`recast validate`: schema and cross-reference checks, each naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from recast import limits
from recast.cli import cli
from recast.errors import SpecError
from recast.validate import check, load_analysis

from conftest import ROOT


def edit(path: Path, change) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_shipped_catalog_and_toy_are_valid(toy):
    result = CliRunner().invoke(cli, ["validate", str(ROOT / "catalog"), str(toy)])
    assert result.exit_code == 0, result.output
    assert "invalid" not in result.output
    analysis = load_analysis(toy)
    assert [s.name for s in analysis.stages] == ["square", "total"]
    assert analysis.stages[0].scatter == "points"
    assert analysis.templates["square"].resources.memory_bytes == 256 * 2**20
    assert analysis.templates["square"].resources.output_bytes == limits.DEFAULT_OUTPUT_BYTES


def _set_stage_template(doc):
    doc["workflow"]["stages"][1]["template"] = "nosuch"


def _cycle(doc):
    doc["workflow"]["stages"][0]["bind"]["label"] = "$steps.total.result"


def _scatter_scalar(doc):
    doc["workflow"]["stages"][0]["scatter"]["over"] = "$request.offset"


def _missing_template_file(doc):
    doc["templates"]["square"] = "templates/gone.yaml"


def _bad_version(doc):
    doc["version"] = "one"


def _typo_field(doc):
    doc["workflow"]["stages"][0]["scatterr"] = doc["workflow"]["stages"][0].pop("scatter")


def _unknown_output(doc):
    doc["workflow"]["stages"][1]["bind"]["squares"] = "$steps.square.nothing"


def _entry_escape(doc):
    doc["workflow"]["stages"][1]["bind"]["script"] = "$entry/../../../etc/passwd"


def _item_outside_scatter(doc):
    doc["workflow"]["stages"][1]["bind"]["squares"] = "$item.x"


def _unbound(doc):
    del doc["workflow"]["stages"][0]["bind"]["x"]


def _undeclared_request(doc):
    doc["workflow"]["stages"][0]["bind"]["offset"] = "$request.shift"


def _unused_request(doc):
    doc["request"]["parameters"]["unused"] = {"type": "string", "default": "x"}


def _bad_result_ref(doc):
    doc["results"]["values"]["total"] = "$steps.total.result"


def _missing_example(doc):
    doc["examples"]["default"]["request"] = "requests/none.yaml"


def _literal_host_file(doc):
    doc["workflow"]["stages"][1]["bind"]["script"] = "/etc/passwd"


@pytest.mark.parametrize(
    "change, field, fragment",
    [
        (_set_stage_template, "workflow.stages[1].template", "unknown template 'nosuch'"),
        (_cycle, "workflow.stages", "cycle"),
        (_scatter_scalar, "workflow.stages[0].scatter.over", "needs a list"),
        (_missing_template_file, "templates.square", "not found"),
        (_bad_version, "version", "expected form"),
        (_typo_field, "workflow.stages[0]", "scatterr"),
        (_unknown_output, "workflow.stages[1].bind.squares", "no output 'nothing'"),
        (_entry_escape, "workflow.stages[1].bind.script", "leaves the catalog entry"),
        (_item_outside_scatter, "workflow.stages[1].bind.squares", "only defined in a stage with a scatter"),
        (_unbound, "workflow.stages[0].bind", "'x' is not bound"),
        (_undeclared_request, "workflow.stages[0].bind.offset", "'shift' is not declared"),
        (_unused_request, "request.parameters.unused", "never used"),
        (_bad_result_ref, "results.values.total", "no output value 'result'"),
        (_missing_example, "examples.default.request", "not found"),
        (_literal_host_file, "workflow.stages[1].bind.script", "a literal file path is not allowed; use $entry/PATH"),
    ],
)
def test_broken_analysis_spec_names_file_and_field(toy, change, field, fragment):
    edit(toy / "analysis.yaml", change)
    analysis, problems = check(toy)
    assert analysis is None
    matching = [p for p in problems if p[1] == field and fragment in p[2]]
    assert matching, problems
    assert matching[0][0].endswith("analysis.yaml")


@pytest.mark.parametrize(
    "change, field, fragment",
    [
        (lambda d: d["process"]["argv"].append("{nope}"), "process.argv[12]", "{nope} is not a declared parameter"),
        (lambda d: d["parameters"].update(extra={"type": "string"}), "parameters.extra", "not used"),
        (lambda d: d["environment"].update(image="other"), "environment.image", "not among the analysis's images"),
        (lambda d: d["process"]["argv"].append("{x"), "process.argv[12]", "unbalanced"),
        (lambda d: d["outputs"]["values"]["y"].update(file="missing"), "outputs.values.y.file", "not a declared output"),
        (lambda d: d["environment"]["resources"].update(memory="lots"), "environment.resources.memory", "expected form"),
        (lambda d: d["process"].update(kind="script"), "process.kind", "expected 'command'"),
        (lambda d: d["environment"]["resources"].update(memory="0B"), "environment.resources.memory", "outside the allowed range"),
    ],
)
def test_broken_template_names_template_file_and_field(toy, change, field, fragment):
    edit(toy / "templates" / "square.yaml", change)
    analysis, problems = check(toy)
    assert analysis is None
    matching = [p for p in problems if p[1] == field and fragment in p[2]]
    assert matching, problems
    assert matching[0][0].endswith("square.yaml")


def test_malformed_yaml_names_line(toy):
    (toy / "analysis.yaml").write_text("schema: recast/analysis/1.0.0\nid: [toy\n")
    with pytest.raises(SpecError) as err:
        load_analysis(toy)
    assert "analysis.yaml" in str(err.value) and "line" in str(err.value) and "malformed YAML" in str(err.value)


def test_cli_validate_reports_and_fails(toy):
    edit(toy / "analysis.yaml", _set_stage_template)
    result = CliRunner().invoke(cli, ["validate", str(toy)])
    assert result.exit_code == 1
    assert "invalid" in result.output
    assert "analysis.yaml: workflow.stages[1].template: unknown template 'nosuch'" in result.output
    as_json = CliRunner().invoke(cli, ["validate", "--json", str(toy)])
    assert as_json.exit_code == 1
    assert '"valid": false' in as_json.output


def test_invalid_example_request_is_reported(toy):
    (toy / "requests" / "default.yaml").write_text("parameters: {points: [{x: one, label: a, events: data/a.txt}]}\n")
    result = CliRunner().invoke(cli, ["validate", str(toy)])
    assert result.exit_code == 1
    assert "parameters.points[0].x" in result.output


def test_each_document_is_checked_against_the_schema_version_it_declares(toy):
    """1.0.0 entries keep working; a 1.0.0 document with a 1.1.0 form is told which version to declare."""
    assert yaml.safe_load((ROOT / "catalog/wh1lbb/analysis.yaml").read_text())["schema"] == "recast/analysis/1.0.0"
    assert load_analysis(ROOT / "catalog/wh1lbb").id == "wh1lbb"

    def old_with_script(doc):
        doc["schema"] = "recast/template/1.0.0"
        doc["process"] = {"kind": "script", "interpreter": "sh",
                          "script": "python3 {script} --x {x} --label {label} --events {events} --offset {offset} "
                                    "--out {outdir}/square.json"}

    square = toy / "templates" / "square.yaml"
    edit(square, old_with_script)
    with pytest.raises(SpecError) as raised:
        load_analysis(toy)
    lines = str(raised.value).splitlines()
    assert any("templates/square.yaml" in line and "schema" in line and "new in 1.1.0" in line
               and "declare schema: recast/template/1.1.0" in line for line in lines), lines
    assert any("process" in line for line in lines), lines  # and still the field itself

    edit(square, lambda doc: doc.update(schema="recast/template/1.1.0"))
    assert load_analysis(toy).templates["square"].process["kind"] == "script"

    edit(square, lambda doc: doc.update(schema="recast/template/7.0.0"))
    with pytest.raises(SpecError, match=r"'recast/template/7.0.0' is not a schema recast reads here: "
                                        r"expected one of recast/template/1.0.0, recast/template/1.1.0"):
        load_analysis(toy)

    # A 1.0.0 workflow with a 1.1.0 scatter form: the analysis document is the one told.
    edit(square, lambda doc: doc.update(schema="recast/template/1.1.0"))

    def old_zip(doc):
        doc["schema"] = "recast/analysis/1.0.0"
        doc["workflow"]["stages"][0]["scatter"] = {"zip": {"x": "$request.points"}}

    edit(toy / "analysis.yaml", old_zip)
    with pytest.raises(SpecError, match=r"analysis.yaml: schema: recast/analysis/1.0.0 does not have the forms"):
        load_analysis(toy)
