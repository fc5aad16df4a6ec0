# POLAR_CUDA=AUTO|ON|OFF.
#   AUTO: with nvcc, every .cu under src/kernels/ is compiled (target polar_kernels, also reachable
#         as polar_kernels_check) so a broken kernel fails the build; with a CUDA LibTorch as well
#         the objects are linked into polar_core and POLAR_WITH_CUDA=1 is defined.
#   ON:   as AUTO, but a missing nvcc or a CPU-only LibTorch is a configure error.
#   OFF:  no CUDA at all (CPU references only).
# The .cu files include no LibTorch header (src/kernels/launch.h is their whole interface), so
# they compile the same against a CPU-only or a CUDA LibTorch, and quickly.
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
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    enable_language(CUDA)
    # A CUDA LibTorch's package config appends its own -gencode list (guessed from this
    # machine) to CMAKE_CUDA_FLAGS and turns CMAKE_CUDA_ARCHITECTURES off. Those flags are for
    # torch extensions; ours are set per target below, so start from the user's flags only.
    set(POLAR_CUDA_FLAGS "" CACHE STRING "Extra nvcc flags for the polar kernels")
    set(CMAKE_CUDA_FLAGS "${POLAR_CUDA_FLAGS}")
    add_library(polar_kernels OBJECT ${POLAR_CU_SOURCES})
    set_target_properties(polar_kernels PROPERTIES
      CUDA_ARCHITECTURES "${POLAR_CUDA_ARCHITECTURES}"
      CUDA_STANDARD 17
      CUDA_STANDARD_REQUIRED ON
      POSITION_INDEPENDENT_CODE ON)
    target_include_directories(polar_kernels PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/include")
    target_compile_options(polar_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo -Xptxas=-warn-spills>)
    add_custom_target(polar_kernels_check DEPENDS polar_kernels)
    if(_polar_torch_has_cuda)
      set(POLAR_WITH_CUDA ON)
      target_sources(polar_core PRIVATE $<TARGET_OBJECTS:polar_kernels>)
      target_compile_definitions(polar_core PUBLIC POLAR_WITH_CUDA=1)
      target_compile_definitions(polar_kernels PRIVATE POLAR_WITH_CUDA=1)
      # The kernels' launches need the CUDA runtime; LibTorch links the shared one already.
      find_package(CUDAToolkit REQUIRED)
      target_link_libraries(polar_core PUBLIC CUDA::cudart)

      # Kernel microbenchmark (fused vs unfused LibTorch, copy bandwidth, matmul peak); used by
      # scripts/device/check.sh on a GPU machine.
      add_executable(polar_kernel_bench "${CMAKE_CURRENT_SOURCE_DIR}/scripts/device/kernel_bench_main.cpp")
      target_link_libraries(polar_kernel_bench PRIVATE polar_core)
      target_precompile_headers(polar_kernel_bench REUSE_FROM polar_core)
      set_target_properties(polar_kernel_bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}")
    elseif(POLAR_CUDA STREQUAL "ON")
      message(FATAL_ERROR "POLAR_CUDA=ON but LibTorch at ${Torch_DIR} is a CPU-only build (no torch_cuda target)")
    endif()
  elseif(POLAR_CUDA STREQUAL "ON")
    message(FATAL_ERROR "POLAR_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  endif()
endif()
message(STATUS "polar: CUDA kernels compiled: ${CMAKE_CUDA_COMPILER}; linked: ${POLAR_WITH_CUDA} "
               "(LibTorch CUDA: ${_polar_torch_has_cuda}, archs ${POLAR_CUDA_ARCHITECTURES})")
