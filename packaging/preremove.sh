#!/bin/sh
# Stop the agent before its files go. The machine stays registered on the
# control plane: run "corral-agent disconnect" first to remove it there too.
set -e
if [ -d /run/systemd/system ]; then
  systemctl disable --now corral-agent >/dev/null 2>&1 || true
fi
exit 0
