# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""The experiments behind the figures in README.md and docs/: the BLEU study, the directions study, the
benchmarks, the analyses, and the demo.

They sit beside the library as transformers' `examples/` sit beside `src/`: they import `hf_supermask` like any user
would, they are not installed with it, and they run from a checkout through the thin wrappers in `scripts/`
(`python scripts/bleu_study.py ...`). Results are committed under `benchmarks/`.
"""
