"""pyinfra deploy of several hosts (the same hosts and roles as multihost.yml):

make wheelhouse && .venv/bin/pyinfra provisioning/multihost_inventory.py provisioning/multihost.py
"""

from pyinfra import host

from provisioning import roles
from provisioning.variables import site_variables

variables = site_variables(host.data.dict())
groups = set(host.groups)

if "estrade_database" in groups:
    roles.postgresql(variables)
    roles.redis(variables)
    if variables["estrade_shared_blobs_from"]:  # the app hosts mount its shared folders
        roles.shared_blobs(variables)
if "estrade_app" in groups:
    roles.estrade(variables)
if "estrade_proxy" in groups:
    roles.nginx(variables)
    roles.coturn(variables)
roles.nftables(variables)
if "estrade_proxy" in groups and variables["monitoring_enabled"]:
    roles.monitoring(variables)
