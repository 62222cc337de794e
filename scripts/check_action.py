#!/usr/bin/env python3
"""Checks a composite action.yml the way actionlint cannot (it checks workflows, and the
inputs and outputs they use from `uses: ./`, but not the action's own inside):

- `runs.using` is `composite`, every `run` step names its `shell`, and every script parses
  (`bash -n`);
- every `${{ inputs.X }}` names a declared input, every `steps.ID.outputs.Y` a step `ID`
  that exists (before the reference, when a step refers to it);
- every output gantry's step exposes is one gantry writes (`printer.output("KEY", ...)` in
  SRC), and every output of another step is one its script writes (`KEY=` into GITHUB_OUTPUT);
- no `run` script holds `${{ ... }}`: inputs reach scripts through `env`, never by text
  substitution (script injection).

    check_action.py ACTION_YML SRC_DIR       exit 0 when clean, 1 with one line per problem
"""

import pathlib
import re
import subprocess
import sys

import yaml

EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)
INPUT = re.compile(r"\binputs\.([A-Za-z0-9_-]+)")
STEP_OUTPUT = re.compile(r"\bsteps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)")
GANTRY_OUTPUT = re.compile(r"\.output\(\s*\"([a-z0-9-]+)\"")


def expressions(value):
    """Every `${{ }}` body in a nested YAML value."""
    if isinstance(value, str):
        return EXPR.findall(value)
    if isinstance(value, dict):
        return [e for v in value.values() for e in expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in expressions(v)]
    return []


def main(action_path, src_dir):
    action = yaml.safe_load(pathlib.Path(action_path).read_text())
    problems = []
    inputs = set((action.get("inputs") or {}).keys())
    runs = action.get("runs") or {}
    if runs.get("using") != "composite":
        problems.append(f"runs.using is {runs.get('using')!r}, expected 'composite'")
    steps = runs.get("steps") or []
    ids = [s.get("id") for s in steps]
    gantry_keys = set()
    for rs in pathlib.Path(src_dir).rglob("*.rs"):
        gantry_keys.update(GANTRY_OUTPUT.findall(rs.read_text()))
    written = {}
    for s in steps:
        if s.get("id") and "run" in s:
            written[s["id"]] = set(re.findall(r"([A-Za-z0-9_-]+)=", s["run"]))

    def check_refs(where, value, before):
        for expr in expressions(value):
            for name in INPUT.findall(expr):
                if name not in inputs:
                    problems.append(f"{where}: inputs.{name} is not a declared input")
            for step, key in STEP_OUTPUT.findall(expr):
                if step not in before:
                    problems.append(f"{where}: steps.{step} is not a step before it")
                elif step == "gantry" or (step in ids and "uses" not in steps[ids.index(step)] and step not in written):
                    if key not in gantry_keys:
                        problems.append(f"{where}: steps.{step}.outputs.{key} is not an output gantry writes")
                elif step in written and key not in written[step]:
                    problems.append(f"{where}: step {step} writes no output {key}")

    for i, s in enumerate(steps):
        where = f"step {i + 1} ({s.get('name') or s.get('id') or s.get('uses')})"
        if "run" in s:
            if "shell" not in s:
                problems.append(f"{where}: a run step needs `shell`")
            if "${{" in s["run"]:
                problems.append(f"{where}: `${{{{ }}}}` inside `run`: pass it through `env` instead")
            check = subprocess.run(["bash", "-n"], input=s["run"], text=True, capture_output=True)
            if check.returncode != 0:
                problems.append(f"{where}: bash -n: {check.stderr.strip()}")
        elif "uses" not in s:
            problems.append(f"{where}: neither `run` nor `uses`")
        check_refs(where, {k: v for k, v in s.items() if k != "run"}, set(ids[:i]))
    for name, out in (action.get("outputs") or {}).items():
        if "value" not in out:
            problems.append(f"outputs.{name}: a composite action's output needs `value`")
        check_refs(f"outputs.{name}", out, set(ids))
    for name, spec in (action.get("inputs") or {}).items():
        check_refs(f"inputs.{name}", spec, set())
        if "description" not in spec:
            problems.append(f"inputs.{name}: no description")
    for p in problems:
        print(f"{action_path}: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
