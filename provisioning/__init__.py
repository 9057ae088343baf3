"""pyinfra deploy of an Estrade classroom server.

It reads the Ansible roles' ``defaults/main.yml`` and renders their ``templates/``, so both
tools produce the same files: ``pyinfra provisioning/inventory.py provisioning/deploy.py``.
"""
