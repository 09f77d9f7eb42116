#include "tests/fakes/test_certs.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace baq::testing {
namespace {

absl::Status Run(const std::string& dir, const std::string& command) {
  const std::string full = absl::StrCat("cd '", dir, "' && ", command, " >>openssl.log 2>&1");
  if (std::system(full.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("test PKI: `", command, "` failed; see ", dir,
                                            "/openssl.log"));
  }
  return absl::OkStatus();
}

constexpr char kNewKey[] = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

absl::Status MakeCa(const std::string& dir, const std::string& name) {
  return Run(dir, absl::StrCat("openssl req -x509 ", kNewKey, " -days 2 -subj /CN=", name,
                               " -keyout ", name, ".key -out ", name, ".crt"));
}

// A leaf certificate `name`.crt signed by `ca`, with `san` (may be empty).
absl::Status MakeLeaf(const std::string& dir, const std::string& ca, const std::string& name,
                      const std::string& cn, const std::string& san) {
  BAQ_RETURN_IF_ERROR(Run(dir, absl::StrCat("openssl req ", kNewKey, " -subj /CN=", cn,
                                            " -keyout ", name, ".key -out ", name, ".csr")));
  std::ofstream(absl::StrCat(dir, "/", name, ".ext"))
      << "basicConstraints=CA:FALSE\n"
      << (san.empty() ? "" : absl::StrCat("subjectAltName=", san, "\n"));
  return Run(dir, absl::StrCat("openssl x509 -req -days 2 -in ", name, ".csr -CA ", ca,
                               ".crt -CAkey ", ca, ".key -CAcreateserial -extfile ", name,
                               ".ext -out ", name, ".crt"));
}

}  // namespace

absl::StatusOr<TestPki> MakeTestPki(const std::string& dir) {
  if (std::system("openssl version >/dev/null 2>&1") != 0) {
    return absl::FailedPreconditionError("the openssl command is not installed");
  }
  BAQ_RETURN_IF_ERROR(MakeCa(dir, "baq-test-ca"));
  BAQ_RETURN_IF_ERROR(MakeCa(dir, "baq-other-ca"));
  BAQ_RETURN_IF_ERROR(
      MakeLeaf(dir, "baq-test-ca", "server", "localhost", "DNS:localhost,IP:127.0.0.1"));
  BAQ_RETURN_IF_ERROR(MakeLeaf(dir, "baq-test-ca", "client", "baq-test-client", ""));
  BAQ_RETURN_IF_ERROR(MakeLeaf(dir, "baq-other-ca", "intruder", "baq-intruder", ""));
  TestPki pki;
  pki.ca_cert = dir + "/baq-test-ca.crt";
  pki.other_ca_cert = dir + "/baq-other-ca.crt";
  pki.server_cert = dir + "/server.crt";
  pki.server_key = dir + "/server.key";
  pki.client_cert = dir + "/client.crt";
  pki.client_key = dir + "/client.key";
  pki.other_client_cert = dir + "/intruder.crt";
  pki.other_client_key = dir + "/intruder.key";
  return pki;
}

}  // namespace baq::testing
