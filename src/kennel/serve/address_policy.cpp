#include "kennel/serve/address_policy.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <string_view>
#include <system_error>

namespace kennel::serve {

namespace {

// IANA's IPv4 and IPv6 special-purpose address registries (the entries not
// globally reachable), multicast, and what IPv6 has not allocated as global
// unicast. Reviewed against the registries of 2025; an address outside every
// entry is a public unicast address.
constexpr SpecialRange kNonPublicRanges[] = {
    // Cloud metadata services: credentials live behind them.
    {"169.254.169.254/32", "cloud metadata service (AWS, GCP, Azure, OpenStack)", true},
    {"169.254.170.2/32", "cloud metadata service (AWS ECS task credentials)", true},
    {"169.254.170.23/32", "cloud metadata service (AWS EKS pod identity)", true},
    {"100.100.100.200/32", "cloud metadata service (Alibaba Cloud)", true},
    {"192.0.0.192/32", "cloud metadata service (Oracle Cloud)", true},
    {"fd00:ec2::254/128", "cloud metadata service (AWS, IPv6)", true},
    {"fd00:ec2::23/128", "cloud metadata service (AWS EKS pod identity, IPv6)", true},
    // IPv4.
    {"0.0.0.0/8", "'this network' (0.0.0.0 reaches this host)"},
    {"10.0.0.0/8", "private-use (RFC 1918)"},
    {"100.64.0.0/10", "shared address space (carrier-grade NAT)"},
    {"127.0.0.0/8", "loopback"},
    {"169.254.0.0/16", "link-local"},
    {"172.16.0.0/12", "private-use (RFC 1918)"},
    // Whole, although IANA marks two anycast addresses in it (.9, .10) global: no image lives
    // there.
    {"192.0.0.0/24", "IETF protocol assignments"},
    {"192.0.2.0/24", "documentation (TEST-NET-1)"},
    {"192.88.99.0/24", "6to4 relay anycast (deprecated)"},
    {"192.168.0.0/16", "private-use (RFC 1918)"},
    {"198.18.0.0/15", "benchmarking"},
    {"198.51.100.0/24", "documentation (TEST-NET-2)"},
    {"203.0.113.0/24", "documentation (TEST-NET-3)"},
    {"224.0.0.0/4", "multicast"},
    {"255.255.255.255/32", "limited broadcast"},
    {"240.0.0.0/4", "reserved"},
    // IPv6.
    {"::/128", "unspecified"},
    {"::1/128", "loopback"},
    {"::ffff:0:0/96", "IPv4-mapped"},
    {"::/96", "IPv4-compatible (deprecated)"},
    {"64:ff9b::/96", "NAT64, which embeds an IPv4 address"},
    {"64:ff9b:1::/48", "local-use NAT64"},
    {"100::/64", "discard-only"},
    {"2001::/32", "Teredo, which embeds an IPv4 address"},
    {"2001::/23", "IETF protocol assignments"},
    {"2001:db8::/32", "documentation"},
    {"2002::/16", "6to4, which embeds an IPv4 address"},
    {"3fff::/20", "documentation"},
    {"5f00::/16", "segment routing (SRv6) SIDs"},
    {"fc00::/7", "unique-local"},
    {"fe80::/10", "link-local"},
    {"fec0::/10", "site-local (deprecated)"},
    {"ff00::/8", "multicast"},
    {"::/3", "not IPv6 global unicast (outside 2000::/3)"},
    {"4000::/2", "not IPv6 global unicast (outside 2000::/3)"},
    {"8000::/1", "not IPv6 global unicast (outside 2000::/3)"},
};

constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

bool prefix_matches(const IpAddress& address, const IpAddress& base, int bits) {
  const int whole_bytes = bits / 8;
  if (std::memcmp(address.bytes.data(), base.bytes.data(), static_cast<size_t>(whole_bytes)) != 0) {
    return false;
  }
  const int rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xFF << (8 - rest));
  return (address.bytes[whole_bytes] & mask) == (base.bytes[whole_bytes] & mask);
}

// A built-in range matches within its own family, and an IPv4 range also
// matches the IPv4-mapped spelling of its addresses; an IPv4 address never
// falls in an IPv6 range (::ffff:0:0/96 must not swallow every IPv4 address).
bool special_contains(const Network& range, const IpAddress& address) {
  if (address.v6 == range.base.v6) return prefix_matches(address, range.base, range.prefix_bits);
  if (address.is_mapped_ipv4() && !range.base.v6) {
    return prefix_matches(address.unmapped(), range.base, range.prefix_bits);
  }
  return false;
}

Result<std::vector<Network>> parse_networks(const std::vector<std::string>& cidrs,
                                            const char* field) {
  std::vector<Network> networks;
  for (size_t i = 0; i < cidrs.size(); ++i) {
    auto network = Network::parse(cidrs[i]);
    if (!network.ok()) return network.status().with_context(fmt::format("{}[{}]", field, i));
    networks.push_back(std::move(network).value());
  }
  return networks;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(const std::string& text) {
  IpAddress address;
  if (inet_pton(AF_INET, text.c_str(), address.bytes.data()) == 1) return address;
  address.v6 = true;
  if (inet_pton(AF_INET6, text.c_str(), address.bytes.data()) == 1) return address;
  return std::nullopt;
}

std::string IpAddress::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), text, sizeof(text));
  return text;
}

