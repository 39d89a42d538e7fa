#!/usr/bin/env python
"""Where a supermask's training step spends the time a same-shape MarianMTModel's does not (cProfile, side by side).

    python scripts/profile_training_step.py --output_json benchmarks/training_step_profile.json

Run on a quiet machine. The logic is in `experiments.profile_training_step`.
"""

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)

from experiments.profile_training_step import main


if __name__ == "__main__":
    main()
