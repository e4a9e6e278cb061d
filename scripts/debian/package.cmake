# The Debian package `vigil`, made by `cpack -G DEB` in a build directory
# configured with -DCMAKE_INSTALL_PREFIX=/usr (docs/operations.md,
# "Installing the Debian package"). It holds whatever the install() rules
# install: no file list here but the conffiles, from VIGIL_CONFFILES.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME vigil)
set(CPACK_PACKAGE_VENDOR vigil)
set(VIGIL_DEB_MAINTAINER "vigil maintainers <vigil@localhost>" CACHE STRING
    "The Debian package's Maintainer field: set it to whoever ships the package")
set(CPACK_PACKAGE_CONTACT "${VIGIL_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "pub/sub message broker that notices dead connections")
set(CPACK_PACKAGE_DESCRIPTION
    "vigil-broker is a publish/subscribe message broker with topic logs, queue
groups and heartbeats that tell a dead connection from a quiet one.
vigil-pub and vigil-sub publish to it and print what it delivers.
The package runs the broker as the systemd service vigil-broker.")
# cpack installs with DESTDIR into its staging directory, so that the
# install-time CMAKE_INSTALL_PREFIX is /usr (the unit's ExecStart names
# /usr/bin/vigil-broker) and absolute destinations (/etc/...) land in the
# package rather than on the building machine.
set(CPACK_SET_DESTDIR ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # vigil_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Architecture: CPack asks dpkg --print-architecture.
# Depends: dpkg-shlibdeps reads the ELF files' NEEDED entries, so a library
# linked later (libmicrohttpd, say) gets its dependency without anyone
# editing a list; it needs dpkg-dev on the building machine.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Shared libraries in the package get a shlibs file for packages built
# against them.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")

# The maintainer scripts and the conffiles list go in the control archive;
# STRICT_PERMISSION gives them the modes lintian asks for (0755, 0644).
set(vigil_deb_dir ${CMAKE_BINARY_DIR}/debian)
set(vigil_conffiles "")
foreach(f ${VIGIL_CONFFILES})
  string(APPEND vigil_conffiles "${f}\n")
endforeach()
file(WRITE ${vigil_deb_dir}/conffiles "${vigil_conffiles}")
foreach(s postinst prerm postrm)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/${s} ${vigil_deb_dir}/${s} COPYONLY)
endforeach()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${vigil_deb_dir}/conffiles ${vigil_deb_dir}/postinst ${vigil_deb_dir}/prerm
    ${vigil_deb_dir}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# Checked when cpack runs: the sysconfdir paths are fixed at configure time.
configure_file(${CMAKE_CURRENT_LIST_DIR}/cpack-options.cmake.in
               ${CMAKE_BINARY_DIR}/vigil-cpack-options.cmake @ONLY)
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_BINARY_DIR}/vigil-cpack-options.cmake)
include(CPack)
