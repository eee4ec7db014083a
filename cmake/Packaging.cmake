# SPDX-License-Identifier: Apache-2.0
# What `cmake --install` puts beyond the binaries and man pages, and the Debian package that
# `cpack` builds from the same install (prefix /usr).

set(SPARSE_PYTHON_DIR lib/python3/dist-packages CACHE STRING
  "Where the Python helper goes, relative to the prefix (Debian's python3 reads /usr/lib/python3/dist-packages)")
set(completions share/bash-completion/completions)
install(FILES contrib/bash-completion/mksparse DESTINATION ${completions})
# bash-completion loads a command's file by the command's name: the same file twice.
install(FILES contrib/bash-completion/mksparse DESTINATION ${completions} RENAME sparsefs)
install(DIRECTORY contrib/python/sparsefs DESTINATION ${SPARSE_PYTHON_DIR}
  FILES_MATCHING PATTERN "*.py")
install(FILES contrib/fstab.example DESTINATION share/doc/sparse/examples)
install(DIRECTORY contrib/systemd/ DESTINATION share/doc/sparse/examples/systemd)
install(FILES README.md LICENSE DESTINATION share/doc/sparse)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sparse)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "sparse maintainers <sparse@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "fine-tuned models as compact deltas against their base, mounted read-only with FUSE")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
# fuse3: fusermount3 and mount.fuse3, which the binaries run but do not link.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3")
find_program(DPKG_SHLIBDEPS dpkg-shlibdeps)
if(DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  # Debian 12's names for what the binaries link, where dpkg-shlibdeps cannot say.
  string(APPEND CPACK_DEBIAN_PACKAGE_DEPENDS
    ", libc6, libfuse3-3, libzstd1, libcjson1, libxxhash0, libopenblas0, libexpat1")
endif()
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3, attr")
include(CPack)
