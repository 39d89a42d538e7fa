# Copyright 2026 The hf_supermask Authors. Licensed under the Apache License, Version 2.0.
"""Several mask sets over one random network (e.g. one per translation direction), like peft's adapters.

`MaskSetsMixin` is inherited by `SupermaskForConditionalGeneration`. Rules (`docs/mask_sets.md` has the user's view):

* Each set owns its scores `Parameter` per masked tensor, so its `.grad` and its optimizer state are its own. Only
  the active set's Parameters are registered in the model: `parameters()`, `state_dict()`, `save_pretrained` and an
  optimizer built from `model.parameters()` see the active set only, and an inactive set's Parameters have
  `requires_grad=False` (activating a set gives it the trainability the outgoing set had, tensor by tensor).
* An inactive set whose scores are a loaded mask's rebuild is held as its packed mask (one bit per weight), its
  Parameter emptied; a set trained or edited in this process is held whole. See
  `MaskedWeight.outgoing_mask_set_state`.
* Switching validates every tensor of the incoming set first and changes nothing if any is refused; it never
  leaves inference tensors behind (a server may switch under `torch.inference_mode()` and train later).
* Set names are plain names (letters, digits, `_`, `-`, `.`; not starting with `.` or `-`): `save_mask_sets` uses
  them as folder names.

Imports only masked_layers (never modeling_supermask: the model imports this file).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .masked_layers import MaskedWeight


DEFAULT_MASK_SET = "default"
_MASK_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_mask_set_name(name) -> str:
    """`name` if it is a plain name a mask set may have (it becomes a folder name in `save_mask_sets`)."""
    if not isinstance(name, str) or not _MASK_SET_NAME.fullmatch(name):
        raise ValueError(
            f"Invalid mask set name {name!r}: use 1 to 100 letters, digits, '_', '-' or '.', starting with a letter "
            "or a digit (e.g. 'en-de'). A set's name becomes its folder name in `save_mask_sets`, so paths, '..' and "
            "empty names are refused."
        )
    return name


class MaskSetsMixin:
    """Mask sets for a model with `masked_modules`, `random_weights`, `config` and `from_pretrained` (see the module
    docstring)."""

    masked_modules: dict[str, MaskedWeight]

    def _init_mask_sets(self) -> None:
        # The inactive sets, by name: {set: {module name: state}} (states from `outgoing_mask_set_state`, or
        # {"packed": mask} for a set `load_masks` added); the active one lives in the modules.
        self._active_masks = DEFAULT_MASK_SET
        self._inactive_mask_sets: dict[str, dict[str, dict[str, torch.Tensor]]] = {}

    @property
    def active_masks(self) -> str:
        """Name of the mask set the model computes with ("default" for the one it was created or loaded with)."""
        return self._active_masks

    @property
    def mask_sets(self) -> tuple[str, ...]:
        """Names of every mask set this model holds, the active one first."""
        return (self._active_masks, *self._inactive_mask_sets)

    def load_masks(self, source: str | os.PathLike, name: str, **kwargs) -> None:
        """Add the masks of the mask-only checkpoint `source` (folder or Hub repo id) as the inactive set `name`.

        The checkpoint must have the identity of this model but for its masks: found over exactly these random
        weights (its `weights_sha256` equals this model's: same seed, shape, init and generator), with the same
        forward settings (`FORWARD_FIELDS`: layers, heads, scales, activation, density, ...; with shared layers the
        weights do not see the number of layers), the same masked tensors and the same tokenizer when both record
        one; anything else is refused, naming what differs, and nothing is added. Its masks are verified once, here,
        and held packed (one bit per weight); `set_active_masks` then switches without reading a file or
        regenerating anything. `kwargs` go to `from_pretrained` (e.g. `revision`).
        """
        check_mask_set_name(name)
        if name in self.mask_sets:
            raise ValueError(f"This model already holds a mask set named {name!r} (it holds {list(self.mask_sets)}).")
        with torch.inference_mode(False):  # a server may add sets under inference_mode; nothing kept is made there
            other = type(self).from_pretrained(source, **kwargs)
        self.check_same_network(other, source)  # weights, forward settings, tokenizer: names what differs
        theirs_modules, my_modules = other.masked_modules, self.masked_modules
        if set(theirs_modules) != set(my_modules):
            extra = sorted(set(theirs_modules) - set(my_modules))
            missing = sorted(set(my_modules) - set(theirs_modules))
            raise ValueError(
                f"The masks at {source} cover other tensors than this model's (they have {len(extra)} this model "
                f"lacks, e.g. {extra[:2]}, and lack {len(missing)}, e.g. {missing[:2]}): they were saved for another "
                "number of layers. Load them as a model of their own instead."
            )
        with torch.inference_mode(False):
            self._inactive_mask_sets[name] = {
                module_name: {"packed": module.mask.to(self.device, copy=True)}
                for module_name, module in theirs_modules.items()
            }

    def set_active_masks(self, name: str) -> None:
        """Compute with the mask set `name` from now on: no file is read and no random weight regenerated.

        Every tensor of the set is checked before any is changed: a set that does not fit is refused with the model
        left as it was. The outgoing set keeps its own scores `Parameter` (with its `.grad` and optimizer state);
        only the active set's Parameters are the model's parameters (see the module docstring).

        Memory: an inactive set whose scores are a loaded mask's rebuild is held as its packed mask (one bit per
        weight), so k directions cost the random weights once, the active set's scores and fold, and one bit per
        weight for each other set. A set trained in this process is held whole (its float32 scores), so switching
        never loses training state. Time: activating a packed set rebuilds its scores from the mask, and in eval
        mode its folded weights, eagerly (linear in the number of weights; `benchmarks/mask_sets.md` has the
        measured figures)."""
        if name == self._active_masks:
            return
        if name not in self._inactive_mask_sets:
            raise KeyError(f"No mask set named {name!r}; this model holds {list(self.mask_sets)} (see `load_masks`).")
        target, modules = self._inactive_mask_sets[name], self.masked_modules
        if set(target) != set(modules):
            raise ValueError(
                f"Mask set {name!r} covers {len(target)} tensors but this model has {len(modules)} masked tensors: it "
                "cannot be activated (the model is unchanged)."
            )
        with torch.inference_mode(False), torch.no_grad():
            # 1. Everything that can fail, for every tensor: nothing has changed yet.
            plans = {}
            for module_name, module in modules.items():
                try:
                    incoming_mask = module.check_mask_set_state(target[module_name], f"{module_name}.")
                    plans[module_name] = (incoming_mask, module.outgoing_mask_set_state())
                except ValueError as error:
                    raise ValueError(
                        f"Mask set {name!r} cannot be activated (the model is unchanged, {self._active_masks!r} "
                        f"stays active): {error}"
                    ) from error
            # 2. The switch itself.
            for module_name, module in modules.items():
                incoming_mask, outgoing = plans[module_name]
                module.adopt_mask_set_state(target[module_name], incoming_mask, outgoing)
        del self._inactive_mask_sets[name]
        self._inactive_mask_sets[self._active_masks] = {
            module_name: outgoing for module_name, (_, outgoing) in plans.items()
        }
        self._active_masks = name

    def rename_mask_set(self, name: str, new_name: str) -> None:
        """Call the mask set `name` `new_name` from now on (e.g. "default", the set the model was loaded with, after
        its translation direction, so that `pipeline("translation_en_to_de", ...)` picks it)."""
        check_mask_set_name(new_name)
        if name not in self.mask_sets:
            raise KeyError(f"No mask set named {name!r}; this model holds {list(self.mask_sets)}.")
        if new_name in self.mask_sets:
            raise ValueError(f"This model already holds a mask set named {new_name!r}.")
        if name == self._active_masks:
            self._active_masks = new_name
        else:
            self._inactive_mask_sets[new_name] = self._inactive_mask_sets.pop(name)

    def save_mask_sets(self, directory: str | os.PathLike) -> list[Path]:
        """Save every mask set as its own mask-only checkpoint, `directory/<name>/`, each loadable and pushable
        alone (`from_pretrained`, `load_masks`). Returns the folders. The active set is active again afterwards."""
        for name in self.mask_sets:
            check_mask_set_name(name)  # checked on the way in too: no folder outside `directory` is ever written
        active, folders = self._active_masks, []
        try:
            for name in self.mask_sets:
                self.set_active_masks(name)
                folders.append(Path(directory) / name)
                self.save_pretrained(folders[-1])
        finally:
            self.set_active_masks(active)
        return folders
