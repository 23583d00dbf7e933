# Installs the systemd unit and leverd.conf; run by `cmake --install` (and so
# by CPack) from packaging/CMakeLists.txt, which sets LEVER_PACKAGING_DIR,
# LEVER_PACKAGING_BINARY_DIR, LEVER_BINDIR and LEVER_DOCDIR first.
#
# Under the prefix /usr (the .deb) they go where Debian 12 keeps them,
# /lib/systemd/system and /etc/lever; under any other prefix P to
# P/lib/systemd/system and P/etc/lever, the unit naming P's leverd and config.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(etc_dir "/etc/lever")
  set(unit_dir "/lib/systemd/system")
else()
  set(etc_dir "${prefix}/etc/lever")
  set(unit_dir "${prefix}/lib/systemd/system")
endif()
set(LEVERD "${prefix}/${LEVER_BINDIR}/leverd")
set(LEVERD_CONF "${etc_dir}/leverd.conf")
set(LEVER_DOCDIR "${prefix}/${LEVER_DOCDIR}")
set(unit "${LEVER_PACKAGING_BINARY_DIR}/leverd.service")
configure_file("${LEVER_PACKAGING_DIR}/leverd.service.in" "${unit}" @ONLY)
# file(INSTALL) puts $DESTDIR in front, as install() does (CPack's staging).
file(INSTALL DESTINATION "${unit_dir}" TYPE FILE FILES "${unit}")
file(INSTALL DESTINATION "${etc_dir}" TYPE FILE FILES "${LEVER_PACKAGING_DIR}/leverd.conf")
