"""The tiny-model kit: configs, tokenizers, processors, chat templates, generation settings.

One recipe each for the random test checkpoints (:mod:`attnprompt.testing`,
:mod:`attnprompt.testing_lvlm` re-export them) and the shapes trainers
(:mod:`attnprompt.shapes.train_clip`, :mod:`attnprompt.shapes.train_llava`). Randomness comes from
the kit's own generators (:mod:`attnprompt.tiny.seeds`); the caller's global RNG is left alone.
"""

from .clip import make_tiny_clip_dir
from .lvlm import make_tiny_llava_dir, make_tiny_llava_next_dir, make_tiny_qwen2_vl_dir
from .offline import offline_model_map

__all__ = ["make_tiny_clip_dir", "make_tiny_llava_dir", "make_tiny_llava_next_dir", "make_tiny_qwen2_vl_dir",
           "offline_model_map"]
