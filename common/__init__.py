"""Plumbing shared by inference, training and the scripts: atomic file writes (:mod:`common.atomic`), the
command-line runner and its exit codes (:mod:`common.cli`), the user-error classes (:mod:`common.errors`), the one
table of option ranges (:mod:`common.options`), the one image reader (:mod:`common.images`) and image sheets
(:mod:`common.sheets`). It imports nothing of ``pipeline``, ``training`` or ``hub``."""
