#!/usr/bin/env python
"""Four translation directions over one random network (long; resumable). See experiments/directions.py.

python scripts/directions_study.py --directions en-de,de-en --threads 1 &
python scripts/directions_study.py --directions en-fr,en-cs --threads 1 &
wait
python scripts/directions_study.py --report_only   # the table, the overlap figure, non-target combinations
"""

import _checkout  # noqa: F401  (experiments/ is beside the package, not installed)

from experiments.directions import main


if __name__ == "__main__":
    main()
