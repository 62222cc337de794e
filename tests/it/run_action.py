#!/usr/bin/env python3
"""A minimal runner for a composite action.yml, for tests: runs its `run` steps in order as
the Actions runner does, so the action's wiring is exercised for real on this machine.

- `${{ }}` in `env`, `name`, `working-directory` and `with` is evaluated for the contexts the
  action uses: `inputs.X` (declared defaults, then the given values), `steps.ID.outputs.Y`,
  `github.action_path|action_ref|action_repository|token`, `runner.os|arch|temp`;
- every step gets its own `GITHUB_OUTPUT` file, read back afterwards as the runner reads it
  (`key=value` and `key<<DELIM` heredocs); `GITHUB_PATH` lines are prepended to PATH for the
  steps after;
- steps with `if:` are evaluated for the one form the action uses (`steps.ID.outputs.X == 'v'`);
  `uses:` steps (actions/cache) are skipped: there is no cache here, as on a cold runner;
- at the end, the action's outputs are printed as one JSON object on stdout.

    run_action.py ACTION_DIR INPUTS_JSON       (the process environment is the job's)
Exit status: the first failing step's, after printing its name on stderr.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def read_outputs(path):
    out, lines = {}, pathlib.Path(path).read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line:
            key, delim = line.split("<<", 1)
            value, i = [], i + 1
            while lines[i] != delim:
                value.append(lines[i])
                i += 1
            out[key] = "\n".join(value)
        elif "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
        i += 1
    return out


def main(action_dir, given):
    action_dir = pathlib.Path(action_dir).resolve()
    action = yaml.safe_load((action_dir / "action.yml").read_text())
    temp = tempfile.mkdtemp(prefix="runner-temp-")
    ctx = {
        "github.action_path": str(action_dir),
        "github.action_ref": os.environ.get("TEST_ACTION_REF", ""),
        "github.action_repository": os.environ.get("TEST_ACTION_REPOSITORY", ""),
        "github.token": "",
        "runner.os": "Linux",
        "runner.arch": "X64",
        "runner.temp": temp,
    }
    inputs = {}
    for name, spec in (action.get("inputs") or {}).items():
        inputs[name] = given.get(name, spec.get("default", ""))
    steps_out = {}

    def value(expr):
        if expr.startswith("inputs."):
            return inputs[expr[len("inputs."):]]
        m = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr)
        if m:
            return steps_out.get(m[1], {}).get(m[2], "")
        if expr in ctx:
            return ctx[expr]
        raise SystemExit(f"run_action.py: unsupported expression {expr!r}")

    def evaluate(text):
        return EXPR.sub(lambda m: str(value(m[1])), str(text))

    def condition(expr):
        m = re.fullmatch(r"(.+?)\s*==\s*'(.*)'", expr.strip())
        if not m:
            raise SystemExit(f"run_action.py: unsupported if {expr!r}")
        return str(value(m[1].strip())) == m[2]

    path_prefix = []
    for index, step in enumerate(action["runs"]["steps"]):
        name = evaluate(step.get("name", f"step {index + 1}"))
        if "if" in step and not condition(step["if"]):
            continue
        if "uses" in step:
            print(f"run_action.py: skipping {name} ({step['uses']})", file=sys.stderr)
            continue
        env = dict(os.environ)
        env.update({k: evaluate(v) for k, v in (step.get("env") or {}).items()})
        output = pathlib.Path(temp) / f"output-{index}"
        path_file = pathlib.Path(temp) / f"path-{index}"
        output.touch()
        path_file.touch()
        env.update({"GITHUB_OUTPUT": str(output), "GITHUB_PATH": str(path_file), "RUNNER_TEMP": temp,
                    "RUNNER_OS": ctx["runner.os"], "RUNNER_ARCH": ctx["runner.arch"]})
        env["PATH"] = os.pathsep.join(path_prefix + [env["PATH"]])
        cwd = evaluate(step.get("working-directory", "."))
        print(f"run_action.py: {name}", file=sys.stderr)
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                                env=env, cwd=cwd)
        if result.returncode != 0:
            print(f"run_action.py: step `{name}` failed with {result.returncode}", file=sys.stderr)
            return result.returncode
        if step.get("id"):
            steps_out[step["id"]] = read_outputs(output)
        path_prefix = [p for p in path_file.read_text().splitlines() if p] + path_prefix
    outputs = {k: evaluate(v["value"]) for k, v in (action.get("outputs") or {}).items()}
    print(json.dumps(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], json.loads(sys.argv[2])))
