// The runtime's one exception type: a status code for the C boundary plus a message that names the problem.
#pragma once

#include <stdexcept>
#include <string>

#include "strsr/strsr_runtime.h"

namespace strsr {

class Error : public std::runtime_error {
public:
    Error(strsr_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    strsr_status status() const noexcept { return status_; }

private:
    strsr_status status_;
};

}  // namespace strsr
