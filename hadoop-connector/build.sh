#!/usr/bin/env bash
# Build the grid:// Hadoop connector with plain javac + jar (no Maven repository here), against the Hadoop
# client jars inside the pyspark wheel:
#   build/gridfs-hadoop.jar        the FileSystem (org.gridfs.hadoop.GridFileSystem), for spark.jars or a classpath
#   build/gridfs-hadoop-tests.jar  the Java test suite (org.gridfs.hadoop.TestRunner) and test tools
# Usage: PYTHON=/path/to/venv/bin/python bash hadoop-connector/build.sh   (PYTHON: a Python with pyspark;
# default: the repository's .venv, else python3). JAVAC and JAR may name other tools.
#
# SPDX-License-Identifier: LGPL-3.0-or-later
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
JAVAC=${JAVAC:-javac}
JAR=${JAR:-jar}

jars=$("$PYTHON" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))') || {
    echo "build.sh: $PYTHON has no pyspark: pip install -e '.[hadoop]'" >&2
    exit 1
}
pick() {  # the one jar of the wheel whose name starts with $1
    local found=("$jars"/$1-[0-9]*.jar)
    if [ ! -f "${found[0]}" ]; then echo "build.sh: no $1 jar in $jars" >&2; exit 1; fi
    echo "${found[0]}"
}
classpath="$(pick hadoop-client-api):$(pick hadoop-client-runtime):$(pick slf4j-api)"

out="$here/build"
work=$(mktemp -d "${TMPDIR:-/tmp}/gridfs-hadoop-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/classes" "$work/test-classes" "$out"

mapfile -t main_sources < <(find "$here/src/main/java" -name '*.java' | sort)
mapfile -t test_sources < <(find "$here/src/test/java" -name '*.java' | sort)
"$JAVAC" --release 17 -Xlint:all,-path,-serial -Werror -encoding UTF-8 -d "$work/classes" -cp "$classpath" \
    "${main_sources[@]}"
cp -R "$here/src/main/resources/." "$work/classes/"
"$JAVAC" --release 17 -Xlint:all,-path,-serial -encoding UTF-8 -d "$work/test-classes" \
    -cp "$classpath:$work/classes" "${test_sources[@]}"

# Written beside, then renamed: a reader never sees half a jar.
"$JAR" --create --file "$work/gridfs-hadoop.jar" -C "$work/classes" .
"$JAR" --create --file "$work/gridfs-hadoop-tests.jar" --main-class org.gridfs.hadoop.TestRunner \
    -C "$work/test-classes" .
mv -f "$work/gridfs-hadoop.jar" "$out/gridfs-hadoop.jar"
mv -f "$work/gridfs-hadoop-tests.jar" "$out/gridfs-hadoop-tests.jar"
echo "built $out/gridfs-hadoop.jar and $out/gridfs-hadoop-tests.jar (Hadoop jars from $jars)"
