#!/usr/bin/env bash
# deps.sh — make sure the Debian packages ember builds with are installed.
#
# Run by the Makefile before the first build. Checks for each dependency by the
# file it provides; installs what is missing with apt-get when run as root, and
# otherwise stops with the exact command to run. Packages:
#   llvm-19-dev       LLVM 19 for the JIT (llvm-config-19; the system default is 14)
#   libsleef-dev      vectorized math (exp, erf, tanh, ...)
#   libffi-dev        closures with the user's C signature (em_compile)
#   libopenblas-dev   GEMM for eager matmul
#   libcriterion-dev  the test framework
#   pkg-config        finds the flags of the above
set -u
need=()
# A header alone is not proof: cblas.h also comes with the reference BLAS
# (libblas-dev), so packages that ship a .pc file must also be known to pkg-config.
have_header() {
    pkg-config --exists "$2" 2>/dev/null || [ "$2" = criterion ] || return 1
    echo "#include <$1>" | ${CC:-cc} -E -x c - $(pkg-config --cflags "$2" 2>/dev/null) >/dev/null 2>&1
}
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v llvm-config-19 >/dev/null 2>&1 || need+=(llvm-19-dev)
have_header sleef.h sleef || need+=(libsleef-dev)
have_header ffi.h libffi || need+=(libffi-dev)
have_header cblas.h openblas || need+=(libopenblas-dev)
have_header criterion/criterion.h criterion || need+=(libcriterion-dev)
[ ${#need[@]} -eq 0 ] && exit 0

cmd="apt-get install -y ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "ember: missing Debian packages: ${need[*]}" >&2
    echo "ember: install them with:  sudo apt-get update && sudo $cmd" >&2
    exit 1
fi
echo "ember: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2 && $cmd >&2 || {
    echo "ember: '$cmd' failed; run it by hand and retry" >&2
    exit 1
}
