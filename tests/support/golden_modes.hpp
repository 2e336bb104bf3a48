// A golden fed every way a session can take it (whole, in the golden's chunks, prefill then one
// token at a time), each checked against the golden's logits (relative L2 <= 1e-4, argmax equal at
// every position). Doctest assertions: call it from a test case.
#pragma once
#include <memory>
#include <string>

#include "dsv4/model.hpp"
#include "support/support.hpp"

namespace dsv4::test {

void check_golden_modes(const std::shared_ptr<const Model>& model, const Golden& g, const std::string& name, const std::string& on);

}  // namespace dsv4::test
