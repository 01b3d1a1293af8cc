#!/bin/sh
# Builds corral-agent for linux/$GOARCH and packages it as .deb and .rpm in
# dist/ (nfpm, pinned as a Go tool in go.mod). Version: $CORRAL_VERSION, or
# the one compiled into the source.
set -eu
cd "$(dirname "$0")/.."
GOARCH=${GOARCH:-$(go env GOARCH)}
VERSION=${CORRAL_VERSION:-$(sed -n 's/^[[:space:]]*Version = "\(.*\)"/\1/p' internal/version/version.go)}
mkdir -p dist
CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH go build -trimpath \
  -ldflags "-s -w -X github.com/corralhq/corral/internal/version.Version=$VERSION" \
  -o dist/corral-agent ./cmd/corral-agent
for format in deb rpm; do
  CORRAL_VERSION=$VERSION GOARCH=$GOARCH go tool nfpm package -f packaging/nfpm.yaml -p "$format" -t dist/
done
ls -l dist/
