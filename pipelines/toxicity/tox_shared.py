"""Toxicity: helpers the toxicity scripts import. Declares no step of its own.

Adds ``pipelines/_common`` to ``sys.path`` and runs a script's declared refs through the shared
stand-in logic; the environment variables a runner sets take precedence over the declaration.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

ASSAYS = ("NR-AR", "NR-AhR", "SR-ARE", "SR-p53")


def run(script: str, declared: Mapping[str, object]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_common"))
    from artifacts import run_step

    for key, value in dict(declared.get("environment") or {}).items():
        os.environ.setdefault(str(key), str(value))
    print(f"[{Path(script).stem}] assays: {', '.join(ASSAYS)}", flush=True)
    return run_step(script, declared.get("inputs", ()), declared.get("outputs", ()))
