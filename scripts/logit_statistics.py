#!/usr/bin/env python
"""Output-layer statistics (gold-token margin, hidden and embedding norms) of translation models on validation pairs.

python scripts/logit_statistics.py outputs/bleu_study/dense outputs/bleu_study/supermask
"""

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)

from experiments.logit_statistics import main


if __name__ == "__main__":
    main()
