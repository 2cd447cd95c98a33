# Makes the ROS 2 PyPI wheels' exported CMake targets usable on this machine, writing nothing
# outside the build. Included after project() by every CMakeLists.txt of this repository.
#
# The wheels' *__rosidl_generator_pyExport.cmake files name two include directories of the
# machine that built them (/opt/python/cp311-cp311/include/python3.11 and its numpy include);
# CMake's generate step then fails with "Imported target ... includes non-existent path". At
# the end of configuring the including directory (cmake_language(DEFER), CMake >= 3.21), every
# imported target's missing INTERFACE_INCLUDE_DIRECTORIES entry is rewritten: a missing Python
# include becomes this interpreter's, a missing numpy include numpy.get_include(), any other
# missing entry is dropped. On a regular ROS install every directory exists: a no-op.

if(CMAKE_VERSION VERSION_LESS 3.21)
  message(STATUS "CMake ${CMAKE_VERSION} < 3.21: missing include directories of imported targets are not rewritten")
  return()
endif()

function(_scaocc_python_includes out_python out_numpy)
  if(NOT Python3_EXECUTABLE)
    find_package(Python3 REQUIRED COMPONENTS Interpreter)
  endif()
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c "import sysconfig; print(sysconfig.get_paths()['include'])"
    OUTPUT_VARIABLE python_include OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c "import numpy; print(numpy.get_include())"
    OUTPUT_VARIABLE numpy_include OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  set(${out_python} "${python_include}" PARENT_SCOPE)
  set(${out_numpy} "${numpy_include}" PARENT_SCOPE)
endfunction()

function(_scaocc_fix_wheel_includes)
  get_property(targets DIRECTORY PROPERTY IMPORTED_TARGETS)
  set(python_include "")
  set(numpy_include "")
  set(looked_up FALSE)
  foreach(target IN LISTS targets)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT dirs)
      continue()
    endif()
    set(fixed "")
    set(changed FALSE)
    foreach(dir IN LISTS dirs)
      if(dir MATCHES "^\\$<" OR EXISTS "${dir}")
        list(APPEND fixed "${dir}")
        continue()
      endif()
      if(NOT looked_up)
        _scaocc_python_includes(python_include numpy_include)
        set(looked_up TRUE)
      endif()
      set(changed TRUE)
      if(dir MATCHES "numpy" AND EXISTS "${numpy_include}")
        list(APPEND fixed "${numpy_include}")
      elseif(dir MATCHES "include/python3" AND EXISTS "${python_include}")
        list(APPEND fixed "${python_include}")
      endif()  # anything else missing is dropped
    endforeach()
    if(changed)
      list(REMOVE_DUPLICATES fixed)
      set_property(TARGET ${target} PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${fixed}")
      message(STATUS "${target}: missing include directories rewritten to ${fixed}")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER CALL _scaocc_fix_wheel_includes)
