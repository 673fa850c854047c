"""dlsetup: provision deep-learning boxes with Ansible."""

__version__ = "0.1.0"
