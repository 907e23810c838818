"""``python -m samaug`` (and ``torchrun -m samaug train ...``) runs the command line."""

from .cli import main

main()
