#!/bin/sh
# Example/Hello: the smallest complete Corral extension (docs/extensions.md).
#
# Every handler gets the same JSON on standard input:
#   {"name":"hello","operation":"install","settings":{"greeting":"hi"},"protectedSettings":{"token":"..."}}
# and CORRAL_EXTENSION_NAME, CORRAL_EXTENSION_DIR and CORRAL_OPERATION in its
# environment. The last line it prints is the status message the control
# plane shows; a non-zero exit fails the operation with its last stderr line.
set -eu
handler="$1"
input=$(cat)
# A real extension would use a JSON parser; this one needs nothing but sed.
greeting=$(printf '%s' "$input" | sed -n 's/.*"greeting":"\([^"]*\)".*/\1/p')
has_token=no
case "$input" in *'"protectedSettings":'*'"token":'*) has_token=yes ;; esac
state="$CORRAL_EXTENSION_DIR/greeting"

case "$handler" in
install|update)
    printf '%s\n' "${greeting:-hello}" > "$state"
    echo "$handler done"
    ;;
enable)
    echo "hello: greeting=${greeting:-hello}, protected token received: $has_token"
    ;;
disable)
    echo "disabled"
    ;;
uninstall)
    rm -f "$state"
    echo "uninstalled"
    ;;
*)
    echo "unknown handler $handler" >&2
    exit 2
    ;;
esac
