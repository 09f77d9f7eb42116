# CUDA and NCCL plug-ins (STYLE R4), both OFF by default (CI has no GPU).
#   BAQ_WITH_CUDA: enables the CUDA language (sm_90 unless CMAKE_CUDA_ARCHITECTURES
#                  is set) and compiles worker/cuda/*.
#   BAQ_WITH_NCCL: finds NCCL (nccl.h, libnccl) and compiles worker/nccl/nccl_communicator.cc.
# NCCL is searched in NCCL_ROOT (cache or environment), the CUDA toolkit and the
# system paths; libnccl.so.2 is accepted where no libnccl.so symlink exists
# (the pip nvidia-nccl wheels, runtime-only packages); NAMES_PER_DIR makes NCCL_ROOT win over
# a system libnccl.so, so the process loads the one libnccl.so.2 LibTorch was built with.
# Defines the imported target baq::nccl.
if(BAQ_WITH_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)  # H100 / H200 (see docs/building-on-gpu.md)
  endif()
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  if(NOT DEFINED CMAKE_CUDA_STANDARD)
    set(CMAKE_CUDA_STANDARD ${CMAKE_CXX_STANDARD})
  endif()
  enable_language(CUDA)
endif()

if(BAQ_WITH_CUDA OR BAQ_WITH_NCCL)
  if(NOT DEFINED CUDAToolkit_ROOT AND NOT DEFINED ENV{CUDAToolkit_ROOT} AND EXISTS /usr/local/cuda)
    set(CUDAToolkit_ROOT /usr/local/cuda)
  endif()
  find_package(CUDAToolkit REQUIRED)
endif()

if(BAQ_WITH_NCCL)
  set(NCCL_ROOT "$ENV{NCCL_ROOT}" CACHE PATH "NCCL install prefix (include/nccl.h, lib/libnccl.so)")
  set(_baq_nccl_hints ${NCCL_ROOT} ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR})
  foreach(dir ${CUDAToolkit_INCLUDE_DIRS})
    get_filename_component(parent ${dir} DIRECTORY)
    list(APPEND _baq_nccl_hints ${parent})
  endforeach()
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_baq_nccl_hints} PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR HINTS ${_baq_nccl_hints} ${CUDAToolkit_LIBRARY_DIR}
               PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu)
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
    message(FATAL_ERROR "BAQ_WITH_NCCL: NCCL not found (nccl.h: ${NCCL_INCLUDE_DIR}, "
                        "libnccl: ${NCCL_LIBRARY}); set -DNCCL_ROOT=<prefix>")
  endif()
  file(STRINGS ${NCCL_INCLUDE_DIR}/nccl.h _baq_nccl_version REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
  message(STATUS "NCCL: ${NCCL_LIBRARY}, ${NCCL_INCLUDE_DIR}/nccl.h (${_baq_nccl_version})")
  add_library(baq::nccl UNKNOWN IMPORTED)
  set_target_properties(baq::nccl PROPERTIES
    IMPORTED_LOCATION ${NCCL_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR}
    INTERFACE_LINK_LIBRARIES CUDA::cudart)
endif()
