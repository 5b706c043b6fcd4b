#!/usr/bin/env bash
# One hash of what a build is made from (sources, tests, build files), the same here and on the device machine,
# which gets the working tree without .git: a prebuilt binary is used there only for the sources it was built from.
set -euo pipefail
find src tests CMakeLists.txt cmake tasks -type f 2>/dev/null | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16
