#include "net/tls_credentials.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace baq::net {
namespace {

// Reads a PEM file whole; `what` names the flag's role in errors.
absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string message = absl::StrCat("cannot read ", what, " ", path, ": ",
                                             std::strerror(err));
    return err == EACCES ? absl::PermissionDeniedError(message) : absl::NotFoundError(message);
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  std::string pem = bytes.str();
  if (!absl::StrContains(pem, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " holds no PEM block"));
  }
  return pem;
}

absl::Status CheckPair(const TlsOptions& o) {
  if (o.cert_file.empty() != o.key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS certificate and key go together: certificate '", o.cert_file,
                     "', key '", o.key_file, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options) {
  if (!options.enabled()) return grpc::InsecureServerCredentials();
  BAQ_RETURN_IF_ERROR(CheckPair(options));
  if (options.cert_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a TLS server needs a certificate and key (got CA '", options.ca_file,
                     "' only)"));
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  BAQ_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(options.cert_file, "TLS certificate"));
  BAQ_ASSIGN_OR_RETURN(pair.private_key, ReadPem(options.key_file, "TLS key"));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (options.mutual()) {
    BAQ_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(options.ca_file, "TLS CA"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  } else {
    ssl.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsOptions& options) {
  if (!options.enabled()) return grpc::InsecureChannelCredentials();
  BAQ_RETURN_IF_ERROR(CheckPair(options));
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty()) {
    BAQ_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(options.ca_file, "TLS CA"));
  }
  if (!options.cert_file.empty()) {
    BAQ_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPem(options.cert_file, "TLS certificate"));
    BAQ_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem(options.key_file, "TLS key"));
  }
  return grpc::SslCredentials(ssl);
}

std::string DescribeServerSecurity(const TlsOptions& options) {
  if (!options.enabled()) return "plaintext (insecure: no --tls_cert)";
  return options.mutual() ? "mutual TLS" : "TLS";
}

}  // namespace baq::net
