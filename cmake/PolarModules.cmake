# One static library per module (src/<name>/*.cpp -> polar_<name>), linked to the modules it
# declares. A module sees only its own public headers and those of the modules below it: its
# include path is a view (build/include-views/<name>/polar/<m> -> include/polar/<m>, one link per
# module it may use), so an include that goes upward fails to compile. Modules must be declared
# bottom-up (a dependency must exist already), which also makes the graph acyclic.
# scripts/check_layering.py reads these declarations and checks the includes of every file.
#
#   polar_module(<name> [DEPS <module>...] [LIBS <target>...])
#
# Every module links polar_base (LibTorch, json, spdlog, fmt, compile flags). Translation units
# that include LibTorch (directly or through a project header) get the shared precompiled header;
# the others are compiled without it.

add_library(polar_base INTERFACE)
target_link_libraries(polar_base INTERFACE polar_fmt_shim polar::torch nlohmann_json::nlohmann_json spdlog::spdlog
                                           Threads::Threads)
target_compile_options(polar_base INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)

# The precompiled header's owner: one empty unit compiled with the flags every module shares.
add_library(polar_pch OBJECT "${PROJECT_SOURCE_DIR}/cmake/pch.cpp")
target_link_libraries(polar_pch PRIVATE polar_base)
target_precompile_headers(polar_pch PRIVATE "${PROJECT_SOURCE_DIR}/cmake/pch.h")

set_property(GLOBAL PROPERTY POLAR_MODULES "")

# OUT = TRUE when `file` includes a header matching `pattern`, directly or through the project
# headers it includes ("polar/..." from include/, "x.h" beside the file). Memoized per `tag`.
function(_polar_includes file tag pattern out)
  get_property(known GLOBAL PROPERTY "POLAR_${tag}_${file}" SET)
  if(known)
    get_property(value GLOBAL PROPERTY "POLAR_${tag}_${file}")
    set(${out} ${value} PARENT_SCOPE)
    return()
  endif()
  set_property(GLOBAL PROPERTY "POLAR_${tag}_${file}" FALSE)  # breaks include cycles
  set(value FALSE)
  file(STRINGS "${file}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
  get_filename_component(dir "${file}" DIRECTORY)
  foreach(line IN LISTS lines)
    if(line MATCHES "${pattern}")
      set(value TRUE)
      break()
    endif()
    if(line MATCHES "\"([^\"]+)\"")
      set(inc "${CMAKE_MATCH_1}")
      set(target "")
      if(inc MATCHES "^polar/")
        set(target "${PROJECT_SOURCE_DIR}/include/${inc}")
      elseif(EXISTS "${dir}/${inc}")
        set(target "${dir}/${inc}")
      endif()
      if(target AND EXISTS "${target}")
        _polar_includes("${target}" ${tag} "${pattern}" sub)
        if(sub)
          set(value TRUE)
          break()
        endif()
      endif()
    endif()
  endforeach()
  set_property(GLOBAL PROPERTY "POLAR_${tag}_${file}" ${value})
  set(${out} ${value} PARENT_SCOPE)
endfunction()

# cpp-httplib's defines (TLS and compression support) change its class layouts, so every unit that
# includes <httplib.h> (directly or through a project header) is compiled with the library's own
# (HTTPLIB_CFLAGS, from its .pc file) and without the precompiled header; the other units keep
# their flags (and their ccache entries).
function(polar_httplib_sources)
  foreach(src IN LISTS ARGN)
    _polar_includes("${src}" HTTPLIB "[<\"]httplib\\.h[>\"]" uses)
    if(uses)
      set_source_files_properties("${src}" PROPERTIES COMPILE_OPTIONS "${HTTPLIB_CFLAGS}" SKIP_PRECOMPILE_HEADERS ON)
    endif()
  endforeach()
endfunction()

# The shared precompiled header for the units of `target` that use LibTorch.
function(polar_torch_pch target)
  get_target_property(sources ${target} SOURCES)
  get_target_property(source_dir ${target} SOURCE_DIR)
  set(any FALSE)
  foreach(src IN LISTS sources)
    if(NOT src MATCHES "\\.cpp$")
      continue()
    endif()
    if(NOT IS_ABSOLUTE "${src}")
      set(src "${source_dir}/${src}")
    endif()
    _polar_includes("${src}" TORCH "[<\"](torch|ATen|c10)/" uses)
    if(uses)
      set(any TRUE)
    else()
      set_source_files_properties("${src}" TARGET_DIRECTORY ${target} PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
    endif()
  endforeach()
  if(any)
    target_precompile_headers(${target} REUSE_FROM polar_pch)
  endif()
endfunction()

function(polar_module name)
  cmake_parse_arguments(M "" "" "DEPS;LIBS" ${ARGN})
  set(closure ${name})
  foreach(dep IN LISTS M_DEPS)
    if(NOT TARGET polar_${dep})
      message(FATAL_ERROR "polar_module(${name}): dependency '${dep}' is not declared yet (declare modules bottom-up)")
    endif()
    get_property(dep_closure GLOBAL PROPERTY POLAR_CLOSURE_${dep})
    list(APPEND closure ${dep_closure})
  endforeach()
  list(REMOVE_DUPLICATES closure)
  set_property(GLOBAL PROPERTY POLAR_CLOSURE_${name} ${closure})
  set_property(GLOBAL APPEND PROPERTY POLAR_MODULES ${name})

  # The header view: include/polar/<m> for every module in the closure, nothing else.
  set(view "${CMAKE_BINARY_DIR}/include-views/${name}")
  file(MAKE_DIRECTORY "${view}/polar")
  file(GLOB old_links "${view}/polar/*")
  foreach(link IN LISTS old_links)
    file(REMOVE "${link}")
  endforeach()
  foreach(m IN LISTS closure)
    if(IS_DIRECTORY "${PROJECT_SOURCE_DIR}/include/polar/${m}")
      file(CREATE_LINK "${PROJECT_SOURCE_DIR}/include/polar/${m}" "${view}/polar/${m}" SYMBOLIC)
    endif()
  endforeach()

  file(GLOB sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/src/${name}/*.cpp")
  add_library(polar_${name} STATIC ${sources})
  target_include_directories(polar_${name} PUBLIC "${view}")
  list(TRANSFORM M_DEPS PREPEND polar_ OUTPUT_VARIABLE dep_targets)
  target_link_libraries(polar_${name} PUBLIC polar_base ${dep_targets} ${M_LIBS})
  polar_torch_pch(polar_${name})
  polar_httplib_sources(${sources})
endfunction()
