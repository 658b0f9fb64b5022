# The CUDA toolkit's targets and NCCL (tessel::nccl), for Tessel's build and for its installed
# package config (TesselConfig.cmake, where Tessel was built with CUDA).
#
# Debian's CMake 3.25 FindCUDAToolkit marks CUDA::nvToolsExt deprecated whenever the project
# requires 3.25 or later, without checking that the target exists, and CUDA 13 ships no
# nvToolsExt: "set_property could not find TARGET CUDA::nvToolsExt". Tessel uses no nvToolsExt,
# so the module is run as for a project that requires 3.24, which skips that one step
# (scripts/check-stock-cmake.sh configures against Debian's unmodified module).
#
# With TESSEL_CUDA_OPTIONAL (the package config) a machine without CUDA or NCCL is not an
# error: tessel::nccl is then left undefined, and so is Tessel::cuda.
if(TESSEL_CUDA_OPTIONAL)
  set(tessel_cuda_required QUIET)
else()
  set(tessel_cuda_required REQUIRED)
endif()
if(NOT TARGET tessel::nccl)
  set(TESSEL_REQUIRED_CMAKE ${CMAKE_MINIMUM_REQUIRED_VERSION})
  set(CMAKE_MINIMUM_REQUIRED_VERSION 3.24)
  find_package(CUDAToolkit ${tessel_cuda_required})
  set(CMAKE_MINIMUM_REQUIRED_VERSION ${TESSEL_REQUIRED_CMAKE})
  if(TESSEL_CUDA_OPTIONAL)
    set(tessel_cuda_required "")
  endif()
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include ${tessel_cuda_required})
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib /usr/local/cuda/lib64 ${tessel_cuda_required})
endif()
if(NOT TARGET tessel::nccl AND CUDAToolkit_FOUND AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
  add_library(tessel::nccl SHARED IMPORTED)
  set_target_properties(tessel::nccl PROPERTIES
    IMPORTED_LOCATION "${NCCL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
endif()
