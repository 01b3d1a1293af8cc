#!/bin/sh
# Make systemd see the unit. The agent starts once it is connected:
#   corral-agent connect ... && systemctl enable --now corral-agent
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
  # An upgrade restarts a running agent on the new binary.
  if systemctl is-active --quiet corral-agent; then
    systemctl restart corral-agent || true
  fi
fi
exit 0
