// cpp-httplib as Debian's libcpp-httplib.so was built: its classes change layout with these
// macros; the build passes them (pkg-config cpp-httplib), and the guards keep a compile without
// that flag consistent with the library. Tests that talk HTTP include this, not <httplib.h>.
#pragma once

#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include <httplib.h>
