"""The command groups of ``samaug``: each module registers its commands on the main app."""
