# `cmake --install build --prefix P` installs Tessel for programs outside its tree:
#   P/include/tessel/...        <tessel/tessel.h>, every header it reaches, and the generated
#                               protobuf headers ("proto/plan.pb.h") for programs that read plans
#   P/lib/libtessel.so          (and libtessel_cuda.so where CUDA was built)
#   P/bin/tessel-launch, tessel-plan, tessel-checkpoint
#   P/lib/cmake/Tessel/         find_package(Tessel) -> Tessel::tessel (Tessel::cuda with CUDA)
#   P/lib/pkgconfig/tessel.pc   pkg-config --cflags --libs tessel
# and `cpack -G DEB` in the build folder packs the same files as a Debian package.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The headers <tessel/tessel.h> reaches, and nothing private. Tessel's headers name each other
# from the source root ("core/shape.h"), so a user's compiler searches P/include/tessel for
# quoted includes only (-iquote): <...> includes of the user's never resolve into Tessel.
# tests/install/install_test.sh checks that this list is exactly what tessel.h reaches.
set(TESSEL_PUBLIC_HEADERS
  tessel.h
  actors/executor.h
  comm/job.h
  core/dtype.h core/error.h core/logging.h core/shape.h core/tensor.h
  graph/compile.h graph/graph.h graph/serialize.h
  ops/attributes.h ops/ops.h ops/registry.h ops/schedule.h
  runtime/checkpoint.h runtime/interpreter.h runtime/session.h
  sbp/sbp.h)
foreach(header ${TESSEL_PUBLIC_HEADERS})
  get_filename_component(folder ${header} DIRECTORY)
  install(FILES ${header} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tessel/${folder} COMPONENT tessel)
endforeach()
install(FILES ${TESSEL_PROTO_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tessel/proto COMPONENT tessel)

target_include_directories(tessel INTERFACE $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_compile_options(tessel INTERFACE
  "$<INSTALL_INTERFACE:SHELL:-iquote $<INSTALL_PREFIX>/${CMAKE_INSTALL_INCLUDEDIR}/tessel>")

# Installed programs find libtessel beside them, wherever the prefix is.
set(tessel_programs tessel-launch tessel-plan tessel-checkpoint)
set_target_properties(tessel ${tessel_programs} PROPERTIES
  INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
install(TARGETS tessel EXPORT TesselTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT tessel NAMELINK_COMPONENT tessel)
install(TARGETS ${tessel_programs} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tessel)
set(tessel_config_dir ${CMAKE_INSTALL_LIBDIR}/cmake/Tessel)
install(EXPORT TesselTargets NAMESPACE Tessel:: DESTINATION ${tessel_config_dir} COMPONENT tessel)
if(TESSEL_HAVE_CUDA)
  set_target_properties(tessel_cuda PROPERTIES EXPORT_NAME cuda INSTALL_RPATH "$ORIGIN"
    VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  install(TARGETS tessel_cuda EXPORT TesselCudaTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT tessel)
  install(EXPORT TesselCudaTargets NAMESPACE Tessel:: DESTINATION ${tessel_config_dir} COMPONENT tessel)
  install(FILES cmake/TesselCUDA.cmake DESTINATION ${tessel_config_dir} COMPONENT tessel)
endif()

configure_package_config_file(cmake/TesselConfig.cmake.in ${PROJECT_BINARY_DIR}/TesselConfig.cmake
  INSTALL_DESTINATION ${tessel_config_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/TesselConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/TesselConfig.cmake ${PROJECT_BINARY_DIR}/TesselConfigVersion.cmake
  cmake/TesselCAF.cmake DESTINATION ${tessel_config_dir} COMPONENT tessel)

# pkg-config: the paths are relative to the .pc file, so a moved prefix still works.
file(RELATIVE_PATH tessel_pc_to_prefix /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(cmake/tessel.pc.in ${PROJECT_BINARY_DIR}/tessel.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/tessel.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT tessel)

# A Debian package for the nodes of a cluster: `cpack -G DEB` in the build folder, then
# `apt install ./tessel_*.deb`. Its runtime dependencies come from dpkg-shlibdeps; the -dev
# packages that find_package(Tessel) needs are recommended (nodes that only run jobs skip them).
set(CPACK_PACKAGE_NAME tessel)
set(CPACK_PACKAGE_VENDOR "The Tessel developers")
set(CPACK_PACKAGE_CONTACT "The Tessel developers <tessel@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Distributed deep-learning dataflow framework (library, headers, launcher)")
set(CPACK_PACKAGE_INSTALL_DIRECTORY tessel)
set(CPACK_COMPONENTS_ALL tessel)   # the tests' and apps' own files are not packed
set(CPACK_DEB_COMPONENT_INSTALL OFF)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)  # a shlibs file and the ldconfig trigger
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS
  "libprotobuf-dev, libgoogle-glog-dev, libcaf-dev, libucx-dev, libssl-dev, zlib1g-dev, cmake, pkg-config")
include(CPack)
