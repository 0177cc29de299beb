#!/bin/bash
# node-init.sh - PID "1" of one rehearsal node (tools/deploy/cluster-test.sh).
# Started as
#   ip netns exec dsa-nX unshare --mount --uts --propagation private \
#     node-init.sh NAME STATE_DIR
# so the node has its own network (the netns), hostname (UTS namespace) and
# filesystem view: /etc /opt /usr /var /home /root /srv are overlays whose
# upper layers live in STATE_DIR (a tmpfs of the test, outside every lower
# layer), /tmp and /run are private tmpfs.  Everything the playbook installs
# (packages, users, /opt/deepseek-alpha, the unit, keys, the build) lands in
# the node's own upper layers and survives a "reboot" (this script run
# again after every process of the node was killed).  Last, sshd in the
# foreground: every session, and so every process the playbook or mpirun
# starts on the node, inherits these namespaces.
set -euo pipefail
name=$1 state=$2
hostname "$name"
for d in etc opt usr var home root srv; do
  mkdir -p "$state/ov/$d/u" "$state/ov/$d/w"
  # a killed node's old mount namespace may still be going away
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    mount -t overlay "dsa-$name-$d" \
      -o "lowerdir=/$d,upperdir=$state/ov/$d/u,workdir=$state/ov/$d/w" "/$d" && break
    sleep 0.5
  done
  mountpoint -q "/$d" || { echo "node-init: cannot mount /$d" >&2; exit 1; }
done
mount -t tmpfs -o mode=1777 "dsa-$name-tmp" /tmp
mount -t tmpfs -o mode=0755 "dsa-$name-run" /run
mkdir -p /run/sshd /run/lock
chmod 0755 /run/sshd
# a fresh /run: the hostname the playbook sees, the cluster's names
echo "$name" >/etc/hostname
cp "$state/../hosts" /etc/hosts
# root's key of the control machine (the playbook logs in as root)
install -d -m 0700 /root/.ssh
install -m 0600 "$state/../control_key.pub" /root/.ssh/authorized_keys
echo $$ >"$state/init.pid"
exec /usr/sbin/sshd -D -e -f "$state/sshd_config"
