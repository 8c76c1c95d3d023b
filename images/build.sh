#!/usr/bin/env bash
# Builds operator/Dockerfile and worker/Dockerfile into OCI archives, here, without a Docker daemon
# and without a container registry:
#   1. the base image debian:bookworm-slim is made from Debian's package mirror with mmdebstrap
#      (the same variant and path excludes as Docker's official slim image) and committed under that
#      name into a buildah storage under $CACHE, so the Dockerfiles' `FROM debian:bookworm-slim`
#      resolves locally (--pull=never);
#   2. a wheelhouse of tmd's dependencies is filled by this machine's pip (PyPI, and the torch CPU
#      wheel the pin in constraints.txt selects), and handed to the Dockerfiles' pip through their
#      PIP_OPTIONS build argument and a read-only volume;
#   3. buildah builds each Dockerfile unchanged (chroot isolation, overlay storage) and writes the
#      image as an OCI archive: $OUT/tmd-operator.oci.tar and $OUT/tmd-worker.oci.tar.
# The base image and the wheelhouse are cached under $CACHE: a rebuild only redoes the layers whose
# inputs changed. Needs root and Debian's mmdebstrap and buildah (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${TMD_IMAGES_CACHE:-.images-cache}
OUT=${TMD_IMAGES_OUT:-dist/images}
PYTHON=${PYTHON:-.venv/bin/python}
REGISTRY=${TMD_IMAGES_REGISTRY:-ghcr.io/tmd-dev}
VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
BASE=docker.io/library/debian:bookworm-slim
SUITE=bookworm

mkdir -p "$CACHE" "$OUT"
CACHE=$(realpath "$CACHE")
# overlay: layers share what they do not change (vfs, the fallback where overlay mounts fail,
# copies every layer whole: gigabytes per build of the worker image).
DRIVER=${TMD_IMAGES_STORAGE_DRIVER:-overlay}
buildah() { command buildah --root "$CACHE/storage-$DRIVER" --runroot "$CACHE/run-$DRIVER" --storage-driver "$DRIVER" "$@"; }
say() { echo "images: $*" >&2; }

# 1. The base image.
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  say "building $BASE with mmdebstrap"
  # merged-usr hook: /usr merged without installing usrmerge (and perl with it), as Debian's images.
  # The apt options are those of Docker's Debian images (docker-clean, docker-no-languages): apt
  # leaves no package archives or caches behind in a layer.
  clean='rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true'
  mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --aptopt='Acquire::Languages "none"' \
    --aptopt='Dir::Cache::pkgcache ""' --aptopt='Dir::Cache::srcpkgcache ""' \
    --aptopt="DPkg::Post-Invoke { \"$clean\"; }" --aptopt="APT::Update::Post-Invoke { \"$clean\"; }" \
    "$SUITE" "$CACHE/$SUITE-rootfs.tar" >/dev/null
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$CACHE/$SUITE-rootfs.tar" /
  buildah config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah commit --quiet --rm "$ctr" "$BASE" >/dev/null
  rm "$CACHE/$SUITE-rootfs.tar"
fi

# 2. The wheelhouse: every distribution both images install, as wheels (binary ones for Python 3.11
#    on glibc, which is what bookworm's python3 is), plus what pip needs to build tmd itself.
say "filling the wheelhouse $CACHE/wheels"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$CACHE/wheels" \
  --constraint constraints.txt '.[worker]' 'setuptools>=68' wheel
rm -f "$CACHE"/wheels/tmd-*.whl  # the Dockerfiles build tmd from the copied sources

# 3. The images, from the Dockerfiles as they are.
for role in operator worker; do
  image="$REGISTRY/tmd-$role:$VERSION"
  say "building $image from $role/Dockerfile"
  buildah build --quiet --isolation chroot --pull=never --layers \
    --file "$role/Dockerfile" --tag "$image" \
    --build-arg "PIP_OPTIONS=--no-index --find-links /wheels" \
    --volume "$CACHE/wheels:/wheels:ro" \
    . >/dev/null
  rm -f "$OUT/tmd-$role.oci.tar"
  buildah push --quiet "$image" "oci-archive:$OUT/tmd-$role.oci.tar:$image"
  say "wrote $OUT/tmd-$role.oci.tar ($(du -h "$OUT/tmd-$role.oci.tar" | cut -f1))"
done

# Untagged images nothing builds on (this build's stages, a previous build's leftovers) would pile
# up a gigabyte per worker build: drop them. The base image and the cached steps before them stay.
dangling=$(buildah images --filter dangling=true --quiet)
if [ -n "$dangling" ]; then
  buildah rmi $dangling >/dev/null
fi
