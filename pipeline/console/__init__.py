"""What the commands write to a terminal or a log: progress lines, quiet library imports.

:mod:`pipeline.console.progress` (tqdm bars on a terminal, plain periodic lines in a
log) and :mod:`pipeline.console.quiet_pysteps` (pysteps imported without its
configuration-file print).
"""
