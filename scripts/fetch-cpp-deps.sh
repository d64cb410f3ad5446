#!/usr/bin/env bash
# Fetch what the C++ runtime (export/runtime/) builds against into a build-local prefix, without root and
# without touching the system's apt configuration, then write a CMake initial-cache file that points at it.
#
#   scripts/fetch-cpp-deps.sh [PREFIX]        (default PREFIX: build/cpp-deps)
#   cmake -S . -B build/cpp -C PREFIX/deps.cmake
#
# - ONNX Runtime headers: no bookworm package ships them, so Debian trixie's libonnxruntime-dev is downloaded
#   and unpacked (headers only; its C API is forward compatible with newer libraries).
# - ONNX Runtime library: the one inside the installed PyPI `onnxruntime` wheel, linked to through
#   libonnxruntime.so / .so.1 symlinks in PREFIX (symbols are versioned: build against the library you run).
# - nlohmann-json3-dev, libpng-dev, libjpeg62-turbo-dev: used from the system when installed, else downloaded
#   from the host's own Debian release (with their runtime libraries) and unpacked into PREFIX.
set -euo pipefail

prefix=${1:-build/cpp-deps}
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
mirror=${STRSR_DEBIAN_MIRROR:-http://deb.debian.org/debian}
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine)

die() { echo "fetch-cpp-deps: $*" >&2; exit 1; }
for tool in apt-get dpkg-deb python; do
    command -v "$tool" >/dev/null || die "needs $tool on PATH"
done
[[ -r $keyring ]] || die "$keyring is missing (package debian-archive-keyring)"

# apt_private DEST SUITE PACKAGE...: download .debs of one suite with a private source list, state and cache,
# and unpack them under DEST.
apt_private() {
    local dest=$1 suite=$2; shift 2
    local root="$prefix/apt/$suite"
    mkdir -p "$root/lists/partial" "$root/cache/archives/partial" "$root/debs"
    echo "deb [signed-by=$keyring] $mirror $suite main" > "$root/sources.list"
    local opts=(-q -o "Dir::Etc::SourceList=$root/sources.list" -o Dir::Etc::SourceParts=/dev/null
                -o "Dir::State::Lists=$root/lists" -o "Dir::Cache=$root/cache" -o Debug::NoLocking=1
                -o "APT::Sandbox::User=$(id -un)")
    apt-get "${opts[@]}" update >/dev/null || die "apt-get update of $suite from $mirror failed"
    (cd "$root/debs" && apt-get "${opts[@]}" download "$@" >/dev/null) || die "cannot download $* from $suite"
    local deb
    for deb in "$root"/debs/*.deb; do
        dpkg-deb -x "$deb" "$dest"
    done
}

installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

# ONNX Runtime: trixie headers, the wheel's library.
if [[ ! -f $prefix/onnxruntime/usr/include/onnxruntime/onnxruntime_cxx_api.h ]]; then
    apt_private "$prefix/onnxruntime" trixie libonnxruntime-dev
    rm -rf "$prefix/onnxruntime/usr/lib"  # its library symlink and CMake files name trixie's 1.21 library
fi
ort_lib=$(python - <<'PY'
import glob, os
import onnxruntime
libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.1.*")))
print(libs[-1] if libs else "")
PY
) || die "python cannot import onnxruntime (pip install onnxruntime)"
[[ -n $ort_lib ]] || die "the onnxruntime wheel has no capi/libonnxruntime.so.1.* (is it a standalone build?)"
mkdir -p "$prefix/onnxruntime/lib"
ln -sf "$ort_lib" "$prefix/onnxruntime/lib/libonnxruntime.so.1"
ln -sf "$ort_lib" "$prefix/onnxruntime/lib/libonnxruntime.so"

# Image codecs and the JSON parser: the system's when installed.
host_suite=$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")
wanted=()
installed nlohmann-json3-dev || wanted+=(nlohmann-json3-dev)
installed libpng-dev || wanted+=(libpng-dev libpng16-16)
installed libjpeg62-turbo-dev || wanted+=(libjpeg62-turbo-dev libjpeg62-turbo)
if (( ${#wanted[@]} )) && [[ ! -f $prefix/.host-debs-done ]]; then
    apt_private "$prefix/root" "$host_suite" "${wanted[@]}"
    touch "$prefix/.host-debs-done"
fi

cat > "$prefix/deps.cmake" <<CMAKE
# Written by scripts/fetch-cpp-deps.sh; use with cmake -C.
set(STRSR_ONNXRUNTIME_INCLUDE_DIR "$prefix/onnxruntime/usr/include/onnxruntime" CACHE PATH "")
set(STRSR_ONNXRUNTIME_LIBRARY "$prefix/onnxruntime/lib/libonnxruntime.so" CACHE FILEPATH "")
set(CMAKE_PREFIX_PATH "$prefix/root/usr" CACHE PATH "")
set(CMAKE_INCLUDE_PATH "$prefix/root/usr/include/$multiarch" CACHE PATH "")
CMAKE
echo "fetch-cpp-deps: ONNX Runtime $(basename "$ort_lib"), downloaded: ${wanted[*]:-none}; cmake -C $prefix/deps.cmake"
