"""Example pyinfra inventory: one classroom server.

Every variable and its default is in roles/<role>/defaults/main.yml (shared with Ansible);
set here the ones your site needs, as in inventories/example/group_vars/estrade/main.yml.
Run: pyinfra provisioning/inventory.py provisioning/deploy.py
"""

estrade = [
    (
        "192.0.2.10",
        {
            "ssh_user": "root",
            "estrade_server_name": "classroom.example.org",
            # openssl rand -hex 32; keep it out of version control (e.g. read a file here).
            "estrade_turn_secret": "change-me-change-me-change-me-change-me",
            "nginx_tls_mode": "internal",
            "coturn_external_ip": "",
            "monitoring_enabled": True,
            "postgresql_enabled": False,
        },
    ),
]
