package hostlocal

import (
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
)

// ReadResolvConf reads the DNS settings of the resolv.conf file at path, as
// ipam.resolvConf does: for other IPAM plugins that take the same field.
func ReadResolvConf(path string) (types.DNS, error) { return readResolvConf(path) }

// PrevResultAddrs returns the addresses of the prevResult in a CHECK
// config, and false when there is none, as host-local's CHECK reads them
// (code 6 when it does not decode): for other IPAM plugins.
func PrevResultAddrs(stdin []byte) ([]netip.Addr, bool, error) { return prevResultAddrs(stdin) }
