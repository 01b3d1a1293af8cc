#!/bin/sh
# Builds the OCI image of `corral server` for linux/$GOARCH with no network,
# container engine or base image: a static corral (CGO_ENABLED=0, time zone
# data embedded) on an empty base, assembled by packaging/image (Go, standard
# library only). See docs/container.md.
#
# Writes to $OUT (default dist/):
#   corral-server-$VERSION-$GOARCH.oci.tar   podman load -i / docker load -i / skopeo copy oci-archive:
#   corral-server-$VERSION-$GOARCH.oci/      the same as an OCI layout directory (skopeo copy oci:)
#
# Reproducible: the image's time is $SOURCE_DATE_EPOCH, else the commit's
# time, so one commit built with one Go toolchain gives one digest.
# Version: $CORRAL_VERSION, or the one compiled into the source.
set -eu
cd "$(dirname "$0")/../.."
GOARCH=${GOARCH:-$(go env GOARCH)}
VERSION=${CORRAL_VERSION:-$(sed -n 's/^[[:space:]]*Version = "\(.*\)"/\1/p' internal/version/version.go)}
REVISION=${CORRAL_REVISION:-$(git rev-parse HEAD 2>/dev/null || true)}
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null) || {
    echo "build.sh: not a git checkout: set SOURCE_DATE_EPOCH (and CORRAL_REVISION)" >&2
    exit 1
  }
fi
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  echo "build.sh: warning: the checkout has uncommitted changes; the image is not the one commit $REVISION gives" >&2
fi
OUT=${OUT:-dist}
name=corral-server-$VERSION-$GOARCH
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"

CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH go build -trimpath -buildvcs=false -tags timetzdata \
  -ldflags "-s -w -X github.com/corralhq/corral/internal/version.Version=$VERSION -X github.com/corralhq/corral/internal/version.Commit=$(printf %.12s "${REVISION:-dev}")" \
  -o "$work/corral" ./cmd/corral
rm -rf "${OUT:?}/$name.oci"
# The assembler runs here, whatever GOARCH the image is for.
env -u GOARCH -u GOOS -u CGO_ENABLED SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" go run ./packaging/image \
  --binary "$work/corral" --license LICENSE --version "$VERSION" --revision "$REVISION" \
  --archive "$OUT/$name.oci.tar" --layout "$OUT/$name.oci"
