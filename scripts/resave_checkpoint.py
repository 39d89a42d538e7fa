#!/usr/bin/env python
"""Re-save a checkpoint folder in place with the current identity (forward_config_sha256, tokenizer_sha256, direction,
remote code), from its unchanged masks:

    python scripts/resave_checkpoint.py FOLDER [--source_lang en --target_lang de] [--mask_encoding initial_xor_lzma]
"""

from hf_supermask.resave import main


if __name__ == "__main__":
    main()
