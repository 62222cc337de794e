#!/usr/bin/env python3
"""Build step gantry runs before packaging: stamps the version into build_info.json.

DEMO_BROKEN=1 marks the build as failing its health check (the demo's bad release);
DEMO_FAIL_AFTER=N makes health fail N seconds after start; with DEMO_FAIL_ALL=1, every
request (not only /healthz) then answers 503, as a release that breaks for its users.
"""
import json
import os
from pathlib import Path

info = {"version": os.environ.get("GANTRY_VERSION", "unknown")}
if os.environ.get("DEMO_BROKEN") == "1":
    info["broken"] = True
if os.environ.get("DEMO_FAIL_AFTER"):
    info["fail_after"] = float(os.environ["DEMO_FAIL_AFTER"])
if os.environ.get("DEMO_FAIL_ALL") == "1":
    info["fail_all"] = True
out = Path(__file__).resolve().parent / "build_info.json"
out.write_text(json.dumps(info, sort_keys=True) + "\n")
