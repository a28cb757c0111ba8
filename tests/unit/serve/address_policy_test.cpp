#include "kennel/serve/address_policy.h"

#include <gtest/gtest.h>

namespace kennel::serve {
namespace {

// ---- address_in_network --------------------------------------------------------

bool in(const std::string& address, const std::string& cidr) {
  auto result = address_in_network(address, cidr);
  EXPECT_TRUE(result.ok()) << address << " " << cidr << ": " << result.status().to_string();
  return result.ok() && *result;
}

TEST(AddressInNetwork, Ipv4) {
  EXPECT_TRUE(in("10.1.2.3", "10.0.0.0/8"));
  EXPECT_FALSE(in("11.1.2.3", "10.0.0.0/8"));
  EXPECT_TRUE(in("169.254.169.254", "169.254.0.0/16"));
  EXPECT_TRUE(in("192.168.1.130", "192.168.1.128/25"));
  EXPECT_FALSE(in("192.168.1.127", "192.168.1.128/25"));
  EXPECT_TRUE(in("1.2.3.4", "1.2.3.4/32"));
  EXPECT_FALSE(in("1.2.3.5", "1.2.3.4/32"));
  EXPECT_TRUE(in("8.8.8.8", "0.0.0.0/0"));
  EXPECT_TRUE(in("10.200.0.1", "10.0.0.1/8"));  // host bits in the base are ignored
}

TEST(AddressInNetwork, Ipv6) {
  EXPECT_TRUE(in("fd00:ec2::254", "fd00:ec2::254/128"));
  EXPECT_FALSE(in("fd00:ec2::255", "fd00:ec2::254/128"));
  EXPECT_TRUE(in("2001:db8:1::7", "2001:db8::/32"));
  EXPECT_FALSE(in("2001:db9::7", "2001:db8::/32"));
  EXPECT_TRUE(in("fe80::1", "fe80::/10"));
  EXPECT_TRUE(in("febf::1", "fe80::/10"));
  EXPECT_FALSE(in("fec0::1", "fe80::/10"));
  // Families do not mix, except through IPv4-mapped addresses.
  EXPECT_FALSE(in("10.0.0.1", "::/0"));
  EXPECT_FALSE(in("::1", "0.0.0.0/0"));
}

TEST(AddressInNetwork, MappedIpv4IsCheckedAsIpv4) {
  EXPECT_TRUE(in("::ffff:169.254.169.254", "169.254.0.0/16"));
  EXPECT_TRUE(in("::ffff:a9fe:a9fe", "169.254.0.0/16"));
  EXPECT_FALSE(in("::ffff:10.0.0.1", "169.254.0.0/16"));
  EXPECT_TRUE(in("169.254.1.1", "::ffff:169.254.0.0/112"));
  EXPECT_TRUE(in("::ffff:127.0.0.1", "::ffff:0:0/96"));
  // Not mapped: the IPv4-compatible form does not reach an IPv4 host.
  EXPECT_FALSE(in("::169.254.169.254", "169.254.0.0/16"));
}

TEST(AddressInNetwork, RejectsMalformedInput) {
  for (const char* cidr : {"10.0.0.0", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/8x",
                           "10.0.0.0/-1", "10.0.0/8", "cat/8", "/8", ""}) {
    auto result = address_in_network("10.0.0.1", cidr);
    ASSERT_FALSE(result.ok()) << cidr;
    EXPECT_EQ(result.status().code(), ErrorCode::kInvalidArgument) << cidr;
  }
  auto bad_address = address_in_network("not-an-address", "10.0.0.0/8");
  ASSERT_FALSE(bad_address.ok());
  EXPECT_EQ(bad_address.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad_address.status().message().find("not-an-address"), std::string::npos);
}

// ---- the default policy --------------------------------------------------------

AddressPolicy policy(const std::vector<std::string>& allowed = {},
                     const std::vector<std::string>& denied = {}) {
  auto made = AddressPolicy::make(allowed, denied);
  EXPECT_TRUE(made.ok()) << made.status().to_string();
  return std::move(made).value();
}

std::optional<AddressRefusal> refusal_of(const AddressPolicy& p, const std::string& address,
                                         bool operator_endpoint = false) {
  const auto ip = IpAddress::parse(address);
  EXPECT_TRUE(ip.has_value()) << address;
  return ip ? p.refusal(*ip, operator_endpoint) : std::nullopt;
}

TEST(AddressPolicy, TheBuiltInTableParses) {
  for (const SpecialRange& range : non_public_ranges()) {
    auto network = Network::parse(range.cidr);
    EXPECT_TRUE(network.ok()) << range.cidr << ": " << network.status().to_string();
    EXPECT_TRUE(range.what && *range.what) << range.cidr;
  }
}

TEST(AddressPolicy, RefusesEveryNonPublicRangeByDefault) {
  // One address inside each kind of range the issue lists, and the CIDR that must be named.
  const std::pair<const char*, const char*> cases[] = {
      {"127.0.0.1", "127.0.0.0/8"},
      {"127.255.255.254", "127.0.0.0/8"},
      {"0.0.0.0", "0.0.0.0/8"},
      {"0.1.2.3", "0.0.0.0/8"},
      {"10.1.2.3", "10.0.0.0/8"},
      {"172.16.0.1", "172.16.0.0/12"},
      {"172.31.255.255", "172.16.0.0/12"},
      {"192.168.1.1", "192.168.0.0/16"},
      {"100.64.0.1", "100.64.0.0/10"},
      {"100.127.255.255", "100.64.0.0/10"},
      {"169.254.1.1", "169.254.0.0/16"},
      {"169.254.169.254", "169.254.169.254/32"},
      {"169.254.170.2", "169.254.170.2/32"},
      {"100.100.100.200", "100.100.100.200/32"},
      {"192.0.0.192", "192.0.0.192/32"},
      {"192.0.0.8", "192.0.0.0/24"},
      {"192.0.2.10", "192.0.2.0/24"},
      {"198.51.100.7", "198.51.100.0/24"},
      {"203.0.113.200", "203.0.113.0/24"},
      {"198.18.0.1", "198.18.0.0/15"},
      {"198.19.255.255", "198.18.0.0/15"},
      {"224.0.0.1", "224.0.0.0/4"},
      {"239.255.255.250", "224.0.0.0/4"},
      {"240.0.0.1", "240.0.0.0/4"},
      {"255.255.255.255", "255.255.255.255/32"},
      {"::", "::/128"},
      {"::1", "::1/128"},
      {"fe80::1", "fe80::/10"},
      {"fc00::1", "fc00::/7"},
      {"fd12:3456::1", "fc00::/7"},
      {"fd00:ec2::254", "fd00:ec2::254/128"},
      {"ff02::1", "ff00::/8"},
      {"2001:db8::1", "2001:db8::/32"},
      {"fec0::1", "fec0::/10"},
      {"100::1", "100::/64"},
      // IPv6 forms that carry an IPv4 address.
      {"::ffff:8.8.8.8", "::ffff:0:0/96"},
      {"::ffff:127.0.0.1", "127.0.0.0/8"},  // named by what it reaches
      {"::ffff:169.254.169.254", "169.254.169.254/32"},
      {"64:ff9b::7f00:1", "64:ff9b::/96"},
      {"64:ff9b::808:808", "64:ff9b::/96"},
      {"2002:7f00:1::1", "2002::/16"},
      {"2002:808:808::1", "2002::/16"},
      {"2001:0:4136:e378::1", "2001::/32"},
      {"::127.0.0.1", "::/96"},
      // Not allocated as global unicast.
      {"1::1", "::/3"},
      {"4000::1", "4000::/2"},
      {"e000::1", "8000::/1"},
  };
  const AddressPolicy defaults = policy();
  for (const auto& [address, network] : cases) {
    const auto why = refusal_of(defaults, address);
    ASSERT_TRUE(why.has_value()) << address << " must be refused";
    EXPECT_EQ(why->network, network) << address;
    EXPECT_FALSE(why->by_operator) << address;
  }
}

TEST(AddressPolicy, AllowsPublicUnicast) {
  const AddressPolicy defaults = policy();
  for (const char* address :
       {"8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0", "172.15.255.255",
        "172.32.0.0", "198.17.255.255", "198.20.0.0", "223.255.255.255", "11.0.0.1",
        "2606:4700::1111", "2a00:1450:4001::200e", "2001:4860:4860::8888", "2c0f:fb50::1"}) {
    const auto why = refusal_of(defaults, address);
    EXPECT_FALSE(why.has_value()) << address << " refused as " << why->network;
  }
}

TEST(AddressPolicy, AllowedNetworksOpenRanges) {
  const AddressPolicy opened = policy({"127.0.0.1/32", "10.0.0.0/8", "fd00::/8", "169.254.0.0/16"});
  EXPECT_FALSE(refusal_of(opened, "127.0.0.1").has_value());
  EXPECT_FALSE(refusal_of(opened, "::ffff:127.0.0.1").has_value());  // the same host
  EXPECT_TRUE(refusal_of(opened, "127.0.0.2").has_value());
  EXPECT_TRUE(refusal_of(opened, "::1").has_value());
  EXPECT_FALSE(refusal_of(opened, "10.200.1.1").has_value());
  EXPECT_FALSE(refusal_of(opened, "fd12::1").has_value());
  EXPECT_FALSE(refusal_of(opened, "169.254.1.1").has_value());
  // A metadata address inside an opened range stays refused ...
  const auto metadata = refusal_of(opened, "169.254.169.254");
  ASSERT_TRUE(metadata.has_value());
  EXPECT_TRUE(metadata->metadata);
  EXPECT_TRUE(refusal_of(opened, "fd00:ec2::254").has_value());
  // ... until it is named exactly.
  const AddressPolicy named = policy({"169.254.169.254/32"});
  EXPECT_FALSE(refusal_of(named, "169.254.169.254").has_value());
  EXPECT_TRUE(refusal_of(named, "169.254.169.253").has_value());
}

TEST(AddressPolicy, DeniedNetworksCloseMoreAndAllowedOverridesThem) {
  const AddressPolicy denied = policy({}, {"8.8.8.0/24", "2606:4700::/32"});
  const auto why = refusal_of(denied, "8.8.8.8");
  ASSERT_TRUE(why.has_value());
  EXPECT_TRUE(why->by_operator);
  EXPECT_EQ(why->network, "8.8.8.0/24");
  EXPECT_TRUE(refusal_of(denied, "::ffff:8.8.8.8").has_value());
  EXPECT_TRUE(refusal_of(denied, "2606:4700::1111").has_value());
  EXPECT_FALSE(refusal_of(denied, "8.8.4.4").has_value());
  const AddressPolicy excepted = policy({"8.8.8.8/32"}, {"8.8.8.0/24"});
  EXPECT_FALSE(refusal_of(excepted, "8.8.8.8").has_value());
  EXPECT_TRUE(refusal_of(excepted, "8.8.8.9").has_value());
}

TEST(AddressPolicy, TheOperatorsEndpointSkipsOnlyTheBuiltInRanges) {
  const AddressPolicy p = policy({}, {"10.9.0.0/16"});
  EXPECT_FALSE(refusal_of(p, "127.0.0.1", /*operator_endpoint=*/true).has_value());
  EXPECT_FALSE(refusal_of(p, "10.1.2.3", true).has_value());
  EXPECT_TRUE(refusal_of(p, "10.9.2.3", true).has_value());
  EXPECT_TRUE(refusal_of(p, "127.0.0.1", false).has_value());
}

TEST(AddressPolicy, MakeNamesTheBadEntry) {
  auto bad_allowed = AddressPolicy::make({"127.0.0.1/32", "localhost"}, {});
  ASSERT_FALSE(bad_allowed.ok());
  EXPECT_EQ(bad_allowed.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad_allowed.status().message().find("allowed_networks[1]"), std::string::npos);
  auto bad_denied = AddressPolicy::make({}, {"10.0.0.0/33"});
  ASSERT_FALSE(bad_denied.ok());
  EXPECT_NE(bad_denied.status().message().find("denied_networks[0]"), std::string::npos);
}

}  // namespace
}  // namespace kennel::serve

namespace kennel::serve {
namespace {

TEST(IsLoopbackHost, OnlyThisMachine) {
  for (const char* host : {"127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "localhost",
                           "LocalHost", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(is_loopback_host(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "::", "", "10.0.0.1", "192.168.1.2", "example.com",
                           "localhost.example.com", "128.0.0.1", "::2"}) {
    EXPECT_FALSE(is_loopback_host(host)) << host;
  }
}

}  // namespace
}  // namespace kennel::serve
