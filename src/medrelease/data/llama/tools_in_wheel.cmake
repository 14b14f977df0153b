# Builds llama.cpp's `llama-imatrix` and `llama-quantize` inside llama-cpp-python's own build.
#
# `make install` passes this file to pip through
#   CMAKE_ARGS=-DCMAKE_PROJECT_llama_cpp_INCLUDE=<this file>
# CMake includes it right after llama-cpp-python's `project(llama_cpp)` (no other project has
# that name, so other CMake builds ignore it). The tools link the very libllama, libggml* and
# libllama-common that the bindings load: llama.cpp is compiled once, and only the tools' own
# three source files are extra. They are installed into the wheel at
# llama_cpp/lib/medrelease-llama-tools/ with a BUILD_INFO stamp that `medrelease setup` checks
# (src/medrelease/quantize/gguf/tools.py). pip caches the built wheel, tools included, so a
# second install compiles nothing.

function(_medrelease_add_llama_tools)
    set(tools "${CMAKE_CURRENT_SOURCE_DIR}/vendor/llama.cpp/tools")
    if(NOT EXISTS "${tools}/imatrix/CMakeLists.txt" OR NOT EXISTS "${tools}/quantize/CMakeLists.txt")
        message(WARNING "medrelease: no llama.cpp tools sources in ${tools}; tools not built")
        return()
    endif()
    # llama.cpp's own CMakeLists for the two tools. They name `llama` and `llama-common` before
    # vendor/llama.cpp defines them; CMake resolves the names when it generates the build.
    # Static llama-quantize-impl: it goes into llama-quantize itself, one file fewer to ship.
    set(BUILD_SHARED_LIBS OFF)
    set(LLAMA_TOOLS_INSTALL OFF)  # installed below, next to the bindings' libraries
    add_subdirectory("${tools}/quantize" "${CMAKE_CURRENT_BINARY_DIR}/medrelease-tools/quantize")
    add_subdirectory("${tools}/imatrix" "${CMAKE_CURRENT_BINARY_DIR}/medrelease-tools/imatrix")
    # Subdirectories cannot be added in a deferred call, install rules for llama-common can
    # only be made once vendor/llama.cpp has defined it: hence the two halves.
    cmake_language(DEFER DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" CALL _medrelease_install_llama_tools)
endfunction()

function(_medrelease_install_llama_tools)
    if(NOT TARGET llama OR NOT TARGET llama-common)
        message(FATAL_ERROR "medrelease: llama.cpp's llama/llama-common targets are missing")
    endif()
    set(dest "${SKBUILD_PLATLIB_DIR}/llama_cpp/lib/medrelease-llama-tools")
    set(targets llama-imatrix llama-quantize llama-common)
    # the tools and libllama-common sit in dest; libllama and libggml* one level up
    set_target_properties(${targets} PROPERTIES
        INSTALL_RPATH "$ORIGIN:$ORIGIN/.."
        BUILD_WITH_INSTALL_RPATH TRUE)
    install(TARGETS ${targets}
        RUNTIME DESTINATION "${dest}"
        LIBRARY DESTINATION "${dest}")

    # the stamp the from-source build writes too, so setup can tell which bindings they match.
    # pip does not tell a build which sdist it came from, so the source is pinned by a hash of
    # the vendored tree instead, the same as
    #   cd vendor/llama.cpp && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs sha256sum | sha256sum
    file(READ "${CMAKE_CURRENT_SOURCE_DIR}/llama_cpp/__init__.py" init)
    string(REGEX MATCH "__version__ = \"([^\"]+)\"" _ "${init}")
    set(version "${CMAKE_MATCH_1}")
    set(root "${CMAKE_CURRENT_SOURCE_DIR}/vendor/llama.cpp")
    file(GLOB_RECURSE files LIST_DIRECTORIES false RELATIVE "${root}" "${root}/*")
    list(SORT files)
    set(listing "")
    foreach(name IN LISTS files)
        file(SHA256 "${root}/${name}" digest)
        string(APPEND listing "${digest}  ${name}\n")
    endforeach()
    string(SHA256 tree "${listing}")
    set(info "${CMAKE_CURRENT_BINARY_DIR}/medrelease-tools/BUILD_INFO")
    file(WRITE "${info}" "llama-cpp-python==${version} vendor/llama.cpp "
        "(same build as the bindings; source tree sha256 ${tree})\n")
    install(FILES "${info}" DESTINATION "${dest}")
endfunction()

_medrelease_add_llama_tools()
