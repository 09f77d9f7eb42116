// net/tls_credentials.h
//
// TLS for every gRPC channel of baq: builds grpc::ServerCredentials and
// grpc::ChannelCredentials from PEM files named by a TlsOptions (the daemons
// and the CLI fill it from their --tls_* flags). With no file named, the
// result is plaintext (insecure) credentials and enabled() is false, so the
// callers can warn.
//
// One cluster CA is the intended setup: every daemon holds a certificate
// (and key) signed by it and trusts it. As a server a daemon presents its
// certificate and, when `ca_file` is set, requires and verifies a client
// certificate signed by that CA (mutual TLS). As a client the same daemon
// verifies the server against `ca_file` (system roots when empty) and, when
// it has a certificate, presents it. Certificates must name the host the
// peer dials (a subjectAltName of the address's host).
//
// The files are read once, when the credentials are built; rotating them
// needs a restart. Thread-safe (free functions over immutable inputs).
//
// Example:
//   TlsOptions tls{"/etc/baq/tls.crt", "/etc/baq/tls.key", "/etc/baq/ca.crt"};
//   BAQ_ASSIGN_OR_RETURN(auto server_creds, MakeServerCredentials(tls));
//   builder.AddListeningPort("0.0.0.0:7000", server_creds, &port);
//   BAQ_ASSIGN_OR_RETURN(auto channel_creds, MakeChannelCredentials(tls));
//   auto channel = grpc::CreateChannel("coordinator:7000", channel_creds);
#ifndef BAQ_NET_TLS_CREDENTIALS_H_
#define BAQ_NET_TLS_CREDENTIALS_H_

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace baq::net {

struct TlsOptions {
  // PEM certificate chain this end presents: required for a TLS server,
  // optional for a client (then it is its client certificate for mTLS).
  std::string cert_file;
  // PEM private key of `cert_file`; set exactly when cert_file is.
  std::string key_file;
  // PEM CA bundle. Server: clients must present a certificate signed by it
  // (mutual TLS); empty: no client certificate asked. Client: verifies the
  // server; empty: the system's roots.
  std::string ca_file;
  // Client: TLS even when no file is named (server verified against the
  // system's roots). A server needs a certificate anyway.
  bool force = false;

  // Whether TLS is on; false means plaintext.
  bool enabled() const {
    return force || !cert_file.empty() || !key_file.empty() || !ca_file.empty();
  }
  // Server side: whether clients must present a certificate.
  bool mutual() const { return !ca_file.empty(); }
};

// Insecure credentials when !options.enabled(). InvalidArgument when only
// one of cert/key is named or a server has no certificate; NotFound or
// PermissionDenied (naming the file) when a file cannot be read;
// InvalidArgument when a file holds no PEM block.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsOptions& options);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsOptions& options);

// One line for a startup log: "plaintext (insecure)", "TLS", "mutual TLS".
std::string DescribeServerSecurity(const TlsOptions& options);

}  // namespace baq::net

#endif  // BAQ_NET_TLS_CREDENTIALS_H_
