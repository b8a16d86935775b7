# Finds hiredis and defines the target process_lock::hiredis, for the build and for the
# installed package alike. hiredis 1.x installs a CMake package with a hiredis::hiredis target;
# Debian's 0.14 ships a CMake file without a target, so fall back to hiredis.pc, which every
# hiredis ships.
if(NOT TARGET process_lock::hiredis)
  find_package(hiredis CONFIG QUIET)
  add_library(process_lock::hiredis INTERFACE IMPORTED)
  if(TARGET hiredis::hiredis)
    target_link_libraries(process_lock::hiredis INTERFACE hiredis::hiredis)
  else()
    find_package(PkgConfig REQUIRED)
    pkg_check_modules(process_lock_hiredis REQUIRED IMPORTED_TARGET hiredis>=0.14)
    target_link_libraries(process_lock::hiredis INTERFACE PkgConfig::process_lock_hiredis)
  endif()
endif()
