// TLS credentials from files: plaintext when nothing is named, clear errors
// for missing, unpaired or non-PEM files. (Handshakes against real servers:
// tests/coordinator/coordinator_server_test.cc.)
#include "net/tls_credentials.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/fakes/test_certs.h"
#include "tests/testing/test_paths.h"

namespace baq::net {
namespace {

using ::testing::HasSubstr;

class TlsCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = baq::testing::MakeScratchDir();
    auto pki = baq::testing::MakeTestPki(dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *pki;
  }
  std::string dir_;
  baq::testing::TestPki pki_;
};

TEST_F(TlsCredentialsTest, NothingNamedIsPlaintext) {
  TlsOptions none;
  EXPECT_FALSE(none.enabled());
  EXPECT_TRUE(MakeServerCredentials(none).ok());
  EXPECT_TRUE(MakeChannelCredentials(none).ok());
  EXPECT_THAT(DescribeServerSecurity(none), HasSubstr("plaintext"));
}

TEST_F(TlsCredentialsTest, BuildsServerAndClientCredentials) {
  TlsOptions server{pki_.server_cert, pki_.server_key, ""};
  EXPECT_TRUE(MakeServerCredentials(server).ok());
  EXPECT_EQ(DescribeServerSecurity(server), "TLS");
  TlsOptions mutual{pki_.server_cert, pki_.server_key, pki_.ca_cert};
  EXPECT_TRUE(MakeServerCredentials(mutual).ok());
  EXPECT_EQ(DescribeServerSecurity(mutual), "mutual TLS");
  EXPECT_TRUE(MakeChannelCredentials({"", "", pki_.ca_cert}).ok());
  EXPECT_TRUE(MakeChannelCredentials({pki_.client_cert, pki_.client_key, pki_.ca_cert}).ok());
  TlsOptions system_roots;
  system_roots.force = true;
  EXPECT_TRUE(system_roots.enabled());
  EXPECT_TRUE(MakeChannelCredentials(system_roots).ok());
}

TEST_F(TlsCredentialsTest, MissingFileIsNotFoundNamingIt) {
  auto creds = MakeServerCredentials({dir_ + "/nope.crt", pki_.server_key, ""});
  EXPECT_EQ(creds.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(creds.status().message()), HasSubstr("nope.crt"));
  EXPECT_EQ(MakeChannelCredentials({"", "", dir_ + "/nope-ca.crt"}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TlsCredentialsTest, CertificateAndKeyGoTogether) {
  EXPECT_EQ(MakeServerCredentials({pki_.server_cert, "", ""}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeChannelCredentials({"", pki_.client_key, pki_.ca_cert}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A server needs its own certificate; a CA alone is not enough.
  EXPECT_EQ(MakeServerCredentials({"", "", pki_.ca_cert}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsCredentialsTest, NonPemFileIsInvalidArgument) {
  baq::testing::WriteFileOrDie(dir_ + "/garbage.crt", "not a certificate");
  auto creds = MakeServerCredentials({dir_ + "/garbage.crt", pki_.server_key, ""});
  EXPECT_EQ(creds.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(creds.status().message()), HasSubstr("garbage.crt"));
}

}  // namespace
}  // namespace baq::net
