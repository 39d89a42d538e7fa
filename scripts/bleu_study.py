#!/usr/bin/env python
"""The BLEU study on Multi30k en->de (long; resumable row by row). See experiments/bleu_study.py and the README.

    python scripts/bleu_study.py --rows dense --threads 1 --lr_candidates "dense=5e-4,1e-3" --probe_steps 150 &
    python scripts/bleu_study.py --rows supermask --threads 1 --lr_candidates "supermask=5e-4,1e-3,2e-3,4e-3" \
        --probe_steps 150 &
    wait  # the fixed-embedding row needs the dense row's folder
    python scripts/bleu_study.py --rows supermask_fixed_embedding --threads 1 \
        --lr_candidates "supermask_fixed_embedding=2e-3"
"""

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)

from experiments.bleu_study import main


if __name__ == "__main__":
    main()
