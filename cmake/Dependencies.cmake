# Finds every dependency of Tessel and exposes each as a target.
# Debian 12 packages, installed by scripts/setup.sh; CUDA and NCCL from /usr/local/cuda.

find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)
find_package(Protobuf REQUIRED)
find_package(glog REQUIRED)
find_package(GTest REQUIRED)
find_package(benchmark REQUIRED)
find_package(ucx REQUIRED)   # ucx::ucp, ucx::uct, ucx::ucs
find_package(OpenSSL REQUIRED)  # libssl-dev: the coordinator's gate proves the job token by HMAC-SHA256 (comm/gate.h)

# OpenBLAS: Debian's OpenBLASConfig.cmake gives variables, not a target.
find_path(OPENBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas REQUIRED)
find_library(OPENBLAS_LIBRARY NAMES openblas REQUIRED)
add_library(tessel::openblas INTERFACE IMPORTED)
set_target_properties(tessel::openblas PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${OPENBLAS_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${OPENBLAS_LIBRARY}")

# xxHash (libxxhash-dev): the checksums of checkpoints. Debian ships a pkg-config file only.
find_path(XXHASH_INCLUDE_DIR xxhash.h REQUIRED)
find_library(XXHASH_LIBRARY NAMES xxhash REQUIRED)
add_library(tessel::xxhash INTERFACE IMPORTED)
set_target_properties(tessel::xxhash PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${XXHASH_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${XXHASH_LIBRARY}")

# CAF 0.17 ships neither a CMake config nor a pkg-config file on Debian.
find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
find_library(CAF_CORE_LIBRARY caf_core REQUIRED)
find_library(CAF_IO_LIBRARY caf_io REQUIRED)
add_library(caf::core SHARED IMPORTED)
set_target_properties(caf::core PROPERTIES
  IMPORTED_LOCATION "${CAF_CORE_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES Threads::Threads)
add_library(caf::io SHARED IMPORTED)
set_target_properties(caf::io PROPERTIES
  IMPORTED_LOCATION "${CAF_IO_LIBRARY}"
  INTERFACE_LINK_LIBRARIES caf::core)

# CUDA, cuBLAS and NCCL: built whenever nvcc is found; tests skip where no GPU is present.
set(TESSEL_HAVE_CUDA OFF)
if(TESSEL_WITH_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    # Debian's CMake 3.25 FindCUDAToolkit marks CUDA::nvToolsExt deprecated whenever the project
    # requires 3.25 or later, without checking that the target exists, and CUDA 13 ships no
    # nvToolsExt: "set_property could not find TARGET CUDA::nvToolsExt". Tessel uses no
    # nvToolsExt, so the module is run as for a project that requires 3.24, which skips that
    # one step (scripts/check-stock-cmake.sh configures against Debian's unmodified module).
    set(TESSEL_REQUIRED_CMAKE ${CMAKE_MINIMUM_REQUIRED_VERSION})
    set(CMAKE_MINIMUM_REQUIRED_VERSION 3.24)
    find_package(CUDAToolkit REQUIRED)
    set(CMAKE_MINIMUM_REQUIRED_VERSION ${TESSEL_REQUIRED_CMAKE})
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include REQUIRED)
    find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib /usr/local/cuda/lib64 REQUIRED)
    add_library(tessel::nccl SHARED IMPORTED)
    set_target_properties(tessel::nccl PROPERTIES
      IMPORTED_LOCATION "${NCCL_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
    set(TESSEL_HAVE_CUDA ON)
    message(STATUS "Tessel: CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${NCCL_LIBRARY}")
  else()
    message(STATUS "Tessel: nvcc not found, building without CUDA")
  endif()
endif()
