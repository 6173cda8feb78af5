"""Integrations of attention prompting with third-party evaluation frameworks.

Each submodule imports its framework lazily or optionally, so ``import attnprompt`` never needs
them. ``attnprompt.integrations.lmms_eval`` is the lmms-eval model plugin (``--model attnprompt``);
see ``docs/lmms_eval.md``.
"""
