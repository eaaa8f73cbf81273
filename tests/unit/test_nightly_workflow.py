""".github/workflows/nightly.yml cannot run on these machines, so it is checked here instead.

Three layers: the GitHub workflow JSON schema (SchemaStore's, vendored by the check-jsonschema package, offline);
the structure issue 7 asks for (triggers, OpenWatcom pin, builds, audits, suites, Windows 98 gate, artifacts,
history); and consistency with this checkout (every command line the workflow runs is accepted by the real
llama98-harness parser and the pytest plugin's options, every repository path it names exists, every run script
passes shellcheck as actionlint would run it).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import build_parser
from harness.core.paths import project_root
from harness.port.build import TARGETS, ToolchainMissing, compile_flags

WORKFLOW = project_root() / ".github" / "workflows" / "nightly.yml"
LOCALALLOC_FIX = date(2024, 1, 1)  # open-watcom-v2 #852 fixed by PR #1195 at the turn of 2023/2024
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def _as_json(workflow: dict[Any, Any]) -> dict[str, Any]:
    """The workflow as GitHub reads it (YAML 1.2: `on` is a string key), for the JSON schema."""
    return {("on" if key is True else key): value for key, value in workflow.items()}


def _triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    return workflow.get("on") or workflow[True]  # YAML 1.1 reads the bare key `on` as true


def _steps(workflow: dict[str, Any], job: str | None = None) -> list[dict[str, Any]]:
    jobs = [workflow["jobs"][job]] if job else list(workflow["jobs"].values())
    return [step for entry in jobs for step in entry["steps"]]


def _runs(workflow: dict[str, Any], job: str | None = None) -> str:
    return "\n".join(step.get("run", "") for step in _steps(workflow, job))


def _command_lines(workflow: dict[str, Any], program: str) -> list[list[str]]:
    """Every shell line (continuations joined) that runs `program`, split into words after it."""
    found = []
    for step in _steps(workflow):
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines():
            if program in line:
                words = shlex.split(EXPRESSION.sub("X", line.split(program, 1)[1]))
                found.append(words)
    return found


def _job_running(workflow: dict[str, Any], needle: str) -> str:
    matches = [name for name, job in workflow["jobs"].items()
               if any(needle in step.get("run", "") for step in job["steps"])]
    assert matches, f"no job runs {needle!r}"
    return matches[0]


def test_workflow_matches_the_github_schema() -> None:
    try:
        import jsonschema
        schema_text = (resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
                       / "github-workflows.json").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        pytest.skip("pip install check-jsonschema (vendors the GitHub workflow schema) to validate offline")
    schema = json.loads(schema_text)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(_as_json(yaml.safe_load(WORKFLOW.read_text()))),
                    key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def test_schema_check_rejects_a_broken_workflow(workflow: dict[str, Any]) -> None:
    """The schema layer can fail: a job without runs-on and a step with an unknown key are caught."""
    try:
        import jsonschema
        schema_text = (resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
                       / "github-workflows.json").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        pytest.skip("pip install check-jsonschema (vendors the GitHub workflow schema) to validate offline")
    broken = yaml.safe_load(WORKFLOW.read_text())
    del broken["jobs"]["unit"]["runs-on"]
    broken["jobs"]["unit"]["steps"][0]["uses_typo"] = "x"
    messages = [error.message for error in jsonschema.Draft7Validator(json.loads(schema_text))
                .iter_errors(_as_json(broken))]
    assert messages and "'on' is a required property" not in messages


def test_runs_nightly_and_on_demand(workflow: dict[str, Any]) -> None:
    triggers = _triggers(workflow)
    assert "workflow_dispatch" in triggers
    crons = [entry["cron"] for entry in triggers["schedule"]]
    assert crons and all(len(cron.split()) == 5 and cron.split()[2:] == ["*", "*", "*"] for cron in crons)
    assert set(triggers) <= {"schedule", "workflow_dispatch"}, "nightly only: .ci/run is the per-commit gate"


def test_every_job_is_bounded_and_on_ubuntu(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        assert job["runs-on"] == "ubuntu-latest", name
        assert 0 < job["timeout-minutes"] <= 90, name
        for need in [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", []):
            assert need in workflow["jobs"], f"{name} needs unknown job {need}"


def test_actions_are_pinned_to_versions(workflow: dict[str, Any]) -> None:
    for step in _steps(workflow):
        if "uses" in step:
            _action, _, ref = step["uses"].partition("@")
            assert ref and ref not in ("main", "master", "HEAD"), step["uses"]


def test_step_output_references_exist(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        ids = {step["id"] for step in job["steps"] if "id" in step}
        text = yaml.safe_dump(job)
        for step_id in re.findall(r"steps\.([A-Za-z0-9_-]+)\.outputs", text):
            assert step_id in ids, f"{name}: steps.{step_id} is not a step id of this job"


def test_setup_follows_the_readme_in_every_testing_job(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        runs = "\n".join(step.get("run", "") for step in job["steps"])
        if "pytest" in runs or "llama98-harness" in runs:
            assert "bash .ci/setup" in runs, f"{name} runs the harness without the README setup"
            assert runs.index("bash .ci/setup") < runs.index(".venv/bin/"), name


def _setup_watcom_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith("open-watcom/setup-watcom@")]


def test_openwatcom_is_pinned_after_the_win9x_localalloc_fix(workflow: dict[str, Any]) -> None:
    steps = [step for job in workflow["jobs"].values() for step in _setup_watcom_steps(job)]
    assert steps
    for step in steps:  # one pinned snapshot everywhere
        assert str(step["with"]["version"]) == "2.0"
        assert step["with"]["tag"] == "${{ env.OPENWATCOM_TAG }}", "every setup-watcom step takes the one pinned tag"
    tag = workflow["env"]["OPENWATCOM_TAG"]
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})-Build", tag)
    assert match, f"OpenWatcom must be pinned to a dated snapshot tag, not {tag!r}"
    assert date(*map(int, match.groups())) >= LOCALALLOC_FIX
    assert "#852" in WORKFLOW.read_text() and "LocalAlloc" in WORKFLOW.read_text(), "say why the pin"


def _harness_builds(job: dict[str, Any]) -> list[tuple[int, list[str]]]:
    """(step index, words after `llama98-harness`) of every `llama98-harness build` a job runs."""
    found = []
    for index, step in enumerate(job["steps"]):
        for words in _command_lines({"jobs": {"j": {"steps": [step]}}}, ".venv/bin/llama98-harness"):
            if words[:1] == ["build"]:
                found.append((index, words))
    return found


def _option(words: list[str], name: str, default: str) -> str:
    return words[words.index(name) + 1] if name in words else default


def test_openwatcom_builds_are_the_local_build_from_the_makefiles(workflow: dict[str, Any]) -> None:
    """One source of the OpenWatcom flags: the nightly runs `llama98-harness build --target watcom-*` (wmake with
    ports/<program>/watcom.mk, as every local build and test does) after setup-watcom set WATCOM; no step runs
    the compiler, linker or wmake with flags of its own."""
    for tool in ("wmake", "wcl386", "wcc386", "owcc", "wlink"):
        assert not _command_lines(workflow, tool), f"the workflow runs {tool} itself: use llama98-harness build"
    job = workflow["jobs"]["build-audit"]
    setup = job["steps"].index(_setup_watcom_steps(job)[0])
    built = {}
    for index, words in _harness_builds(job):
        target = _option(words, "--target", "native")
        if TARGETS[target].toolchain == "openwatcom":
            assert index > setup, f"{target} is built before setup-watcom sets WATCOM"
            built[(_option(words, "--program", "llama98"), target)] = _option(words, "-o", "")
    assert built == {("llama98", "watcom-win32"): "dist/watcom/llama98.exe",
                     ("agent98", "watcom-win32"): "dist/watcom/agent98.exe",
                     ("llama98", "watcom-tiny686"): "dist/watcom/linux/llama98"}
    for program, target in built:
        spec = TARGETS[target]
        assert spec.makefile == "watcom.mk" and (project_root() / "ports" / program / spec.makefile).is_file()
        assert f"ports/{program}/watcom.mk" in WORKFLOW.read_text()
    assert "LLAMA98_OPENWATCOM_SOURCE" not in WORKFLOW.read_text(), "the nightly uses setup-watcom's WATCOM"


def test_the_nightly_flags_are_the_local_flags() -> None:
    """What the nightly compiles with is what watcom.mk says, read the way a build reads it (compile_flags runs
    wmake's print-cflags): Pentium II code, warnings as errors, ANSI C89 files, a Win32 console program for
    Windows 4.0."""
    try:
        windows = compile_flags("watcom-win32")
    except ToolchainMissing as error:
        pytest.skip(str(error))
    for flag in ("-bt=nt", "-6r", "-fp6", "-ox", "-s", "-wx", "-we", "-za", "system nt runtime console=4.0"):
        assert flag in windows, flag


def test_every_job_running_the_suite_installs_openwatcom(workflow: dict[str, Any]) -> None:
    """tests/port/test_watcom*.py and tests/e2e/test_watcom_tiny686.py skip without OpenWatcom: every job that runs
    pytest sets it up first, so nothing skips at night."""
    for name, job in workflow["jobs"].items():
        runs = [index for index, step in enumerate(job["steps"]) if "-m pytest" in step.get("run", "")]
        if not runs:
            continue
        setups = [job["steps"].index(step) for step in _setup_watcom_steps(job)]
        assert setups and min(setups) < min(runs), f"{name} runs the suite without OpenWatcom"


def test_every_shipped_binary_is_audited_and_failures_fail(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["build-audit"]
    audits = _command_lines({"jobs": {"build-audit": job}}, "llama98-harness audit")
    audited = {words[0]: words[1:] for words in audits}
    for exe in ("dist/watcom/llama98.exe", "dist/watcom/agent98.exe", "dist/mingw/llama98.exe",
                "dist/mingw/agent98.exe"):
        assert exe in audited and audited[exe][-2:] == ["--os", "win98"] and "pentium2" in audited[exe], exe
    for elf in ("dist/linux/llama98", "dist/watcom/linux/llama98"):
        assert elf in audited and "pentium2" in audited[elf], elf
    for step in job["steps"]:
        if "audit" in step.get("run", ""):
            assert "continue-on-error" not in step and "|| true" not in step["run"], "audit findings must fail"
    names = [step.get("name", "") for step in job["steps"]]
    first_audit = next(i for i, n in enumerate(names) if n.startswith("Audit"))
    assert all(i < first_audit for i, n in enumerate(names) if n.startswith("Build"))


def test_cli_lines_are_accepted_by_the_real_parser(workflow: dict[str, Any]) -> None:
    parser = build_parser()
    lines = _command_lines(workflow, ".venv/bin/llama98-harness")
    assert lines, "the workflow runs no llama98-harness command"
    for words in lines:
        parser.parse_args(words)  # argparse exits (SystemExit) on anything the CLI would reject


def test_bench_command_exists(workflow: dict[str, Any]) -> None:
    assert any(words[:1] == ["bench"] and "--json" in words
               for words in _command_lines(workflow, ".venv/bin/llama98-harness"))
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert "bench" in commands


def test_pytest_options_exist_in_the_plugin(workflow: dict[str, Any]) -> None:
    plugin = (project_root() / "harness" / "pytest_plugin" / "options.py").read_text()
    known = set(re.findall(r'addoption\(\s*"(--[a-z0-9-]+)"', plugin)) | {
        "--junitxml", "--durations", "-m", "-n"}
    for words in _command_lines(workflow, "-m pytest"):
        for word in words:
            if word.startswith("-"):
                option = word.split("=", 1)[0]
                assert option in known, f"pytest option {option} is not defined"


def test_suites_and_lanes(workflow: dict[str, Any]) -> None:
    unit = _job_running(workflow, "--junitxml=artifacts/junit-unit.xml")
    assert "--vm" not in _runs(workflow, unit)
    wine = _job_running(workflow, "-m wine")
    wine_env = next(step["env"] for step in _steps(workflow, wine) if "-m wine" in step.get("run", ""))
    assert any(value.endswith("dist/watcom/llama98.exe") for value in wine_env.values())
    assert any(value.endswith("dist/watcom/agent98.exe") for value in wine_env.values())
    e2e = _command_lines(workflow, "pytest tests/e2e")
    assert e2e and "--vm" in e2e[0] and e2e[0][e2e[0].index("--vm") + 1] == "tiny686"
    assert e2e[0][e2e[0].index("--llama98-binary") + 1] == "dist/linux/llama98"
    for job in (wine, _job_running(workflow, "pytest tests/e2e")):
        assert "build-audit" in workflow["jobs"][job]["needs"], "test the audited binaries"


def test_windows98_job_runs_only_with_an_image(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["win98-vm"]
    text = yaml.safe_dump(job)
    assert "secrets.WIN98_IMAGE_URL" in text and "actions/cache/restore@" in text
    decide = next(i for i, step in enumerate(job["steps"]) if step.get("id") == "image")
    assert "::notice" in job["steps"][decide]["run"]
    for step in job["steps"][decide + 1:]:
        assert "steps.image.outputs.available == 'true'" in step.get("if", ""), step.get("name")
    runs = _runs({"jobs": {"w": job}})
    assert re.search(r"pytest --vm \S+", runs)
    assert "sha256sum --check" in runs


def test_artifacts_are_uploaded_even_on_failure(workflow: dict[str, Any]) -> None:
    uploads: dict[str, list[dict[str, Any]]] = {}
    for name, job in workflow["jobs"].items():
        uploads[name] = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    for name in ("unit", "wine", "tiny686-e2e", "win98-vm"):
        assert uploads[name], f"{name} uploads nothing"
        assert any("always()" in step.get("if", "") for step in uploads[name]), name
    runs = _runs(workflow)
    for evidence in ("junit-unit.xml", "junit-wine.xml", "junit-e2e.xml", "junit-win98.xml", "--vm-artifacts",
                     "bench.json"):
        assert evidence in runs, evidence


def test_bench_history_accumulates_on_a_branch(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["bench-history"]
    assert job["permissions"] == {"contents": "write"}
    assert job["needs"] == "tiny686-e2e"
    runs = _runs({"jobs": {"h": job}})
    assert "history.jsonl" in runs and '.open("a")' in runs
    assert "git -C results push origin bench-results" in runs


def test_repository_paths_named_by_the_workflow_exist() -> None:
    text = WORKFLOW.read_text()
    for path in (".ci/setup", "ports/llama98/watcom.mk", "fixtures/manifest.yaml", "tests/e2e", "vm/tiny686"):
        assert path in text and (project_root() / path).exists(), path


def test_run_scripts_pass_shellcheck(workflow: dict[str, Any], tmp_path: Path) -> None:
    """What actionlint does for `run:` blocks: shellcheck them as bash, with ${{ }} expressions replaced."""
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    problems = []
    for index, step in enumerate(_steps(workflow)):
        if "run" not in step:
            continue
        script = tmp_path / f"step{index}.sh"
        script.write_text("#!/bin/bash\nset -e\n" + EXPRESSION.sub("GHA_EXPRESSION", step["run"]))
        result = subprocess.run([shellcheck, "--shell=bash", "--severity=warning", str(script)],
                                capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            problems.append(f"{step.get('name')}: {result.stdout.strip()}")
    assert not problems, "\n\n".join(problems)
