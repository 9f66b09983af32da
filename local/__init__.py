"""Local runner and vendor simulators: development and demo only, never deployed."""

import sys
from pathlib import Path

# The library lives in the Lambda layer folder; make it importable for the CLI and the tests.
_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "common")
if _LAYER not in sys.path:
    sys.path.insert(0, _LAYER)
