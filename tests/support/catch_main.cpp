// tests/support/catch_main.cpp — Catch2 v2's main, compiled for the target of a cross build
// (Debian's catch2 package ships it prebuilt for the host only).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
