"""The SAMAug trainer: streams images and priors from a samaug store; never imports SAM."""
