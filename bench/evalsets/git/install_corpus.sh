#!/usr/bin/env bash
# Install the Git manual as HTML (Debian package git-doc), the corpus of the
# bench/evalsets/git evaluation set, then print the corpus root.
# Idempotent: does nothing but print the path when the corpus is already there.
set -euo pipefail

CORPUS_DIR=/usr/share/doc/git-doc

if [ ! -f "$CORPUS_DIR/git.html" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    else
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" apt-get install -y git-doc
fi

if [ ! -f "$CORPUS_DIR/git.html" ]; then
    echo "install_corpus.sh: $CORPUS_DIR/git.html still missing after install" >&2
    exit 1
fi

echo "$CORPUS_DIR"
