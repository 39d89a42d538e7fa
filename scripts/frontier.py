#!/usr/bin/env python
"""The compression frontier: test BLEU against stored bits per weight (see `experiments/frontier.py`):

    python scripts/frontier.py references --dense_dir outputs/round4/dense \
        --output_json benchmarks/frontier/dense_references.json
"""

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)

from experiments.frontier import main


if __name__ == "__main__":
    main()
