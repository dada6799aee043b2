#!/usr/bin/env bash
# Unpack the CIFAR-10 JPEG tree (class-per-folder) that config/cifar10.yaml reads.
#   scripts/unpack-cifar10.sh [ARCHIVE] [DEST]
# ARCHIVE defaults to ../shared/datasets/cifar10-jpeg.tar.gz (beside this checkout), DEST to data/.
# The archive's checksum is verified first; the tree appears at DEST/cifar10/{train,test}/<class>/
# only once it is complete.
set -euo pipefail
archive=${1:-../shared/datasets/cifar10-jpeg.tar.gz}
dest=${2:-data}
expected=3f154df106814eb4bc0a6635ae032162fd4a2b3e52625519d18ee7835c228575

[ -f "$archive" ] || { echo "unpack-cifar10: archive '$archive' does not exist" >&2; exit 1; }
if [ -d "$dest/cifar10/train" ]; then
    echo "unpack-cifar10: '$dest/cifar10/train' already exists; nothing to do" >&2
    exit 0
fi
actual=$(sha256sum "$archive" | cut -d' ' -f1)
if [ "$actual" != "$expected" ]; then
    echo "unpack-cifar10: '$archive' has sha256 $actual, expected $expected" >&2
    exit 1
fi
mkdir -p "$dest"
staging=$(mktemp -d "$dest/.cifar10-unpack.XXXXXX")
trap 'rm -rf "$staging"' EXIT
tar -xzf "$archive" -C "$staging"
[ -d "$staging/cifar10/train" ] || { echo "unpack-cifar10: '$archive' has no cifar10/train/" >&2; exit 1; }
mv "$staging/cifar10" "$dest/cifar10"
echo "unpack-cifar10: $(find "$dest/cifar10/train" -name '*.jpg' | wc -l) training images in $dest/cifar10/train" >&2
