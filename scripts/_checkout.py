"""Puts the checkout's root on `sys.path`, so that the research scripts here can import `experiments/` (which sits
beside the package and is not installed). `import _checkout` first in such a script."""

import sys
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
