"""``python -m samaug`` (and ``torchrun -m samaug train ...``) runs the command line."""

from samaug.cli import main

main()
