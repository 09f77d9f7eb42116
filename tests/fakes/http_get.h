// tests/fakes/http_get.h
//
// A minimal blocking HTTP/1.0 GET over a POSIX socket, for tests that scrape
// a real prometheus::Exposer. (It lives with the service fakes because only
// their tests use it.) Thread-safe.
#ifndef BAQ_TESTS_FAKES_HTTP_GET_H_
#define BAQ_TESTS_FAKES_HTTP_GET_H_

#include <string>

#include "absl/status/statusor.h"

namespace baq::testing {

// GETs http://127.0.0.1:<port><path>; returns the body of a 200 response.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

}  // namespace baq::testing

#endif  // BAQ_TESTS_FAKES_HTTP_GET_H_
