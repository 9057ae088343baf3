"""pyinfra deploy of an Estrade classroom server (the same server as site.yml).

make wheelhouse && .venv/bin/pyinfra provisioning/inventory.py provisioning/deploy.py
"""

from pyinfra import host

from provisioning import roles
from provisioning.variables import site_variables

variables = site_variables(host.data.dict())

if variables["postgresql_enabled"]:
    roles.postgresql(variables)
roles.nginx(variables)
roles.estrade(variables)
roles.coturn(variables)
roles.nftables(variables)
if variables["monitoring_enabled"]:
    roles.monitoring(variables)
