# POLAR_CUDA=AUTO|ON|OFF.
#   AUTO: with nvcc (CMAKE_CUDA_COMPILER, CUDACXX, PATH, or the CUDA toolkit that FindCUDAToolkit
#         finds, e.g. /usr/local/cuda), every .cu under src/kernels/ is compiled (object library
#         polar_cuda_objects, also reachable as polar_kernels_check) so a broken kernel fails the
#         build; with a CUDA LibTorch as well the objects are linked into polar_kernels and
#         POLAR_WITH_CUDA=1 is defined for every module.
#   ON:   as AUTO, but a missing nvcc or a CPU-only LibTorch is a configure error.
#   OFF:  no CUDA at all (CPU references only).
# The .cu files include no LibTorch header (src/kernels/launch.h is their whole interface), so
# they compile the same against a CPU-only or a CUDA LibTorch, and quickly. Extra nvcc flags go in
# CMAKE_CUDA_FLAGS as usual (LibTorch's own -gencode list is not added: PolarDeps keeps it out).
set(POLAR_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures of the kernels (sm_80 A100, sm_90 H100/H200)")
file(GLOB POLAR_CU_SOURCES CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/src/kernels/*.cu")
set(POLAR_WITH_CUDA OFF)

# A CUDA build of LibTorch defines the imported target torch_cuda; a CPU-only one does not.
set(_polar_torch_has_cuda OFF)
if(TARGET torch_cuda)
  set(_polar_torch_has_cuda ON)
endif()

if(NOT POLAR_CUDA STREQUAL "OFF" AND POLAR_CU_SOURCES)
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    find_package(CUDAToolkit QUIET)
    if(CUDAToolkit_NVCC_EXECUTABLE)
      set(CMAKE_CUDA_COMPILER "${CUDAToolkit_NVCC_EXECUTABLE}" CACHE FILEPATH "" FORCE)
    endif()
  endif()
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    add_library(polar_cuda_objects OBJECT ${POLAR_CU_SOURCES})
    set_target_properties(polar_cuda_objects PROPERTIES
      CUDA_ARCHITECTURES "${POLAR_CUDA_ARCHITECTURES}"
      CUDA_STANDARD 17
      CUDA_STANDARD_REQUIRED ON
      POSITION_INDEPENDENT_CODE ON)
    target_include_directories(polar_cuda_objects PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/include")
    target_compile_options(polar_cuda_objects PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo -Xptxas=-warn-spills>)
    add_custom_target(polar_kernels_check DEPENDS polar_cuda_objects)
    if(_polar_torch_has_cuda)
      set(POLAR_WITH_CUDA ON)
      target_compile_definitions(polar_cuda_objects PRIVATE POLAR_WITH_CUDA=1)
      find_package(CUDAToolkit REQUIRED)
    elseif(POLAR_CUDA STREQUAL "ON")
      message(FATAL_ERROR "POLAR_CUDA=ON but LibTorch at ${Torch_DIR} is a CPU-only build (no torch_cuda target)")
    endif()
  elseif(POLAR_CUDA STREQUAL "ON")
    message(FATAL_ERROR "POLAR_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER or CUDACXX)")
  endif()
endif()
message(STATUS "polar: CUDA kernels compiled: ${CMAKE_CUDA_COMPILER}; linked: ${POLAR_WITH_CUDA} "
               "(LibTorch CUDA: ${_polar_torch_has_cuda}, archs ${POLAR_CUDA_ARCHITECTURES})")

# After the modules exist: the kernels go into polar_kernels, and the kernel microbenchmark
# (fused vs unfused LibTorch, copy bandwidth, matmul peak; scripts/device/check.sh) is built.
function(polar_link_cuda_kernels)
  if(NOT POLAR_WITH_CUDA)
    return()
  endif()
  target_compile_definitions(polar_base INTERFACE POLAR_WITH_CUDA=1)
  target_sources(polar_kernels PRIVATE $<TARGET_OBJECTS:polar_cuda_objects>)
  # The kernels' launches need the CUDA runtime; LibTorch links the shared one already.
  target_link_libraries(polar_kernels PUBLIC CUDA::cudart)
  add_executable(polar_kernel_bench "${PROJECT_SOURCE_DIR}/scripts/device/kernel_bench_main.cpp")
  target_link_libraries(polar_kernel_bench PRIVATE polar_core)
  target_precompile_headers(polar_kernel_bench REUSE_FROM polar_pch)
  set_target_properties(polar_kernel_bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}")
endfunction()
