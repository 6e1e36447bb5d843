# The Debian package: `cpack -G DEB` in the build folder makes fastsse_<version>_amd64.deb from the
# same install() rules as `cmake --install` (README, "Installing"), with prefix /usr. CPack rather
# than a debian/ folder: one build system, no debhelper, and a package any checkout can make; what
# debhelper would add is written out here (the maintainer scripts beside this file do what
# dh_installsystemd generates). Included from the top CMakeLists.txt.

set(FASTSSE_DEB_DIR "${CMAKE_CURRENT_LIST_DIR}")
set(FASTSSE_DEB_MAINTAINER "fastsse maintainers <maintainers@users.noreply.h-seed-51b6256d.example>"
    CACHE STRING "The Debian package's Maintainer: field (and whoever publishes it)")

# The changelog's newest entry is the package's version (lintian and apt read it there): a release
# bumps both, and a forgotten one stops the configure here rather than shipping a contradiction.
file(STRINGS "${FASTSSE_DEB_DIR}/changelog" fastsse_deb_top LIMIT_COUNT 1)
if(NOT fastsse_deb_top MATCHES "^fastsse \\(${PROJECT_VERSION}\\) ")
  message(FATAL_ERROR "packaging/deb/changelog begins with '${fastsse_deb_top}': give it an entry for "
                      "${PROJECT_VERSION}, the project's version")
endif()

# Debian's documentation files, on every install: the copyright (with the licences of the code
# compiled into the binary) and the changelog, gzipped without a timestamp (the same bytes each
# build). A version without a Debian revision makes a native package: changelog.gz, not
# changelog.Debian.gz.
set(fastsse_deb_out "${CMAKE_CURRENT_BINARY_DIR}/packaging")
add_custom_command(OUTPUT "${fastsse_deb_out}/changelog.gz"
  COMMAND ${CMAKE_COMMAND} -E make_directory "${fastsse_deb_out}"
  COMMAND sh -c "gzip -9n -c \"$0\" > \"$1\"" "${FASTSSE_DEB_DIR}/changelog" "${fastsse_deb_out}/changelog.gz"
  DEPENDS "${FASTSSE_DEB_DIR}/changelog"
  VERBATIM)
set(fastsse_deb_docs "${fastsse_deb_out}/changelog.gz")

# The man page, made from `fastsse --help` by help2man, so that it lists every setting the binary
# has. Not in the sanitizer build (nobody installs it).
find_program(FASTSSE_HELP2MAN help2man)
if(FASTSSE_HELP2MAN AND NOT FASTSSE_SANITIZE)
  add_custom_command(OUTPUT "${fastsse_deb_out}/fastsse.1.gz"
    COMMAND ${CMAKE_COMMAND} -E make_directory "${fastsse_deb_out}"
    COMMAND ${FASTSSE_HELP2MAN} --no-info --section=1 --name "Server-Sent Events over FastCGI, behind nginx or Apache"
            --include "${FASTSSE_DEB_DIR}/fastsse.h2m" --output "${fastsse_deb_out}/fastsse.1" $<TARGET_FILE:fastsse>
    COMMAND gzip -9nf "${fastsse_deb_out}/fastsse.1"
    DEPENDS fastsse "${FASTSSE_DEB_DIR}/fastsse.h2m"
    VERBATIM)
  list(APPEND fastsse_deb_docs "${fastsse_deb_out}/fastsse.1.gz")
  install(FILES "${fastsse_deb_out}/fastsse.1.gz" DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
elseif(NOT FASTSSE_SANITIZE)
  message(STATUS "help2man not found: no man page (apt-get install help2man)")
endif()
add_custom_target(fastsse_deb_docs ALL DEPENDS ${fastsse_deb_docs})
install(FILES "${FASTSSE_DEB_DIR}/copyright" "${fastsse_deb_out}/changelog.gz" DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME fastsse)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # fastsse_<version>_<arch>.deb
set(CPACK_PACKAGE_CONTACT "${FASTSSE_DEB_MAINTAINER}")
# The install rules write the units' paths from the prefix at install time: CPack must install with
# the real prefix (/usr) into a DESTDIR, not with its staging folder as the prefix.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)  # the RelWithDebInfo binary, stripped (lintian: unstripped-binary-or-object)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # Depends: from the libraries the binary links
# Nothing else is needed at run time: the maintainer scripts' deb-systemd-helper and
# deb-systemd-invoke are init-system-helpers (Essential), and the web server in front may be any.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "nginx | apache2")
set(CPACK_DEBIAN_PACKAGE_SECTION httpd)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Server-Sent Events over FastCGI, behind nginx or Apache")
# The extended description, its lines as dpkg shows them (at most 80 characters; "." a blank line).
string(JOIN "\n" CPACK_DEBIAN_PACKAGE_DESCRIPTION
  "fastsse is a FastCGI responder: nginx or Apache hands it the request, and it"
  "answers with a text/event-stream that it keeps open, flushing every event, for"
  "as long as the client stays. One process holds ten thousand streams."
  "."
  "Its producers are a clock, the live output of commands declared in its config"
  "file, and a Mercure hub (in memory, or shared by several processes through"
  "Redis)."
  "."
  "The package enables fastsse.socket (/run/fastsse.sock, group www-data); the"
  "nginx and Apache snippets to include are in /usr/share/fastsse/.")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  "${FASTSSE_DEB_DIR}/conffiles" "${FASTSSE_DEB_DIR}/postinst" "${FASTSSE_DEB_DIR}/prerm" "${FASTSSE_DEB_DIR}/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)  # scripts 0755, conffiles 0644, whatever the checkout's modes
include(CPack)
