#!/usr/bin/env python
"""Train translation supermasks with Seq2SeqTrainer (flags as in transformers' run_translation.py).

    python scripts/train_translation.py --output_dir outputs/en-de --do_train --do_eval --do_predict \
        --predict_with_generate --config_overrides "d_model=256,encoder_layers=3,decoder_layers=3"

Also takes one JSON file of arguments, then flags that override it (`scripts/supermask_en_de.json --max_steps 20`).
`--model_type marian` trains a dense MarianMTModel of the same shape.
Multi-process: `accelerate launch` or `torchrun --nproc_per_node N` in front of the same command.
The same as `python -m hf_supermask train ...`: mistakes are reported as `error: ...`, without a traceback;
`--help` shows the flags most runs need, `--help-all` every flag.
"""

from hf_supermask.cli import train_main


if __name__ == "__main__":
    train_main(prog="train_translation.py")