bool IpAddress::is_mapped_ipv4() const {
  return v6 && std::memcmp(bytes.data(), kMappedPrefix.data(), kMappedPrefix.size()) == 0;
}

IpAddress IpAddress::unmapped() const {
  IpAddress v4;
  std::memcpy(v4.bytes.data(), bytes.data() + 12, 4);
  return v4;
}

Result<Network> Network::parse(const std::string& cidr) {
  const size_t slash = cidr.find('/');
  if (slash == std::string::npos) {
    return invalid_argument(
        "'{}' is not a CIDR network: write ADDRESS/PREFIX (e.g. 10.0.0.0/8, or {}/32 or /128 for "
        "one address)",
        cidr, cidr);
  }
  const auto base = IpAddress::parse(cidr.substr(0, slash));
  if (!base) {
    return invalid_argument("'{}' is not a CIDR network: '{}' is not an IPv4 or IPv6 address", cidr,
                            cidr.substr(0, slash));
  }
  const int max_bits = base->v6 ? 128 : 32;
  const std::string_view prefix = std::string_view(cidr).substr(slash + 1);
  int bits = -1;
  const auto [end, error] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), bits);
  if (prefix.empty() || error != std::errc() || end != prefix.data() + prefix.size() || bits < 0 ||
      bits > max_bits) {
    return invalid_argument("'{}' is not a CIDR network: the prefix length must be 0..{}", cidr,
                            max_bits);
  }
  return Network{*base, bits, cidr};
}

bool Network::contains(const IpAddress& address) const {
  if (address.v6 == base.v6 && prefix_matches(address, base, prefix_bits)) return true;
  // Compare in IPv4 terms when both sides have an IPv4 meaning.
  std::optional<IpAddress> address_v4;
  if (!address.v6) address_v4 = address;
  if (address.is_mapped_ipv4()) address_v4 = address.unmapped();
  std::optional<Network> network_v4;
  if (!base.v6) network_v4 = *this;
  if (base.is_mapped_ipv4() && prefix_bits >= 96) {
    network_v4 = Network{base.unmapped(), prefix_bits - 96, text};
  }
  if (!address_v4 || !network_v4 || (!address.v6 && !base.v6)) return false;
  return prefix_matches(*address_v4, network_v4->base, network_v4->prefix_bits);
}

std::span<const SpecialRange> non_public_ranges() {
  return kNonPublicRanges;
}

Result<AddressPolicy> AddressPolicy::make(const std::vector<std::string>& allowed_networks,
                                          const std::vector<std::string>& denied_networks) {
  AddressPolicy policy;
  auto allowed = parse_networks(allowed_networks, "allowed_networks");
  if (!allowed.ok()) return allowed.status();
  auto denied = parse_networks(denied_networks, "denied_networks");
  if (!denied.ok()) return denied.status();
  policy.allowed_ = std::move(allowed).value();
  policy.denied_ = std::move(denied).value();
  for (const SpecialRange& range : kNonPublicRanges) {
    // The table is a constant reviewed above; value() cannot throw for it (a unit test parses it).
    policy.special_.emplace_back(Network::parse(range.cidr).value(), &range);
  }
  return policy;
}

bool AddressPolicy::allowed(const IpAddress& address) const {
  for (const Network& network : allowed_) {
    if (network.contains(address)) return true;
  }
  return false;
}

bool AddressPolicy::named_exactly(const IpAddress& address) const {
  for (const Network& network : allowed_) {
    const bool single = network.prefix_bits == (network.base.v6 ? 128 : 32);
    if (single && network.contains(address)) return true;
  }
  return false;
}

std::optional<AddressRefusal> AddressPolicy::refusal(const IpAddress& address,
                                                     bool operator_endpoint) const {
  for (const Network& network : denied_) {
    if (network.contains(address) && !allowed(address)) {
      return AddressRefusal{network.text, "denied by --deny-network", false, true};
    }
  }
  if (operator_endpoint) return std::nullopt;
  for (const auto& [network, range] : special_) {
    if (!special_contains(network, address)) continue;
    if (range->metadata ? named_exactly(address) : allowed(address)) return std::nullopt;
    return AddressRefusal{network.text, range->what, range->metadata, false};
  }
  return std::nullopt;
}

bool is_loopback_host(const std::string& host) {
  std::string lowered = host;
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lowered == "localhost") return true;
  const auto address = IpAddress::parse(host);
  if (!address) return false;
  for (const char* loopback : {"127.0.0.0/8", "::1/128"}) {
    if (Network::parse(loopback).value().contains(*address)) return true;
  }
  return false;
}

Result<bool> address_in_network(const std::string& address, const std::string& cidr) {
  const auto parsed = IpAddress::parse(address);
  if (!parsed) return invalid_argument("'{}' is not an IPv4 or IPv6 address", address);
  auto network = Network::parse(cidr);
  if (!network.ok()) return network.status();
  return network->contains(*parsed);
}

}  // namespace kennel::serve
