#!/usr/bin/env python
"""`make demo`: use the shipped found model (load, translate, score), then find masks for a few minutes.

python scripts/demo.py [--train_steps 300] [--data_dir ../shared/data/multi30k]
"""

from hf_supermask.demo import main


if __name__ == "__main__":
    main()
