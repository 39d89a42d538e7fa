#!/usr/bin/env python
"""The BLEU study on Multi30k en->de (long; resumable row by row). See hf_supermask/study.py and the README.

    python scripts/bleu_study.py --rows dense,supermask_fixed_embedding --threads 1 &
    python scripts/bleu_study.py --rows supermask --threads 1 &
"""

from hf_supermask.study import main


if __name__ == "__main__":
    main()
