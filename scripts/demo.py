#!/usr/bin/env python
"""`make demo`: use the shipped found model (load, translate, score), then find masks for a few minutes.

python scripts/demo.py [--train_steps 300] [--data_dir ../shared/data/multi30k]
"""

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)

from experiments.demo import main


if __name__ == "__main__":
    main()
