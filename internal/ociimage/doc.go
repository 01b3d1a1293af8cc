// Package ociimage assembles container images without a container engine,
// a registry or the network: Build turns a list of files and an image
// configuration into the blobs of an OCI image (image-spec v1.1: a gzip
// tar layer, a config, a manifest and an index), and the result is written
// as an OCI image layout directory (WriteLayout) or as a single-file archive
// of that layout (WriteArchive) for `podman load` and `skopeo copy
// oci-archive:`, with Docker's manifest.json beside index.json for `docker
// load`.
//
// Output is deterministic: the same Image gives byte-identical blobs, hence
// the same digests, whenever and wherever it is built. Every timestamp
// (tar entries, gzip header, config "created", the archive's own entries) is
// Image.Created truncated to the second, entries are sorted by path, owners
// are numeric and given by the caller, nothing is read from the host's
// clock, umask, user database or file system.
//
// Build validates before it writes anything: a path that is absolute,
// unclean or doubled, an entry whose parent directory is not in the same
// layer, or an unsupported mode is an error naming the path. Build and the
// returned Built hold everything in memory (a layer of a few tens of MiB);
// a Built is immutable and safe for concurrent use.
package ociimage
