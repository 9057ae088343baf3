#!/bin/bash
# Build (once) the pristine bookworm root the booted tier restores for every run:
# minimal Debian with SSH and Python, root's authorized key, and the apt cache already
# filled with every package the roles install (the container itself has no network).
set -euo pipefail
CACHE=${ESTRADE_TEST_CACHE:-/var/cache/estrade-test}
PKGS="nginx libnginx-mod-stream coturn nftables python3-venv openssl logrotate prometheus prometheus-node-exporter postgresql python3-psycopg2 postgresql-client redis-server"
TARBALL=$CACHE/bookworm-root.tar
mkdir -p "$CACHE"
# Several checkouts may share the cache: one builds, the others wait, then find it done.
exec 9>"$CACHE/build.lock"
flock 9
# The key is the controller's, as in production; kept with the cache.
[ -f "$CACHE/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C estrade-test -f "$CACHE/id_ed25519"
stamp="$(sha256sum "$0" | cut -c1-16)"
if [ -f "$TARBALL" ] && [ "$(cat "$CACHE/bookworm-root.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "error: mmdebstrap missing (apt-get install mmdebstrap)" >&2; exit 1; }
echo "building $TARBALL (about a minute, once)" >&2
mmdebstrap --variant=minbase --skip=cleanup/apt \
  --include=python3,python3-apt,systemd,systemd-sysv,dbus,openssh-server,ca-certificates,iproute2 \
  --customize-hook="mkdir -p \"\$1/root/.ssh\" && install -m 600 '$CACHE/id_ed25519.pub' \"\$1/root/.ssh/authorized_keys\"" \
  --customize-hook="chroot \"\$1\" apt-get install -y -d -q -o APT::Install-Recommends=true $PKGS >/dev/null" \
  --customize-hook="echo estrade-test > \"\$1/etc/hostname\"" \
  bookworm "$CACHE/bookworm-root.new.tar" http://deb.debian.org/debian
mv "$CACHE/bookworm-root.new.tar" "$TARBALL"
echo "$stamp" > "$CACHE/bookworm-root.stamp"
