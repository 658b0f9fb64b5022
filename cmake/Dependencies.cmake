# Finds every dependency of Tessel and exposes each as a target.
# Debian 12 packages, installed by scripts/setup.sh; CUDA and NCCL from /usr/local/cuda.

find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)
find_package(Protobuf REQUIRED)
find_package(glog REQUIRED)
# GoogleTest and Google Benchmark come with `scripts/setup.sh --test`; a machine set up only to
# run Tessel builds without the tests (TESSEL_BUILD_TESTS=AUTO) and without tessel-bench-kernels.
if(TESSEL_BUILD_TESTS STREQUAL "AUTO")
  find_package(GTest QUIET)
  if(GTest_FOUND)
    set(TESSEL_BUILD_TESTS ON)
  else()
    set(TESSEL_BUILD_TESTS OFF)
    message(STATUS "Tessel: GoogleTest not found (scripts/setup.sh --test installs it): building without the tests")
  endif()
elseif(TESSEL_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
find_package(benchmark QUIET)
find_package(ucx REQUIRED)   # ucx::ucp, ucx::uct, ucx::ucs
find_package(CLI11 REQUIRED)    # libcli11-dev: every program's command line (apps/cli/flags.h)
find_package(nlohmann_json REQUIRED)  # nlohmann-json3-dev: the trace and metrics files
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

include(${CMAKE_CURRENT_LIST_DIR}/TesselCAF.cmake)  # caf::core, caf::io

# oneDNN (libdnnl-dev): the bf16 matmul kernel and tessel-bench-matmul. Debian builds it for
# OpenMP, whose runtime (libgomp) Tessel names to keep each caller to one OpenMP thread. Without
# it Tessel builds, and a bf16 matmul says that no kernel is registered.
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
find_library(DNNL_LIBRARY dnnl)
find_library(GOMP_LIBRARY NAMES gomp libgomp.so.1)
set(TESSEL_HAVE_DNNL OFF)
if(DNNL_INCLUDE_DIR AND DNNL_LIBRARY AND GOMP_LIBRARY)
  add_library(tessel::dnnl INTERFACE IMPORTED)
  set_target_properties(tessel::dnnl PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${DNNL_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${DNNL_LIBRARY};${GOMP_LIBRARY}")
  set(TESSEL_HAVE_DNNL ON)
else()
  message(STATUS "Tessel: oneDNN not found (libdnnl-dev): no bf16 matmul kernel, no tessel-bench-matmul")
endif()

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
    include(${CMAKE_CURRENT_LIST_DIR}/TesselCUDA.cmake)  # CUDA::cudart, CUDA::cublas, tessel::nccl
    set(TESSEL_HAVE_CUDA ON)
    message(STATUS "Tessel: CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${NCCL_LIBRARY}")
  else()
    message(STATUS "Tessel: nvcc not found, building without CUDA")
  endif()
endif()
