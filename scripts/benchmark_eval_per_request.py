#!/usr/bin/env python
"""What `model.eval()` before every request costs a supermask, against its dense export (see the module docstring).

    python scripts/benchmark_eval_per_request.py --requests 24

Run on a quiet machine.
"""

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)

from experiments.benchmark_eval_per_request import main


if __name__ == "__main__":
    main()
