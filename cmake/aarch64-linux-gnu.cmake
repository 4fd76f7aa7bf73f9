# CMake toolchain file: cross-compile the host C++ (CPU scan kernel, ONNX Runtime op, tests, C++
# runner) for 64-bit Arm Linux (Jetson's CPU, Arm servers) with Debian's g++-aarch64-linux-gnu.
#
#   apt-get install g++-aarch64-linux-gnu qemu-user
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DREMAMBER_WITH_CUDA=OFF
#   cmake --build build-aarch64 -j && ctest --test-dir build-aarch64   # tests run under qemu-aarch64
#
# CUDA is not cross-compiled here: this machine's nvcc targets x86-64 hosts only, so the CUDA
# kernels and the TensorRT plugin library are built natively on the Jetson (README, "Jetson").
# scripts/cross_aarch64.sh runs the whole check, plugin host code compiled (not linked) included.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(_triple aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${_triple}-gcc)
set(CMAKE_CXX_COMPILER ${_triple}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${_triple})

# Libraries and packages come from the target sysroot only; programs (cmake's helpers) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${_triple})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest (and try_run) start the aarch64 executables through user-mode QEMU with the target's
# dynamic loader and libraries.
find_program(REMAMBER_QEMU_AARCH64 qemu-aarch64)
if(REMAMBER_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${REMAMBER_QEMU_AARCH64};-L;/usr/${_triple}")
endif()
