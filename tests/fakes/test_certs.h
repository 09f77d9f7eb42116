// tests/fakes/test_certs.h
//
// A throw-away PKI for TLS tests, made with the openssl command line into a
// scratch directory at test time (never committed): two independent CAs,
// and, signed by the first, a server certificate for localhost/127.0.0.1 and
// a client certificate; plus a client certificate signed by the second CA.
// EC P-256 keys, valid for two days. Thread-compatible.
//
// Example:
//   absl::StatusOr<TestPki> pki = MakeTestPki(MakeScratchDir());
//   if (!pki.ok()) GTEST_SKIP() << pki.status();  // no openssl binary
//   net::TlsOptions server{pki->server_cert, pki->server_key, pki->ca_cert};
#ifndef BAQ_TESTS_FAKES_TEST_CERTS_H_
#define BAQ_TESTS_FAKES_TEST_CERTS_H_

#include <string>

#include "absl/status/statusor.h"

namespace baq::testing {

struct TestPki {
  std::string ca_cert;           // CA "baq-test-ca".
  std::string other_ca_cert;     // CA "baq-other-ca", unrelated to ca_cert.
  std::string server_cert;       // CN=localhost, SAN localhost + 127.0.0.1; by ca_cert.
  std::string server_key;
  std::string client_cert;       // CN=baq-test-client; by ca_cert.
  std::string client_key;
  std::string other_client_cert;  // CN=baq-intruder; by other_ca_cert.
  std::string other_client_key;
};

// FailedPrecondition when openssl is not installed; Internal (with the
// command) when a step fails.
absl::StatusOr<TestPki> MakeTestPki(const std::string& dir);

}  // namespace baq::testing

#endif  // BAQ_TESTS_FAKES_TEST_CERTS_H_
