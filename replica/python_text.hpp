#pragma once
// Python's text conventions that Knosc's messages and computed values follow (Knosc is written in Python,
// and its answers show numbers as Python prints them). Shared by the local validation of writes
// (replica/local_edit.cpp) and the loopback's computed views (daemon/item_views.cpp).

#include <string>

namespace knosc::replica {

// A float as Python's repr() writes it: shortest round-trip digits, "1.0", "1e-05", "1e+16", "nan", "-inf".
std::string py_float_repr(double v);

}  // namespace knosc::replica
