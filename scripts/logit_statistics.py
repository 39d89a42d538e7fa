#!/usr/bin/env python
"""Output-layer statistics (gold-token margin, hidden and embedding norms) of translation models on validation pairs.

    python scripts/logit_statistics.py outputs/bleu_study/dense outputs/bleu_study/supermask
"""

from hf_supermask.study import logit_statistics_main


if __name__ == "__main__":
    logit_statistics_main()
