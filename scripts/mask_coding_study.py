#!/usr/bin/env python
"""How far below one bit per weight found masks code losslessly (see `experiments/mask_coding_study.py`):

python scripts/mask_coding_study.py FOLDER [FOLDER ...] [--output_json FILE]
"""

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)

from experiments.mask_coding_study import main


if __name__ == "__main__":
    main()
