"""Model card templates, installed as the package data of `hf_supermask.model_cards`."""
