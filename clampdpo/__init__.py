"""The ``clampdpo`` command line: the top layer, above orchestration/.

``clampdpo/main.py`` builds the parser from one module per command group in ``clampdpo/commands/``; every
command imports what it needs (torch, Ray, music21) inside its function, so ``--help`` and the commands that
only read files answer at once.
"""
