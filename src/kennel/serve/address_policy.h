// Which network addresses the URL fetcher may connect to. The URL comes from
// whoever can reach the endpoint, so by default only globally routable
// unicast addresses are allowed: every range of IANA's IPv4 and IPv6
// special-purpose registries that is not globally reachable (loopback,
// 0.0.0.0/8, RFC 1918, CGNAT, link-local, unique-local, documentation,
// benchmarking, ...), multicast, 240.0.0.0/4 and broadcast, all of IPv6
// outside 2000::/3, and the IPv6 forms that carry an IPv4 address (mapped,
// NAT64, 6to4, Teredo) are refused. Cloud metadata addresses are refused even
// inside an allowed range unless an allowed entry names exactly that address.
//
// The operator opens ranges with allowed networks (`--allow-network CIDR`)
// and closes more with denied ones (`--deny-network CIDR`); an allowed
// network overrides both the built-in ranges and the denied ones.
//
// This module decides; it does not connect. url_fetcher.cpp asks it about
// the address libcurl is about to connect to, at every hop.
// Thread-safety: an AddressPolicy is immutable after make(); share it freely.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kennel/util/status.h"

namespace kennel::serve {

// An IP address in network byte order; IPv4 uses the first 4 bytes.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};

  // IPv4 dotted quad or any IPv6 text form; nullopt otherwise (no names,
  // no "127.1" shorthand: libcurl has already resolved what reaches here).
  static std::optional<IpAddress> parse(const std::string& text);
  std::string to_string() const;
  // ::ffff:a.b.c.d, which a dual-stack socket connects to the IPv4 host a.b.c.d.
  bool is_mapped_ipv4() const;
  IpAddress unmapped() const;  // the a.b.c.d of a mapped address
};

struct Network {
  IpAddress base;
  int prefix_bits = 0;
  std::string text;  // as configured, for messages

  // "10.0.0.0/8", "fd00:ec2::254/128"; kInvalidArgument naming the text otherwise.
  static Result<Network> parse(const std::string& cidr);
  // Families compare in IPv4 terms when both sides have an IPv4 meaning
  // (an IPv4-mapped address is in an IPv4 network, and vice versa).
  bool contains(const IpAddress& address) const;
};

// One built-in range that is not public, with what IANA calls it.
struct SpecialRange {
  const char* cidr;
  const char* what;
  bool metadata = false;  // a cloud metadata service: opens only when named exactly
};
// In the order they are checked: metadata addresses, then the IPv4 ranges,
// then the IPv6 ones (so a refusal names the most specific reason).
std::span<const SpecialRange> non_public_ranges();

// Why an address may not be connected to.
struct AddressRefusal {
  std::string network;  // the CIDR it fell in
  std::string what;     // "loopback", "private-use", ... or "denied by --deny-network"
  bool metadata = false;
  bool by_operator = false;  // from the denied networks rather than the built-in ranges
};

class AddressPolicy {
 public:
  // kInvalidArgument naming the field and index ("allowed_networks[1]") for a bad CIDR.
  static Result<AddressPolicy> make(const std::vector<std::string>& allowed_networks,
                                    const std::vector<std::string>& denied_networks);

  // nullopt when `address` may be connected to. For an endpoint the
  // operator's own configuration names (`operator_endpoint`), only the denied
  // networks apply: the built-in ranges guard against addresses clients choose.
  std::optional<AddressRefusal> refusal(const IpAddress& address,
                                        bool operator_endpoint = false) const;

 private:
  bool allowed(const IpAddress& address) const;
  bool named_exactly(const IpAddress& address) const;

  std::vector<Network> allowed_;
  std::vector<Network> denied_;
  std::vector<std::pair<Network, const SpecialRange*>> special_;
};

// True for "localhost" and addresses in 127.0.0.0/8 or ::1 (or their
// IPv4-mapped forms): a server bound there is reachable from this machine only.
bool is_loopback_host(const std::string& host);

// True when `address` (IPv4 or IPv6 text) falls in `cidr` ("10.0.0.0/8",
// "fd00:ec2::254/128"), as Network::contains; kInvalidArgument for a bad CIDR or address.
Result<bool> address_in_network(const std::string& address, const std::string& cidr);

}  // namespace kennel::serve
