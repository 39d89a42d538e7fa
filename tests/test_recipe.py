"""One recipe: the defaults of `SupermaskConfig` and of the training script are the BLEU study's best
random-embedding row (chosen on validation), so that a user who builds a model from the defaults gets it."""

from __future__ import annotations

import json

from conftest import REPO_ROOT

from hf_supermask import SupermaskConfig
from hf_supermask.training import parse_args


BEST_ROW = REPO_ROOT / "benchmarks" / "bleu_study" / "round3" / "supermask_signed_constant.json"


def test_config_defaults_are_the_best_rows_recipe():
    row = json.loads(BEST_ROW.read_text())
    config = SupermaskConfig(
        **{k: int(v) for k, v in row["recipe"].items() if k in SupermaskConfig.__dataclass_fields__ and v.isdigit()}
    )
    for key, value in row["recipe"].items():
        assert str(getattr(config, key)).lower() == value.lower() or float(getattr(config, key)) == float(value), key


def test_training_script_defaults_are_the_best_rows_training_settings(tmp_path):
    row = json.loads(BEST_ROW.read_text())
    _, _, _, training_args = parse_args(["--output_dir", str(tmp_path)])
    assert training_args.learning_rate == row["learning_rate"]
    assert training_args.per_device_train_batch_size == row["batch_size"]
    assert training_args.warmup_steps == 100 and training_args.lr_scheduler_type == "linear"
