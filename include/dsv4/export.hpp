// dsv4/export.hpp: symbol visibility. Everything public is marked DSV4_API; the rest is hidden.
#pragma once
#if defined(_WIN32)
#  define DSV4_API __declspec(dllexport)
#else
#  define DSV4_API __attribute__((visibility("default")))
#endif
