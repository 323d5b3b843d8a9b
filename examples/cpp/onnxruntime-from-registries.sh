#!/usr/bin/env bash
# Assemble an onnxruntime "release folder" (include/ + lib/) from package
# registries, for building vggish_embed where onnxruntime's own release
# archive cannot be downloaded (our CI):
#   - headers: Debian's libonnxruntime-dev (trixie, 1.21), downloaded and
#     unpacked only, never installed (bookworm has no onnxruntime package);
#   - library: libonnxruntime.so.1 from the npm package onnxruntime-node, whose
#     CPU library is built against the same C API (newer: the C API is
#     versioned and backward compatible, so 1.21 headers work with it).
# Also installs libsndfile1-dev, pkg-config, cmake and g++ with apt when missing.
#
#   examples/cpp/onnxruntime-from-registries.sh OUT_DIR NODE_MODULES_DIR
set -euo pipefail
out=$(realpath -m "$1")
node_modules=$(realpath "$2")
library="$node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1"
[ -f "$library" ] || { echo "error: $library missing: run npm ci --ignore-scripts in tests/node first" >&2; exit 2; }

missing=()
for tool in cmake g++ pkg-config; do command -v "$tool" >/dev/null || missing+=("$tool"); done
pkg-config --exists sndfile 2>/dev/null || missing+=(libsndfile1-dev)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

apt_dir="$out/apt"
mkdir -p "$apt_dir/lists/partial" "$out/lib"
echo "deb http://deb.debian.org/debian trixie main" > "$apt_dir/sources.list"
apt_options=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$apt_dir/lists" -o APT::Sandbox::User=root)
apt-get "${apt_options[@]}" update -q >/dev/null
(cd "$apt_dir" && apt-get "${apt_options[@]}" download -q libonnxruntime-dev >/dev/null)
dpkg-deb -x "$apt_dir"/libonnxruntime-dev_*.deb "$apt_dir/unpacked"
rm -rf "$out/include"
cp -r "$apt_dir/unpacked/usr/include/onnxruntime" "$out/include"
cp "$library" "$out/lib/libonnxruntime.so.1"
ln -sf libonnxruntime.so.1 "$out/lib/libonnxruntime.so"
echo "$out"
